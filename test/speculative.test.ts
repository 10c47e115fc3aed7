// Speculative decoding with the checkpoint's MTP layer (issue 11): the MTP forward against the float64
// reference, and exactness: greedy and seeded sampling give the same tokens with and without
// speculation, including batches, stops inside an accepted run, maxTokens and aborts mid-round; the KV
// after rejected rounds equals that of a session that never saw the drafts; sampled tokens follow the
// target's distribution (5-sigma bound).
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, type TextGenerateOptions } from '../lib/index.js';
import { ensureFixture } from './fixtures/variants.js';
import { argmax, ReferenceModel } from './reference/forward64.js';
import { promptTokens } from './helpers/prompt.js';
import { argmaxAt, normalisedError } from './helpers/metrics.js';

const DEFAULT_MODEL = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'models', 'tiny-default');

describe('MTP forward against the float64 reference', () => {
  // Budgets as the trunk's (engine-vs-reference.test.ts: f32 1e-4 normalised max error). With bf16 KV
  // the reference rounds its K/V rows the same way (kv-types.test.ts), so the budget stays small.
  it.each([
    ['base', 'f32', 1e-4], ['glm45', 'f32', 1e-4], ['oddhead', 'f32', 1e-4], ['base', 'bf16', 2e-3],
  ] as const)('%s with %s KV: draft logits at every position of a 48-token prompt', async (name, kv, budget) => {
    const dir = await ensureFixture(name);
    const model = await Model.load(dir, { backend: 'cpu', threads: 2, kvCacheType: kv });
    try {
      expect(model.info.speculative.draftTokens).toBe(1);
      const ref = await ReferenceModel.load(dir, kv === 'bf16' ? { kvStorage: 'bf16' } : {});
      const vocab = model.info.vocabSize;
      const prompt = promptTokens(23, 48, vocab);
      const expected = ref.mtpLogits(prompt);
      const session = model.createSession({ contextLength: 128 });
      const { draftLogits } = await session.evaluateDrafts(prompt);
      expect(draftLogits.length).toBe((prompt.length - 1) * vocab);
      let worst = 0;
      for (let t = 0; t < expected.length; t++) {
        worst = Math.max(worst, normalisedError(draftLogits, t * vocab, expected[t]!));
        if (kv === 'f32') expect(argmaxAt(draftLogits, t * vocab, vocab), `draft argmax at ${t}`).toBe(argmax(expected[t]!));
      }
      expect(worst).toBeLessThanOrEqual(budget);

      // Continuing the session: row 0 reads the last token before the new ones.
      const more = promptTokens(29, 8, vocab);
      const next = await session.evaluateDrafts(more);
      expect(next.draftLogits.length).toBe(more.length * vocab);
      const refMore = ref.mtpLogits([...prompt, ...more]).slice(prompt.length - 1);
      for (let t = 0; t < more.length; t++) expect(normalisedError(next.draftLogits, t * vocab, refMore[t]!)).toBeLessThanOrEqual(budget);
      await session.dispose();
    } finally {
      await model.dispose();
    }
  }, 120_000);

  it('a model without an MTP layer, or loaded with speculative: false, refuses evaluateDrafts clearly', async () => {
    const air = await Model.load(await ensureFixture('air'), { threads: 2 });
    const off = await Model.load(await ensureFixture('base'), { threads: 2, speculative: false });
    try {
      expect(air.info.speculative).toEqual({ draftTokens: 0, reason: 'off: the checkpoint has no MTP layer' });
      expect(off.info.speculative).toEqual({ draftTokens: 0, reason: 'off: requested' });
      await expect(air.createSession().evaluateDrafts([1, 2, 3])).rejects.toMatchObject({ code: 'INVALID_PARAM' });
      await expect(off.createSession().evaluateDrafts([1, 2, 3])).rejects.toMatchObject({ code: 'INVALID_PARAM' });
    } finally {
      await air.dispose();
      await off.dispose();
    }
  });

  it('rejects bad speculative options', async () => {
    const dir = await ensureFixture('base');
    for (const bad of [true, 0, { draftTokens: 0 }, { draftTokens: 9 }, { draftTokens: 1.5 }, { minAcceptance: 2 }, { k: 1 }]) {
      await expect(Model.load(dir, { speculative: bad as never })).rejects.toMatchObject({ code: 'INVALID_PARAM' });
    }
    const model = await Model.load(dir, { threads: 2 });
    try {
      for (const bad of [true, { draftTokens: 0 }, { draftTokens: 99 }, {}]) {
        await expect(model.generate({ tokens: [1, 2], speculative: bad as never })).rejects.toMatchObject({ code: 'INVALID_PARAM' });
      }
    } finally {
      await model.dispose();
    }
  });
});

