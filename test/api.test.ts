// The TypeScript API's contracts: context limits, token and option validation, abort, dispose,
// memory accounting, reproducible sampling and concurrent sessions (RELIABILITY.md tables C, D, E, F).
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortError, ContextOverflowError, DisposedError, InvalidParamError, InvalidTokenError, Model, Session,
  BackendUnavailableError, GlmError,
} from '../lib/index.js';
import { ensureFixture } from './fixtures/variants.js';
import { promptTokens } from './helpers/prompt.js';

let dir: string;
let model: Model;
let vocab: number;

beforeAll(async () => {
  dir = await ensureFixture('base');
  model = await Model.load(dir, { threads: 2 });
  vocab = model.info.vocabSize;
}, 60_000);
afterAll(async () => {
  await model?.dispose();
});

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

describe('model.info', () => {
  it('describes the architecture from config.json', () => {
    const info = model.info;
    const cfg = JSON.parse(readFileSync(`${dir}/config.json`, 'utf8'));
    expect(info.hiddenSize).toBe(cfg.hidden_size);
    expect(info.numLayers).toBe(cfg.num_hidden_layers);
    expect(info.headDim).toBe(cfg.head_dim);
    expect(info.rotaryDim).toBe(Math.trunc(cfg.head_dim * cfg.partial_rotary_factor));
    expect(info.numExperts).toBe(cfg.n_routed_experts);
    expect(info.eosTokenIds).toEqual(cfg.eos_token_id);
    expect(info.hasMtp).toBe(true);
    expect(info.backend).toBe('cpu');
    expect(info.dtype).toBe('BF16');
  });

  it('maps the weights instead of copying them, and accounts weights and KV cache separately', async () => {
    const info = model.info;
    // The shard is memory-mapped: it appears in this process's mappings.
    const maps = readFileSync('/proc/self/maps', 'utf8');
    expect(maps).toContain(`${dir}/model.safetensors`);
    expect(info.memory.weightsMappedBytes).toBeGreaterThan(0);
    // Only small vectors (norms, biases) are copied, widened to fp32.
    expect(info.memory.weightsOwnedBytes).toBeLessThan(info.memory.weightsMappedBytes / 10);

    const before = model.info.memory.kvCacheBytes;
    const s = model.createSession({ contextLength: 1024 });
    expect(model.info.memory.kvCacheBytes).toBe(before);  // pages are taken as tokens arrive
    await s.evaluate(promptTokens(1, 300, vocab));
    const grown = model.info.memory.kvCacheBytes - before;
    // 300 tokens fill 19 pages of 16 positions of K|V rows (kv_heads·head_dim bf16 values each, per layer).
    expect(info.kvCache).toMatchObject({ type: 'bf16', pageTokens: 16, prefixCache: true });
    // The MTP layer keeps its KV in the same pages when speculative decoding is on (default with one).
    const kvLayers = info.numLayers + (info.speculative.draftTokens > 0 ? 1 : 0);
    const perToken = kvLayers * 2 * info.numKeyValueHeads * info.headDim * 2;
    expect(info.kvCache.pageBytes).toBe(16 * perToken);
    expect(grown).toBe(19 * 16 * perToken);
    expect(info.memory.kvPoolBytes).toBe(info.kvCache.pages * info.kvCache.pageBytes);
    await s.dispose();
    // The session's pages went back (its full pages stay in the prefix cache, reclaimable: not counted).
    expect(model.info.memory.kvCacheBytes).toBe(before);
  });
});

describe('context limits', () => {
  it('rejects evaluation past contextLength with both sizes named, and the session stays usable', async () => {
    const s = model.createSession({ contextLength: 16 });
    const first = promptTokens(2, 10, vocab);
    await s.evaluate(first);
    const err = await s.evaluate(promptTokens(3, 7, vocab)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ContextOverflowError);
    expect((err as ContextOverflowError).code).toBe('CONTEXT_OVERFLOW');
    expect((err as Error).message).toContain('17');
    expect((err as Error).message).toContain('16');
    expect(s.length).toBe(10);
    // Still usable: filling exactly to the limit works and equals a fresh session's result.
    const rest = promptTokens(4, 6, vocab);
    const logits = await s.evaluate(rest);
    const fresh = model.createSession({ contextLength: 16 });
    const expected = await fresh.evaluate([...first, ...rest]);
    expect(maxAbsDiff(logits, expected)).toBeLessThan(1e-4);
    expect(s.length).toBe(16);
    await s.dispose();
    await fresh.dispose();
  });

  it('rejects a contextLength above the model maximum or not a positive integer', () => {
    expect(() => model.createSession({ contextLength: 0 })).toThrow(InvalidParamError);
    expect(() => model.createSession({ contextLength: 1.5 })).toThrow(InvalidParamError);
    expect(() => model.createSession({ contextLength: model.info.maxPositionEmbeddings + 1 })).toThrow(InvalidParamError);
  });

  it('generate: prompt + maxTokens beyond an explicit contextLength is a ContextOverflowError', async () => {
    await expect(model.generate({ tokens: [1, 2, 3], maxTokens: 10, contextLength: 12 })).rejects.toBeInstanceOf(ContextOverflowError);
  });
});

