// The stream mechanics of the HTTP server: SSE writes wait for 'drain' when the socket buffer is full
// (back-pressure), a slow reader still receives the whole stream intact, keep-alive pings flow while a
// request waits silently in the queue, and CORS is off unless asked for.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SseWriter } from '../lib/server/sse.js';
import { postJson, readSse, serve, stop, type Served } from './helpers/server.js';

/** A response whose socket buffer is full until the test says so. */
class FullResponse extends EventEmitter {
  frames: string[] = [];
  full = true;
  destroyed = false;
  writableEnded = false;
  write(frame: string): boolean {
    this.frames.push(frame);
    return !this.full;
  }
  end(): void { this.writableEnded = true; }
}

describe('SseWriter', () => {
  it('a write into a full buffer resolves only after drain (or the client leaving)', async () => {
    const res = new FullResponse();
    const sse = new SseWriter(res as unknown as ServerResponse);
    let resolved = false;
    const p = sse.send('{"a":1}', 'x').then(() => { resolved = true; });
    await new Promise((r) => setTimeout(r, 30));
    expect(res.frames).toEqual(['event: x\ndata: {"a":1}\n\n']);
    expect(resolved).toBe(false);
    res.full = false;
    res.emit('drain');
    await p;
    expect(resolved).toBe(true);
    // A client that leaves releases a waiting writer too, and later writes are dropped.
    res.full = true;
    const q = sse.send('2');
    res.emit('close');
    await q;
    expect(sse.closed).toBe(true);
    await sse.send('3');
    expect(res.frames).toHaveLength(2);
  });
});

let s: Served;
beforeAll(async () => {
  // One request computing, up to four waiting: a second request waits silently behind the first.
  s = await serve({ pingIntervalMs: 50, streamCommitMs: 50 }, { maxConcurrentRequests: 1, maxQueuedRequests: 4 });
}, 60_000);
afterAll(async () => {
  await stop(s);
});