describe('exactness on the trained default model', () => {
  let on: Model;
  let on3: Model;
  let off: Model;
  const chats = [
    'Hello! Who are you?', 'What is 345 + 678?', 'What is 902 - 457?', 'Reverse the word "planet".',
    'Sort these words: pear, apple, fig.', 'My name is Ada. What is my name?',
  ].map((content) => [{ role: 'user' as const, content }]);

  beforeAll(async () => {
    // maxBatch 64: batched requests draft too (the CPU default drafts only alone, where it pays).
    on = await Model.load(DEFAULT_MODEL, { threads: 2, speculative: { maxBatch: 64 } });
    on3 = await Model.load(DEFAULT_MODEL, { threads: 2, speculative: { draftTokens: 3, maxBatch: 64 } });
    off = await Model.load(DEFAULT_MODEL, { threads: 2, speculative: false });
  }, 60_000);
  afterAll(async () => {
    await on?.dispose();
    await on3?.dispose();
    await off?.dispose();
  });

  it('greedy: the same tokens with k = 1 and k = 3 as without speculation, thinking on and off', async () => {
    for (const messages of chats) {
      for (const thinking of [true, false]) {
        const opts: TextGenerateOptions = { temperature: 0, maxTokens: 120, thinking };
        const expected = await off.generate(messages, opts);
        for (const model of [on, on3]) {
          const got = await model.generate(messages, opts);
          expect(got.tokens, `${messages[0]!.content} thinking ${thinking}`).toEqual(expected.tokens);
          expect(got.text).toBe(expected.text);
        }
      }
    }
    const st = on.stats().speculative;
    expect(st.rounds).toBeGreaterThan(100);
    // The MTP layer's held-out agreement with the trunk's greedy token was 96.5% in training
    // (scripts/train-default-model/results/mtp.json); in the engine it must be of that order too.
    expect(st.acceptanceRate).toBeGreaterThan(0.8);
    console.log('default model, k=1 acceptance', st.acceptanceRate.toFixed(3), 'over', st.draftTokens, 'drafts; k=3',
      on3.stats().speculative.acceptanceRate.toFixed(3));
  }, 180_000);

  it('greedy: batched requests of different lengths give what they give alone', async () => {
    const expected = await Promise.all(chats.map((m, i) => off.generate(m, { temperature: 0, maxTokens: 20 + 15 * i })));
    for (const model of [on, on3]) {
      const before = model.stats().speculative.rounds;
      const got = await Promise.all(chats.map((m, i) => model.generate(m, { temperature: 0, maxTokens: 20 + 15 * i })));
      got.forEach((g, i) => expect(g.tokens).toEqual(expected[i]!.tokens));
      expect(model.stats().speculative.rounds - before).toBeGreaterThan(50);  // verified in shared steps
    }
  }, 120_000);

  it('default policy: no drafts (nor MTP fill) in a batch, drafts again alone after computing the gap', async () => {
    const dflt = await Model.load(DEFAULT_MODEL, { threads: 2 });  // maxBatch 1; 4 layers: no fill while idle
    try {
      const run = async (model: Model) => {
        const sessions = chats.slice(0, 3).map(() => model.createSession({ contextLength: 1024 }));
        const first = await Promise.all(sessions.map((s, i) => s.generate(chats[i]!, { temperature: 0, maxTokens: 40 })));
        const turn = (i: number) => [...chats[i]!, { role: 'assistant' as const, content: first[i]!.text }, { role: 'user' as const, content: 'What is 21 + 21?' }];
        const second = [];
        for (let i = 0; i < 3; i++) second.push(await sessions[i]!.generate(turn(i), { temperature: 0, maxTokens: 60 }));
        await Promise.all(sessions.map((s) => s.dispose()));
        return { first, second };
      };
      const a = await run(dflt);
      const b = await run(off);
      // Three at once draft nothing (until only one is left running: then it drafts after the gap).
      a.first.forEach((r, i) => {
        expect(r.tokens).toEqual(b.first[i]!.tokens);
        expect(r.usage.draftTokens, 'three at once: few drafts').toBeLessThan(r.tokens.length / 2);
      });
      a.second.forEach((r, i) => {
        expect(r.tokens).toEqual(b.second[i]!.tokens);
        expect(r.usage.draftTokens, 'alone: drafts').toBeGreaterThan(0);
        expect(r.usage.acceptedDraftTokens / r.usage.draftTokens).toBeGreaterThan(0.7);  // the gap was filled again
      });
    } finally {
      await dflt.dispose();
    }
  }, 120_000);

  it('maxTokens reached inside an accepted run, and stop strings that end inside one', async () => {
    const m = chats[1]!;
    const full = await off.generate(m, { temperature: 0, maxTokens: 80 });
    for (const maxTokens of [1, 2, 3, 4, 5, 6, 7, 10, 13]) {
      for (const model of [on, on3]) {
        const r = await model.generate(m, { temperature: 0, maxTokens });
        expect(r.tokens).toEqual(full.tokens.slice(0, maxTokens));
      }
    }
    // Stops at several places of the known text (each a suffix of a few characters).
    const text = full.reasoning + full.text;
    for (const at of [12, 25, 40]) {
      const stop = full.text.length > at ? full.text.slice(at - 3, at) : text.slice(at - 3, at);
      if (!stop.trim()) continue;
      const a = await off.generate(m, { temperature: 0, maxTokens: 80, stop: [stop] });
      for (const model of [on, on3]) {
        const b = await model.generate(m, { temperature: 0, maxTokens: 80, stop: [stop] });
        expect(b.text).toBe(a.text);
        expect(b.tokens).toEqual(a.tokens);
        expect(b.finishReason).toBe(a.finishReason);
      }
    }
  }, 120_000);

  it('seeded sampling: the same tokens and logprobs with and without speculation (penalties too)', async () => {
    for (const [i, messages] of chats.slice(0, 4).entries()) {
      for (const extra of [{}, { repetitionPenalty: 1.15, presencePenalty: 0.4, frequencyPenalty: 0.2 }, { topK: 5, minP: 0.05 }]) {
        const opts: TextGenerateOptions = { temperature: 0.9, topP: 0.95, seed: 100 + i, maxTokens: 60, logprobs: 2, ...extra };
        const a = await off.generate(messages, opts);
        for (const model of [on, on3]) {
          const b = await model.generate(messages, opts);
          expect(b.tokens).toEqual(a.tokens);
          expect(b.logprobs).toEqual(a.logprobs);
        }
      }
    }
    expect(on.stats().speculative.acceptedDraftTokens).toBeGreaterThan(0);
  }, 180_000);

  it('usage reports the drafts proposed and accepted; speculative: false per request drafts nothing', async () => {
    const r = await on.generate(chats[0]!, { temperature: 0, maxTokens: 40 });
    expect(r.usage.draftTokens).toBeGreaterThan(0);
    expect(r.usage.acceptedDraftTokens).toBeGreaterThan(0);
    expect(r.usage.acceptedDraftTokens).toBeLessThanOrEqual(r.usage.draftTokens);
    // Every round verifies one draft and yields the accepted ones plus one: tokens = rounds + accepted
    // (+ the first token, from the prompt's step, + a final round without a draft at maxTokens).
    expect(r.tokens.length).toBeGreaterThanOrEqual(r.usage.draftTokens + r.usage.acceptedDraftTokens);
    const plain = await on.generate(chats[0]!, { temperature: 0, maxTokens: 40, speculative: false });
    expect(plain.usage.draftTokens).toBe(0);
    expect(plain.tokens).toEqual(r.tokens);
    const k2 = await on.generate(chats[0]!, { temperature: 0, maxTokens: 40, speculative: { draftTokens: 2 } });
    expect(k2.tokens).toEqual(r.tokens);
  }, 60_000);

  it('an abort mid-round leaves the session as without speculation: its next generation is the same', async () => {
    const prompt = chats[1]!;
    for (const stopAfter of [3, 8, 17]) {
      const results = [];
      for (const model of [off, on]) {
        const session = model.createSession({ contextLength: 1024 });
        const ctrl = new AbortController();
        let seen = 0;
        await expect(session.generate(prompt, {
          temperature: 0, maxTokens: 200, signal: ctrl.signal,
          onChunk: () => { if (++seen === stopAfter) ctrl.abort(); },
        })).rejects.toMatchObject({ code: 'ABORTED' });
        // What the session holds after the abort decides what comes next.
        const next = await session.generate([...prompt, { role: 'assistant', content: 'ok' }, { role: 'user', content: 'What is 12 + 30?' }],
          { temperature: 0, maxTokens: 30 });
        results.push({ length: session.length, next: next.tokens, cached: next.usage.cachedTokens });
        await session.dispose();
      }
      expect(results[1]!.next).toEqual(results[0]!.next);
    }
  }, 120_000);
});