describe('token and option validation', () => {
  it('rejects token ids outside the vocabulary and non-integers before any native work', async () => {
    const s = model.createSession({ contextLength: 32 });
    for (const bad of [[vocab], [-1], [2 ** 31 - 1], [1.5], [Number.NaN]]) {
      await expect(s.evaluate(bad)).rejects.toBeInstanceOf(InvalidTokenError);
    }
    await expect(s.evaluate(new Uint32Array([vocab]))).rejects.toBeInstanceOf(InvalidTokenError);
    await expect(s.evaluate([])).rejects.toBeInstanceOf(InvalidParamError);
    await expect(s.evaluate('1,2' as unknown as number[])).rejects.toBeInstanceOf(InvalidParamError);
    await expect(s.evaluate([1], { allLogit: true } as never)).rejects.toThrow(/unknown option "allLogit"/);
    expect(s.length).toBe(0);
    const logits = await s.evaluate(new Uint32Array([1, 2]));
    expect(logits.length).toBe(vocab);
    await s.dispose();
  });

  it.each([
    ['temperature', -1], ['temperature', Number.NaN], ['temperature', Number.POSITIVE_INFINITY], ['temperature', 1e30],
    ['topP', 0], ['topP', 1.5], ['topK', -1], ['topK', 1e9], ['topK', 2.5], ['minP', -0.1], ['minP', 2],
    ['maxTokens', -1], ['maxTokens', 2 ** 53], ['seed', -1], ['seed', 1.5], ['seed', 10n], ['temperature', '0.5'],
  ])('generate rejects %s = %s', async (key, value) => {
    await expect(model.generate({ tokens: [1, 2], [key]: value } as never)).rejects.toBeInstanceOf(InvalidParamError);
  });

  it('generate rejects unknown options and bad stop tokens', async () => {
    await expect(model.generate({ tokens: [1], max_tokens: 3 } as never)).rejects.toThrow(/unknown option "max_tokens"/);
    await expect(model.generate({ tokens: [1], stopTokens: [vocab] })).rejects.toBeInstanceOf(InvalidTokenError);
  });

  it("backend 'cuda' without a usable GPU is a typed error saying why; 'auto' falls back with a reason", async () => {
    // Without a GPU (CI) both paths are testable: 'cuda' fails with the reason (no CUDA in this build, no
    // driver or device, compute capability < 8.0), and 'auto' runs on the CPU and exposes that reason.
    const auto = await Model.load(dir, { backend: 'auto', threads: 1 });
    try {
      if (auto.info.backend === 'cuda') return;  // a lent GPU: scripts/gpu-check.sh covers this machine
      expect(auto.info.backend).toBe('cpu');
      expect(auto.info.backendReason).toMatch(/^auto: CPU because .+/);
      expect(auto.info.backendReason).not.toContain('\n');
      const err = await Model.load(dir, { backend: 'cuda' }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BackendUnavailableError);
      expect((err as Error).message).toMatch(/CUDA/);
      expect(auto.info.backendReason).toContain((err as Error).message);
    } finally {
      await auto.dispose();
    }
    const cpu = await Model.load(dir, { backend: 'cpu', threads: 1 });
    expect(cpu.info.backend).toBe('cpu');
    expect(cpu.info.backendReason).toBe('requested');
    await cpu.dispose();
    await expect(Model.load(dir, { backend: 'tpu' as never })).rejects.toBeInstanceOf(InvalidParamError);
    await expect(Model.load(dir, { threads: 0 })).rejects.toBeInstanceOf(InvalidParamError);
  });
});

