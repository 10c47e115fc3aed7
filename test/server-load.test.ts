// A bounded load test on loopback: 64 concurrent streaming clients (half OpenAI, half Anthropic), a
// quarter of them hanging up mid-stream. Every client that stays gets exactly what the in-process API
// produces for its seed (the CPU backend is batch invariant), the hang-ups are counted and their
// generations stopped, the KV pool returns to its baseline, and the server keeps serving.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage, TextGenerateResult } from '../lib/index.js';
import { serve, stop, type Served } from './helpers/server.js';
import { sseEvents } from '../bench/sse-frames.js';

let s: Served;
beforeAll(async () => {
  s = await serve();
}, 60_000);
afterAll(async () => {
  await stop(s);
});

interface Outcome { text: string; reasoning: string; events: number; finished: boolean }

/** Streams one request, reading SSE frames as they arrive; hangs up after `hangUpAfter` content events. */
async function client(url: string, body: unknown, anthropic: boolean, hangUpAfter: number | undefined): Promise<Outcome> {
  const ac = new AbortController();
  const res = await fetch(url, { method: 'POST', signal: ac.signal, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  const out: Outcome = { text: '', reasoning: '', events: 0, finished: false };
  try {
    for await (const { data } of sseEvents(res.body!)) {
      if (data === '[DONE]') { out.finished = true; continue; }
      const j = JSON.parse(data) as Record<string, any>;
      if (anthropic) {
        if (j.type === 'message_stop') out.finished = true;
        if (j.type === 'content_block_delta' && j.delta.type === 'text_delta') { out.text += j.delta.text; out.events++; }
        if (j.type === 'content_block_delta' && j.delta.type === 'thinking_delta') { out.reasoning += j.delta.thinking; out.events++; }
      } else {
        const d = j.choices?.[0]?.delta ?? {};
        if (d.content) { out.text += d.content; out.events++; }
        if (d.reasoning_content) { out.reasoning += d.reasoning_content; out.events++; }
      }
      if (hangUpAfter !== undefined && out.events >= hangUpAfter) {
        ac.abort();
        return out;
      }
    }
  } catch (error) {
    if (!ac.signal.aborted) throw error;
  }
  return out;
}

describe('64 concurrent streaming clients', () => {
  it('those that stay get their in-process answers; hang-ups are stopped; KV returns to baseline; the server keeps serving', async () => {
    const N = 64;
    const jobs = Array.from({ length: N }, (_, i) => {
      const messages: ChatMessage[] = [{ role: 'user', content: `What is ${10 + i} + ${30 + ((i * 7) % 50)}?` }];
      // Hang-ups: 8 OpenAI clients whose answers run long (ignore_eos, 2000 tokens), so they surely
      // leave mid-generation, and 8 Anthropic clients with ordinary answers, which may already be
      // complete on the server when the client (behind in its reading) leaves.
      const hangUp = i % 8 === 2 || i % 8 === 7 ? 3 + (i % 5) : undefined;
      return { i, messages, seed: 1000 + i, anthropic: i % 2 === 1, hangUp, long: i % 8 === 2 };
    });
    const MAX = 60;
    // The references, computed in process (concurrently: batching does not change a request's tokens on the CPU).
    const refs: TextGenerateResult[] = await Promise.all(jobs.map((j) => s.model.generate(j.messages, { seed: j.seed, temperature: 0.8, maxTokens: MAX, thinking: true })));
    const base = s.model.stats();
    const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${s.url}/metrics`)).text())![1]);
    const disconnectsBefore = await metric('glm_http_client_disconnects_total');

    const outcomes = await Promise.all(jobs.map((j) => j.anthropic
      ? client(`${s.url}/v1/messages`, { model: 'c', max_tokens: MAX, temperature: 0.8, seed: j.seed, thinking: { type: 'enabled', budget_tokens: 30 }, stream: true,
        messages: j.messages, metadata: { user_id: String(j.i) } }, true, j.hangUp)
      : client(`${s.url}/v1/chat/completions`, { model: 'x', max_tokens: j.long ? 2000 : MAX, ...(j.long ? { ignore_eos: true } : {}),
        temperature: 0.8, seed: j.seed, stream: true, messages: j.messages }, false, j.hangUp)));

    let completed = 0;
    for (const j of jobs) {
      const o = outcomes[j.i]!;
      if (j.hangUp !== undefined) {
        expect(o.finished, `client ${j.i}`).toBe(false);
        continue;
      }
      expect(o.finished, `client ${j.i}`).toBe(true);
      completed++;
      // (Anthropic requests use the server's seed extension.)
      expect(o.text, `client ${j.i}`).toBe(refs[j.i]!.text);
      expect(o.reasoning, `client ${j.i}`).toBe(refs[j.i]!.reasoning);
    }
    expect(completed).toBe(48);

    // Every hang-up is noticed and its generation ends; all pages come back.
    const t0 = performance.now();
    const settled = () => {
      const st = s.model.stats();
      return st.running === 0 && st.waiting === 0 && st.kvCache.pagesUsed === base.kvCache.pagesUsed;
    };
    while (!settled() && performance.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
    expect(s.model.stats().kvCache.pagesUsed).toBe(base.kvCache.pagesUsed);
    expect(s.model.stats().running).toBe(0);
    const disconnects = await metric('glm_http_client_disconnects_total') - disconnectsBefore;
    expect(disconnects).toBeGreaterThanOrEqual(8);
    expect(disconnects).toBeLessThanOrEqual(16);
    const after = s.model.stats();
    // Every request is accounted for; at least the long ones were aborted by their hang-up (a 2000-token
    // answer cannot have finished), and no generation failed without a hang-up.
    expect(after.requestsFinished + after.requestsFailed - (base.requestsFinished + base.requestsFailed)).toBe(N);
    expect(after.requestsFailed - base.requestsFailed).toBeGreaterThanOrEqual(8);
    expect(after.requestsFailed - base.requestsFailed).toBeLessThanOrEqual(disconnects);

    const res = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: jobs[0]!.messages, seed: jobs[0]!.seed, temperature: 0.8, max_tokens: MAX }) });
    expect(res.status).toBe(200);
    expect((await res.json() as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(refs[0]!.text);
  }, 120_000);
});