describe('prefix cache', () => {
  it("shared pages carry the MTP layer's KV: a prefix hit drafts exactly as a cold run (acceptance equal)", async () => {
    const opts = { threads: 2, kvCacheType: 'f32' as const };
    const warm = await Model.load(DEFAULT_MODEL, opts);
    const cold = await Model.load(DEFAULT_MODEL, { ...opts, prefixCache: false });
    try {
      // The declared tools make a long shared prefix the model was trained on (an odd one, such as a
      // repeated system line, makes it ramble, its drafts fail and the adaptive policy stops drafting).
      const tools = [{ type: 'function' as const, function: { name: 'get_weather', description: 'Current weather for a city',
        parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
      const q = (content: string) => [{ role: 'user' as const, content }];
      await warm.generate(q('What is 12 + 30?'), { tools, temperature: 0, maxTokens: 40 });
      const hit = await warm.generate(q('What is 345 + 678?'), { tools, temperature: 0, maxTokens: 120 });
      const ref = await cold.generate(q('What is 345 + 678?'), { tools, temperature: 0, maxTokens: 120 });
      expect(hit.usage.cachedTokens).toBeGreaterThanOrEqual(127);
      expect(hit.usage.draftTokens).toBeGreaterThan(20);  // drafting stayed on, so the MTP rows were read
      expect(hit.usage.cachedTokens % 16).toBe(15);  // whole pages less the position computed again for the MTP layer
      expect(ref.usage.cachedTokens).toBe(0);
      expect(hit.tokens).toEqual(ref.tokens);
      // Drafts read the cached pages' MTP rows: any wrong row would change what is accepted.
      expect(hit.usage.draftTokens).toBe(ref.usage.draftTokens);
      expect(hit.usage.acceptedDraftTokens).toBe(ref.usage.acceptedDraftTokens);
    } finally {
      await warm.dispose();
      await cold.dispose();
    }
  }, 60_000);
});

describe('adaptive policy', () => {
  it('useless drafts (random weights) stop after the probe rounds, and the model stops running its MTP layer', async () => {
    const dir = await ensureFixture('glm45');
    const on = await Model.load(dir, { threads: 2 });
    const off = await Model.load(dir, { threads: 2, speculative: false });
    try {
      const prompt = promptTokens(9, 24, on.info.vocabSize);
      const a = await on.generate({ tokens: prompt, maxTokens: 60, stopTokens: [] });
      const b = await off.generate({ tokens: prompt, maxTokens: 60, stopTokens: [] });
      expect(a.tokens).toEqual(b.tokens);
      const st = on.stats().speculative;
      expect(st.acceptanceRate).toBeLessThan(0.3);
      // 3 rounds of one draft each with none accepted (the model-wide judgement), then no more drafts,
      // and the MTP layer is off for good.
      expect(a.usage.draftTokens).toBe(3);
      expect(st.active).toBe(false);
      const steps = st.mtpSteps;
      const c = await on.generate({ tokens: prompt, maxTokens: 20, stopTokens: [] });
      expect(c.usage.draftTokens).toBe(0);
      expect(on.stats().speculative.mtpSteps).toBe(steps);
      expect(c.tokens).toEqual(b.tokens.slice(0, 20));
    } finally {
      await on.dispose();
      await off.dispose();
    }
  }, 60_000);
});

describe('KV rollback and the sampled distribution', () => {
  it('after rejected rounds the cache equals that of a session that never saw the drafts (logits bit for bit)', async () => {
    // f32 KV and the CPU backend's batch-invariant kernels: a position's K/V are the same bits whether
    // it was computed alone or in a verification step, so any rejected draft left behind shows.
    const on = await Model.load(DEFAULT_MODEL, { threads: 2, kvCacheType: 'f32', speculative: { minAcceptance: 0 } });
    const off = await Model.load(DEFAULT_MODEL, { threads: 2, kvCacheType: 'f32', speculative: false });
    try {
      const messages = [{ role: 'user' as const, content: 'Sort these words: kiwi, banana, apple, cherry, fig, grape.' }];
      const a = on.createSession({ contextLength: 1024 });
      const b = off.createSession({ contextLength: 1024 });
      const opts: TextGenerateOptions = { temperature: 0.7, seed: 3, maxTokens: 300, ignoreEos: true };
      const ra = await a.generate(messages, opts);
      const rb = await b.generate(messages, opts);
      expect(ra.tokens).toEqual(rb.tokens);
      expect(ra.usage.draftTokens - ra.usage.acceptedDraftTokens, 'rejected drafts').toBeGreaterThan(5);
      expect(a.length).toBe(b.length);
      const probe = [5, 17, 300];
      const la = await a.evaluate(probe, { allLogits: true });
      const lb = await b.evaluate(probe, { allLogits: true });
      expect(Buffer.from(la.buffer).equals(Buffer.from(lb.buffer))).toBe(true);
      await a.dispose();
      await b.dispose();
    } finally {
      await on.dispose();
      await off.dispose();
    }
  }, 120_000);

  it("tokens drawn in verification rounds follow the target's distribution (5 sigma)", async () => {
    const model = await Model.load(DEFAULT_MODEL, { threads: 2 });
    try {
      const tok = model.tokenizer!;
      const prompt = Array.from(tok.encode('[gMASK]<sop><|user|>\nHello! Who are you?<|assistant|>\n<think></think>\n'));
      // The first token comes from the prompt's step; the second from row 0 of a verification round
      // (whenever the first draft exists). Condition on the most likely first token.
      const session = model.createSession({ contextLength: 256 });
      const p0 = softmax(await session.evaluate(prompt), 1);
      const first = argmax(p0);
      const p1 = softmax(await session.evaluate([first]), 1);
      await session.dispose();
      const counts = new Map<number, number>();
      let n = 0;
      for (let seed = 0; seed < 1500; seed++) {
        const r = await model.generate({ tokens: prompt, maxTokens: 3, temperature: 1, seed });  // 3: a draft follows the first token
        if (r.tokens[0] !== first) continue;
        n++;
        counts.set(r.tokens[1]!, (counts.get(r.tokens[1]!) ?? 0) + 1);
      }
      expect(model.stats().speculative.rounds).toBeGreaterThan(0);
      expect(n).toBeGreaterThan(200);
      const top = Array.from(p1.keys()).sort((x, y) => p1[y]! - p1[x]!).slice(0, 4);
      for (const t of top) {
        const p = p1[t]!;
        const f = (counts.get(t) ?? 0) / n;
        expect(Math.abs(f - p), `token ${t}: frequency ${f.toFixed(3)} vs probability ${p.toFixed(3)} over ${n}`)
          .toBeLessThanOrEqual(5 * Math.sqrt((p * (1 - p)) / n) + 1e-9);
      }
    } finally {
      await model.dispose();
    }
  }, 180_000);
});

function softmax(logits: Float32Array, temperature: number): Float64Array {
  let m = -Infinity;
  for (const v of logits) m = Math.max(m, v);
  const out = new Float64Array(logits.length);
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += out[i] = Math.exp((logits[i]! - m) / temperature);
  for (let i = 0; i < out.length; i++) out[i]! /= z;
  return out;
}