describe('streams over a socket', () => {
  it('a reader that stops reading for a while still gets the whole stream, in order', async () => {
    const body = JSON.stringify({ messages: [{ role: 'user', content: 'What is 2 + 3?' }], max_tokens: 600, ignore_eos: true, temperature: 0,
      logprobs: true, top_logprobs: 20, stream: true });
    const ref = await s.model.generate([{ role: 'user', content: 'What is 2 + 3?' }], { maxTokens: 600, ignoreEos: true, temperature: 0 });
    const { port } = new URL(s.url);
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const sock = net.connect(Number(port), '127.0.0.1', () => {
        sock.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
        // Not reading: the kernel buffers fill and the server's writes report back-pressure.
        sock.pause();
        setTimeout(() => sock.resume(), 1500);
      });
      const parts: Buffer[] = [];
      sock.on('data', (d: Buffer) => parts.push(d));
      sock.on('end', () => resolve(Buffer.concat(parts)));
      sock.on('error', reject);
    });
    expect(raw.subarray(0, 12).toString()).toBe('HTTP/1.1 200');
    // Undo the chunked transfer encoding (sizes count bytes), then read the events.
    let rest = raw.subarray(raw.indexOf('\r\n\r\n') + 4);
    const body8: Buffer[] = [];
    for (;;) {
      const eol = rest.indexOf('\r\n');
      const size = parseInt(rest.subarray(0, eol).toString(), 16);
      if (!size) break;
      body8.push(rest.subarray(eol + 2, eol + 2 + size));
      rest = rest.subarray(eol + 2 + size + 2);
    }
    const text = Buffer.concat(body8).toString('utf8');
    const events = text.split('\n\n').filter((f) => f.startsWith('data: ')).map((f) => f.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    let content = '', reasoning = '';
    for (const e of events.slice(0, -1)) {
      const d = (JSON.parse(e) as { choices: { delta: { content?: string; reasoning_content?: string } }[] }).choices[0]!.delta;
      content += d.content ?? '';
      reasoning += d.reasoning_content ?? '';
    }
    expect(content).toBe(ref.text);
    expect(reasoning).toBe(ref.reasoning);
    // The server's writes did wait for the paused reader.
    const metrics = await (await fetch(`${s.url}/metrics`)).text();
    expect(Number(/^glm_http_stream_backpressure_waits_total (\d+)$/m.exec(metrics)![1])).toBeGreaterThan(0);
  }, 60_000);

  it('a request waiting in the queue gets its headers, message_start and pings before its first token', async () => {
    const user = [{ role: 'user', content: 'What is 2 + 3?' }];
    const first = await postJson(`${s.url}/v1/chat/completions`, { messages: user, max_tokens: 800, ignore_eos: true, stream: true });
    const t0 = performance.now();
    const second = await postJson(`${s.url}/v1/messages`, { max_tokens: 20, messages: user, stream: true });
    // Committed after streamCommitMs although it has produced nothing yet (the pings below prove it;
    // this bound only catches a commit that waited for the first request to end).
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(second.status).toBe(200);
    const events = await readSse(second);
    const names = events.map((e) => e.event);
    expect(names[0]).toBe('message_start');
    const firstBlock = names.indexOf('content_block_start');
    expect(firstBlock).toBeGreaterThan(2);
    // Pings (the first follows message_start) while the queue held it.
    expect(names.slice(1, firstBlock).every((n) => n === 'ping')).toBe(true);
    expect(names.at(-1)).toBe('message_stop');
    await first.text();
  }, 60_000);

  it('/metrics is valid Prometheus text: every sample of a declared metric, counters counting what was served', async () => {
    const before = await (await fetch(`${s.url}/metrics`)).text();
    const value = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)![1]);
    const r = await postJson(`${s.url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 5, temperature: 0 });
    const usage = (await r.json() as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
    const res = await fetch(`${s.url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const declared = new Map<string, string>();
    for (const line of text.trimEnd().split('\n')) {
      const type = /^# TYPE (\w+) (counter|gauge|histogram|summary)$/.exec(line);
      if (type) { declared.set(type[1]!, type[2]!); continue; }
      if (line.startsWith('# HELP ')) continue;
      const m = /^(\w+)(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (-?[0-9.e+-]+|NaN|\+Inf)$/.exec(line);
      expect(m, line).not.toBeNull();
      const base = m![1]!.replace(/_(bucket|sum|count)$/, '');
      expect(declared.has(m![1]!) || declared.get(base) === 'histogram', line).toBe(true);
    }
    expect(value(text, 'glm_http_prompt_tokens_total') - value(before, 'glm_http_prompt_tokens_total')).toBe(usage.prompt_tokens);
    expect(value(text, 'glm_http_completion_tokens_total') - value(before, 'glm_http_completion_tokens_total')).toBe(usage.completion_tokens);
    expect(text).toMatch(/^glm_http_requests_total\{route="\/v1\/chat\/completions",status="200"\} \d+$/m);
    expect(value(text, 'glm_kv_pages_total')).toBeGreaterThan(0);
  });

  it('sends no CORS headers unless enabled; enabled, it answers preflights', async () => {
    const plain = await fetch(`${s.url}/v1/models`, { headers: { origin: 'http://evil.example' } });
    expect(plain.headers.get('access-control-allow-origin')).toBeNull();
    const c = await serve({ cors: 'http://app.example' });
    try {
      const pre = await fetch(`${c.url}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'http://app.example', 'access-control-request-method': 'POST' } });
      expect(pre.status).toBe(204);
      expect(pre.headers.get('access-control-allow-origin')).toBe('http://app.example');
      expect(pre.headers.get('access-control-allow-headers')).toMatch(/authorization/);
      const get = await fetch(`${c.url}/v1/models`);
      expect(get.headers.get('access-control-allow-origin')).toBe('http://app.example');
    } finally {
      await stop(c);
    }
  });
});