describe('generation', () => {
  it('maxTokens 0 evaluates the prompt and returns no tokens', async () => {
    const r = await model.generate({ tokens: [1, 2, 3], maxTokens: 0 });
    expect(r.tokens).toEqual([]);
    expect(r.finishReason).toBe('length');
    expect(r.usage).toEqual({ promptTokens: 3, cachedTokens: 0, completionTokens: 0, totalTokens: 3, draftTokens: 0, acceptedDraftTokens: 0 });
  });

  it('stops at a stop token and includes it', async () => {
    const prompt = promptTokens(9, 12, vocab);
    const free = await model.generate({ tokens: prompt, maxTokens: 12, stopTokens: [] });
    const stopAt = free.tokens[4]!;
    const firstIndex = free.tokens.indexOf(stopAt);
    const r = await model.generate({ tokens: prompt, maxTokens: 12, stopTokens: [stopAt] });
    expect(r.finishReason).toBe('stop');
    expect(r.tokens).toEqual(free.tokens.slice(0, firstIndex + 1));
  });

  it('is reproducible for a seed when sampling, and the seed matters', async () => {
    const opts = { tokens: promptTokens(10, 8, vocab), maxTokens: 24, temperature: 1.5, stopTokens: [] };
    const a = await model.generate({ ...opts, seed: 42 });
    const b = await model.generate({ ...opts, seed: 42 });
    const c = await model.generate({ ...opts, seed: 43 });
    expect(a.tokens).toEqual(b.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    // topK 1 is greedy whatever the temperature
    const greedy = await model.generate({ ...opts, temperature: 0 });
    const topk1 = await model.generate({ ...opts, topK: 1, seed: 7 });
    expect(topk1.tokens).toEqual(greedy.tokens);
  });

  it('reports usage and timings', async () => {
    const r = await model.generate({ tokens: promptTokens(11, 20, vocab), maxTokens: 5, stopTokens: [] });
    expect(r.usage).toMatchObject({ promptTokens: 20, cachedTokens: 0, completionTokens: 5, totalTokens: 25 });
    // Speculative decoding (on for this MTP fixture until its useless drafts suspend it): each round
    // verifies one draft; 5 tokens take at most 4 rounds after the first token.
    expect(r.usage.draftTokens).toBeLessThanOrEqual(4);
    expect(r.usage.acceptedDraftTokens).toBeLessThanOrEqual(r.usage.draftTokens);
    // The same prompt again: its first full KV page (16 positions) comes from the prefix cache, less
    // the page's last position, computed again for the MTP layer's input (its hidden state).
    const mtpActive = model.stats().speculative.active;
    const again = await model.generate({ tokens: promptTokens(11, 20, vocab), maxTokens: 5, stopTokens: [] });
    expect(again.usage).toMatchObject({ promptTokens: 20, cachedTokens: mtpActive ? 15 : 16, completionTokens: 5, totalTokens: 25 });
    expect(again.tokens).toEqual(r.tokens);
    expect(r.timings.prefillMs).toBeGreaterThan(0);
    expect(r.timings.decodeTokensPerSecond).toBeGreaterThan(0);
  });
});

describe('abort', () => {
  it('an already-aborted signal rejects at once without touching the session', async () => {
    const s = model.createSession({ contextLength: 64 });
    const ac = new AbortController();
    ac.abort();
    await expect(s.evaluate([1, 2, 3], { signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    await expect(model.generate({ tokens: [1], signal: ac.signal })).rejects.toBeInstanceOf(AbortError);
    expect(s.length).toBe(0);
    await s.dispose();
  });

  it('aborting a queued evaluation leaves the session exactly as before (all or nothing)', async () => {
    const s = model.createSession({ contextLength: 2048 });
    const ac = new AbortController();
    const long = s.evaluate(promptTokens(12, 1500, vocab));
    const queued = s.evaluate([5, 6, 7], { signal: ac.signal }).catch((e: unknown) => e);
    ac.abort();
    // The queued call rejects within one engine step, while the long one is still running.
    expect(await queued).toBeInstanceOf(AbortError);
    await long;
    expect(s.length).toBe(1500);
    const next = await s.evaluate([5]);
    const fresh = model.createSession({ contextLength: 2048 });
    const expected = await fresh.evaluate([...promptTokens(12, 1500, vocab), 5]);
    expect(maxAbsDiff(next, expected)).toBeLessThan(1e-4);
    await s.dispose();
    await fresh.dispose();
  });

  it('aborting a running generation rejects with AbortError and the model stays usable', async () => {
    const ac = new AbortController();
    const running = model.generate({ tokens: [1, 2], maxTokens: 2000, stopTokens: [], signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    const err = await running.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AbortError);
    const r = await model.generate({ tokens: [1, 2], maxTokens: 3, stopTokens: [] });
    expect(r.tokens).toHaveLength(3);
  });
});

describe('lifetimes', () => {
  it('dispose is idempotent, use after dispose throws DisposedError, and in-flight work rejects', async () => {
    const m = await Model.load(dir, { threads: 1 });
    const s = m.createSession({ contextLength: 2048 });
    const inFlight = m.generate({ tokens: [1, 2], maxTokens: 2000, stopTokens: [] });
    const sessionWork = s.evaluate(promptTokens(13, 1800, vocab));
    const settled = Promise.allSettled([inFlight, sessionWork]);  // handled before they can reject
    await new Promise((r) => setTimeout(r, 10));
    await m.dispose();
    await m.dispose();
    const results = await settled;
    for (const r of results) {
      // Work that had already finished may resolve; anything cut short is a DisposedError.
      if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(DisposedError);
    }
    expect(results.some((r) => r.status === 'rejected')).toBe(true);
    expect(() => m.info).toThrow(DisposedError);
    expect(() => m.createSession()).toThrow(DisposedError);
    await expect(m.generate({ tokens: [1] })).rejects.toBeInstanceOf(DisposedError);
    await expect(s.evaluate([1])).rejects.toBeInstanceOf(DisposedError);
    await s.dispose();  // disposing a session of a disposed model is a no-op
  });

  it('session dispose during its evaluation rejects that call; the model and other sessions carry on', async () => {
    const s = model.createSession({ contextLength: 2048 });
    const other = model.createSession({ contextLength: 64 });
    const work = s.evaluate(promptTokens(14, 1800, vocab)).then(() => 'resolved', (e: unknown) => e);
    await s.dispose();
    const r = await work;
    if (r !== 'resolved') expect(r).toBeInstanceOf(DisposedError);
    await expect(s.evaluate([1])).rejects.toBeInstanceOf(DisposedError);
    expect((await other.evaluate([1, 2])).length).toBe(vocab);
    await other[Symbol.asyncDispose]();
    expect(other.disposed).toBe(true);
  });

  it('cudaGraphs is a boolean load option (a no-op on the CPU backend)', async () => {
    await expect(Model.load(dir, { threads: 1, prefetch: false, cudaGraphs: 'no' as unknown as boolean }))
      .rejects.toBeInstanceOf(InvalidParamError);
    const m = await Model.load(dir, { backend: 'cpu', threads: 1, prefetch: false, cudaGraphs: false });
    expect((await m.generate({ tokens: [1, 2, 3], maxTokens: 3 })).tokens).toEqual(
      (await model.generate({ tokens: [1, 2, 3], maxTokens: 3 })).tokens);
    expect(m.info.cudaGraphs).toEqual({ captures: 0, replays: 0, failures: 0 });
    await m.dispose();
  });

  it('Symbol.asyncDispose disposes the model', async () => {
    const m = await Model.load(dir, { threads: 1, prefetch: false });
    await m[Symbol.asyncDispose]();
    expect(m.disposed).toBe(true);
  });

  it('every error is a GlmError with a stable code', async () => {
    const err = await model.generate({ tokens: [-5] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GlmError);
    expect((err as GlmError).code).toBe('INVALID_TOKEN');
    expect(err).toBeInstanceOf(Error);
  });
});

describe('concurrency', () => {
  it('two sessions evaluating concurrently get the same logits as each alone', async () => {
    const pa = promptTokens(20, 50, vocab), pb = promptTokens(21, 30, vocab);
    const a = model.createSession({ contextLength: 128 }), b = model.createSession({ contextLength: 128 });
    const [la, lb] = await Promise.all([a.evaluate(pa), b.evaluate(pb)]);
    const [ga, gb] = await Promise.all([
      model.generate({ tokens: pa, maxTokens: 10, stopTokens: [] }),
      model.generate({ tokens: pb, maxTokens: 10, stopTokens: [] }),
    ]);
    const sa = model.createSession({ contextLength: 128 });
    expect(maxAbsDiff(la, await sa.evaluate(pa))).toBe(0);
    const sb = model.createSession({ contextLength: 128 });
    expect(maxAbsDiff(lb, await sb.evaluate(pb))).toBe(0);
    expect(ga.tokens).toEqual((await model.generate({ tokens: pa, maxTokens: 10, stopTokens: [] })).tokens);
    expect(gb.tokens).toEqual((await model.generate({ tokens: pb, maxTokens: 10, stopTokens: [] })).tokens);
    for (const s of [a, b, sa, sb]) await s.dispose();
  });

  it('calls on one session run in call order', async () => {
    const s = model.createSession({ contextLength: 64 });
    const p1 = s.evaluate([1, 2, 3]);
    const p2 = s.evaluate([4]);
    const [, l2] = await Promise.all([p1, p2]);
    const fresh = model.createSession({ contextLength: 64 });
    expect(maxAbsDiff(l2, await fresh.evaluate([1, 2, 3, 4]))).toBeLessThan(1e-4);
    expect(s).toBeInstanceOf(Session);
    await s.dispose();
    await fresh.dispose();
  });
});

describe('worker threads (RELIABILITY E8)', () => {
  it('a worker terminated mid-generation neither crashes nor hangs the process, and another worker still works', async () => {
    const { Worker } = await import('node:worker_threads');
    const { pathToFileURL } = await import('node:url');
    const path = await import('node:path');
    // Workers run the compiled library (npm test builds dist/ first).
    const lib = pathToFileURL(path.resolve(__dirname, '..', 'dist', 'lib', 'index.js')).href;
    const modelDir = path.resolve(__dirname, '..', 'models', 'tiny-default');
    const busy = `
      import { Model } from ${JSON.stringify(lib)};
      import { parentPort } from 'node:worker_threads';
      const m = await Model.load(${JSON.stringify(modelDir)}, { threads: 2 });
      parentPort.postMessage('loaded');
      await m.generate('hello', { maxTokens: 100000, ignoreEos: true, temperature: 0 }).catch(() => undefined);`;
    for (let i = 0; i < 3; i++) {
      const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(busy)}`));
      await new Promise<void>((resolve, reject) => {
        w.on('message', (m) => { if (m === 'loaded') resolve(); });
        w.on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 30));
      await w.terminate();
    }
    const ok = `
      import { Model } from ${JSON.stringify(lib)};
      import { parentPort } from 'node:worker_threads';
      const m = await Model.load(${JSON.stringify(modelDir)}, { threads: 1 });
      const r = await m.generate('hi', { maxTokens: 5, ignoreEos: true });
      await m.dispose();
      parentPort.postMessage(r.tokens.length);`;
    const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(ok)}`));
    const n = await new Promise((resolve, reject) => { w.on('message', resolve); w.on('error', reject); });
    expect(n).toBe(5);
  }, 60_000);
});

describe('stress (RELIABILITY F3, G6)', () => {
  it('an abort storm leaves no sessions, caches or queued work behind', async () => {
    const before = model.info.memory.kvCacheBytes;
    const runs: Promise<unknown>[] = [];
    for (let i = 0; i < 60; i++) {
      const ac = new AbortController();
      const s = model.createSession({ contextLength: 512 });
      const work = (i % 2 === 0
        ? s.evaluate(promptTokens(100 + i, 200 + i, vocab), { signal: ac.signal })
        : model.generate({ tokens: promptTokens(200 + i, 20, vocab), maxTokens: 200, stopTokens: [], signal: ac.signal }))
        .then(() => 'done', (e: unknown) => (e as { code?: string }).code)
        .finally(() => s.dispose());
      // Abort at different points: before the job starts, while it runs, or not at all.
      if (i % 3 === 0) ac.abort();
      else if (i % 3 === 1) setTimeout(() => ac.abort(), i % 7);
      runs.push(work);
    }
    const outcomes = await Promise.all(runs);
    for (const o of outcomes) expect(['done', 'ABORTED']).toContain(o);
    expect(outcomes.filter((o) => o === 'ABORTED').length).toBeGreaterThanOrEqual(20);
    expect(model.info.memory.kvCacheBytes).toBe(before);
    // Still exact afterwards.
    const a = model.createSession({ contextLength: 64 }), b = model.createSession({ contextLength: 64 });
    expect(maxAbsDiff(await a.evaluate([1, 2, 3]), await b.evaluate([1, 2, 3]))).toBe(0);
    await a.dispose();
    await b.dispose();
  });

  it('load → generate → dispose cycles release every mapping of the weights', async () => {
    const mappings = () => readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes(`${dir}/model.safetensors`)).length;
    const baseline = mappings();  // the suite's shared model keeps one mapping
    for (let i = 0; i < 15; i++) {
      const m = await Model.load(dir, { threads: 1, prefetch: i % 2 === 0 });
      expect(mappings()).toBe(baseline + 1);
      await m.generate({ tokens: [1, 2, 3], maxTokens: 4, stopTokens: [] });
      await m.dispose();
    }
    // Unmapping happens on the engine thread after dispose resolves its last job: allow it a moment.
    for (let t = 0; t < 50 && mappings() !== baseline; t++) await new Promise((r) => setTimeout(r, 10));
    expect(mappings()).toBe(baseline);
  });
});
