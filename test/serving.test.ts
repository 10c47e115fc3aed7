// The serving engine (cpp/engine/scheduler.h, kv_pool.h): concurrent requests share forward steps,
// one paged KV pool with a prefix cache, preemption under memory pressure, bounded queues, stats.
// Every expectation compares the engine with itself run alone (the CPU backend is batch invariant:
// a request's tokens and logits are bit-identical whatever else shares its steps), so these tests fail
// on any cross-talk between requests, any page given to two owners or any lost page.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AbortError, ContextOverflowError, DisposedError, InvalidParamError, Model, QueueFullError, type GenerateResult,
} from '../lib/index.js';
import path from 'node:path';
import { REPO_ROOT, ensureFixture } from './fixtures/variants.js';
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

interface Job { prompt: number[]; maxTokens: number }

function greedy(m: Model, job: Job, extra: { signal?: AbortSignal; cacheNamespace?: string } = {}): Promise<GenerateResult> {
  return m.generate({ tokens: job.prompt, maxTokens: job.maxTokens, temperature: 0, stopTokens: [], ...extra });
}

/** Each job run alone on its own model (nothing shared, nothing cached). */
async function solo(jobs: Job[], options: Parameters<typeof Model.load>[1] = {}): Promise<number[][]> {
  const m = await Model.load(dir, { threads: 2, prefixCache: false, ...options });
  try {
    const out: number[][] = [];
    for (const job of jobs) out.push((await greedy(m, job)).tokens);
    return out;
  } finally {
    await m.dispose();
  }
}

function held(m: Model): number {
  return m.stats().kvCache.pagesUsed;
}

describe('continuous batching', () => {
  it('16 concurrent greedy requests (some aborted, some ending early) give each its solo tokens', async () => {
    const jobs: Job[] = Array.from({ length: 16 }, (_, i) => ({
      prompt: promptTokens(300 + i, 5 + ((i * 37) % 90), vocab),
      // every fourth ends early; three run long enough to be aborted mid-way
      maxTokens: [3, 8, 13].includes(i) ? 400 : i % 4 === 0 ? 3 : 20 + ((i * 13) % 30),
    }));
    const alone = await solo(jobs);
    const before = model.stats();
    const controllers = jobs.map(() => new AbortController());
    const runs = jobs.map((job, i) => greedy(model, job, { signal: controllers[i]!.signal }).then(
      (r) => r.tokens, (e: unknown) => e));
    // Three requests are aborted while they run (the engine is mid-way through the batch).
    setTimeout(() => { for (const i of [3, 8, 13]) controllers[i]!.abort(); }, 5);
    const results = await Promise.all(runs);
    let compared = 0;
    for (const [i, r] of results.entries()) {
      if (r instanceof AbortError) {
        expect([3, 8, 13], `request ${i} was not aborted`).toContain(i);
        continue;
      }
      expect(r, `request ${i}`).toEqual(alone[i]);
      compared++;
    }
    expect(compared).toBeGreaterThanOrEqual(13);
    // They shared steps: far fewer forward steps than tokens computed.
    const after = model.stats();
    const generated = after.generationTokens - before.generationTokens;
    expect(after.steps - before.steps).toBeLessThan(generated / 3);
    expect(held(model)).toBe(0);
  }, 60_000);

  it('logits of a batched evaluation equal the unbatched ones bit for bit', async () => {
    const a = model.createSession({ contextLength: 256 });
    const b = model.createSession({ contextLength: 256 });
    const c = model.createSession({ contextLength: 256 });
    await b.evaluate(promptTokens(41, 37, vocab));
    await c.evaluate(promptTokens(42, 5, vocab));
    const [la, lb, lc] = await model.evaluateBatch([
      { session: a, tokens: promptTokens(43, 70, vocab), allLogits: true },
      { session: b, tokens: [7] },
      { session: c, tokens: [9, 10, 11], allLogits: true },
    ]);
    const x = model.createSession({ contextLength: 256 });
    expect(await x.evaluate(promptTokens(43, 70, vocab), { allLogits: true })).toEqual(la);
    await x.reset();
    await x.evaluate(promptTokens(41, 37, vocab));
    expect(await x.evaluate([7])).toEqual(lb);
    await x.reset();
    await x.evaluate(promptTokens(42, 5, vocab));
    expect(await x.evaluate([9, 10, 11], { allLogits: true })).toEqual(lc);
    for (const s of [a, b, c, x]) await s.dispose();
  });

  it('a long prompt is prefilled in chunks that give the same logits as one step', async () => {
    const chunked = await Model.load(dir, { threads: 2, maxBatchTokens: 7 });
    try {
      expect(chunked.info.scheduler.maxBatchTokens).toBe(7);
      const prompt = promptTokens(51, 100, vocab);
      const s1 = chunked.createSession({ contextLength: 128 });
      const s2 = model.createSession({ contextLength: 128 });
      expect(await s1.evaluate(prompt, { allLogits: true })).toEqual(await s2.evaluate(prompt, { allLogits: true }));
      await s2.dispose();
    } finally {
      await chunked.dispose();
    }
  });

  it('1,000 requests in bursts with random aborts and disposes: every finished one equals its solo run, no page leaks', async () => {
    // 40 distinct jobs (so solo runs stay cheap), drawn 1,000 times; repeats also exercise the prefix
    // cache. Half are generations (aborted through their signal), half evaluations on a session of
    // their own (aborted, or the session disposed under them).
    const distinct: Job[] = Array.from({ length: 40 }, (_, i) => ({
      prompt: promptTokens(700 + i, 1 + ((i * 53) % 70), vocab),
      maxTokens: 1 + ((i * 29) % 24),
    }));
    const alone = await solo(distinct);
    const aloneLogits: Float32Array[] = [];
    for (const job of distinct) {
      const s = model.createSession({ contextLength: 128, });
      aloneLogits.push(await s.evaluate(job.prompt, { cacheNamespace: 'solo' }));
      await s.dispose();
    }
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const outcomes = { done: 0, aborted: 0, disposed: 0 };
    const baseline = held(model);
    for (let burst = 0; burst < 20; burst++) {
      const runs: Promise<void>[] = [];
      for (let k = 0; k < 50; k++) {
        const j = Math.floor(rand() * distinct.length);
        const roll = rand();
        const ac = new AbortController();
        const failed = (e: unknown) => {
          if (e instanceof AbortError) outcomes.aborted++;
          else if (e instanceof DisposedError) outcomes.disposed++;
          else throw e;
        };
        let run: Promise<void>;
        if (k % 2 === 0) {
          run = greedy(model, distinct[j]!, { signal: ac.signal }).then((r) => {
            expect(r.tokens, `job ${j}`).toEqual(alone[j]);
            outcomes.done++;
          }, failed);
          if (roll < 0.3) ac.abort();
          else if (roll < 0.6) setTimeout(() => ac.abort(), Math.floor(rand() * 8));
        } else {
          const session = model.createSession({ contextLength: 128 });
          run = session.evaluate(distinct[j]!.prompt, { signal: ac.signal }).then((logits) => {
            expect(logits, `job ${j}`).toEqual(aloneLogits[j]);
            outcomes.done++;
          }, failed).finally(() => session.dispose());
          if (roll < 0.15) ac.abort();
          else if (roll < 0.3) setTimeout(() => ac.abort(), Math.floor(rand() * 4));
          else if (roll < 0.5) setTimeout(() => void session.dispose(), Math.floor(rand() * 4));
        }
        runs.push(run);
      }
      await Promise.all(runs);
    }
    expect(outcomes.done + outcomes.aborted + outcomes.disposed).toBe(1000);
    expect(outcomes.done).toBeGreaterThan(300);
    expect(outcomes.aborted).toBeGreaterThan(100);
    expect(outcomes.disposed).toBeGreaterThan(10);
    expect(held(model)).toBe(baseline);
    const st = model.stats();
    expect(st.running).toBe(0);
    expect(st.waiting).toBe(0);
  }, 120_000);
});

describe('KV page pool', () => {
  it('under memory pressure preempts and recomputes, with the same tokens as an unconstrained run', async () => {
    // 96 positions of pool; 8 requests of up to 17 + 40 positions each cannot all fit at once.
    const small = await Model.load(dir, { threads: 2, kvCacheSize: { tokens: 96 } });
    try {
      expect(small.info.kvCache.pages).toBe(6);
      const jobs: Job[] = Array.from({ length: 8 }, (_, i) => ({ prompt: promptTokens(900 + i, 10 + i, vocab), maxTokens: 40 }));
      const alone = await solo(jobs);
      const results = await Promise.all(jobs.map((job) => greedy(small, job)));
      results.forEach((r, i) => expect(r.tokens, `request ${i}`).toEqual(alone[i]));
      expect(small.stats().preemptions).toBeGreaterThan(0);
      expect(held(small)).toBe(0);
    } finally {
      await small.dispose();
    }
  }, 60_000);

  it('a request that cannot fit even alone is a ContextOverflowError before any work, and the model keeps serving', async () => {
    const small = await Model.load(dir, { threads: 2, kvCacheSize: { tokens: 64 } });
    try {
      const before = small.stats().steps;
      const err = await greedy(small, { prompt: promptTokens(1, 40, vocab), maxTokens: 30 }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ContextOverflowError);
      expect((err as Error).message).toMatch(/KV cache pool/);
      expect(small.stats().steps).toBe(before);
      const ok = await greedy(small, { prompt: promptTokens(1, 40, vocab), maxTokens: 10 });
      expect(ok.tokens).toHaveLength(10);
    } finally {
      await small.dispose();
    }
  });

  it('idle sessions give their pages back under pressure and recompute on their next turn', async () => {
    const small = await Model.load(dir, { threads: 2, kvCacheSize: { tokens: 64 }, prefixCache: false });
    try {
      const a = small.createSession({ contextLength: 128 });
      const pa = promptTokens(61, 40, vocab);
      await a.evaluate(pa);
      expect(held(small)).toBe(3);
      // Another session needs the whole pool: a's pages go back (its tokens stay).
      const b = small.createSession({ contextLength: 128 });
      await b.evaluate(promptTokens(62, 60, vocab));
      expect(a.length).toBe(40);
      await b.dispose();
      const next = await a.evaluate([5]);
      const fresh = model.createSession({ contextLength: 128 });
      expect(next).toEqual(await fresh.evaluate([...pa, 5]));
      await fresh.dispose();
      await a.dispose();
    } finally {
      await small.dispose();
    }
  });
});

describe('prefix cache', () => {
  it('a shared prefix is computed once: later requests hit it, within their namespace only', async () => {
    const shared = promptTokens(1001, 100, vocab);
    const first = await greedy(model, { prompt: [...shared, 1], maxTokens: 4 }, { cacheNamespace: 'pc-a' });
    expect(first.usage.cachedTokens).toBe(0);
    const hit = await greedy(model, { prompt: [...shared, 2], maxTokens: 4 }, { cacheNamespace: 'pc-a' });
    expect(hit.usage.cachedTokens).toBe(96);  // 6 full pages of 16
    const other = await greedy(model, { prompt: [...shared, 2], maxTokens: 4 }, { cacheNamespace: 'pc-b' });
    expect(other.usage.cachedTokens).toBe(0);
    expect(other.tokens).toEqual(hit.tokens);
    const [alone] = await solo([{ prompt: [...shared, 2], maxTokens: 4 }]);
    expect(hit.tokens).toEqual(alone);
  });

  it('with every page hash colliding, the exact check still tells pages apart', async () => {
    // No MTP layer run: page counts as the prefix cache alone makes them (with it, the position before
    // the new tokens is computed again: test/speculative.test.ts).
    const colliding = await Model.load(dir, { threads: 2, prefixCacheHashBits: 0, speculative: false });
    try {
      const jobs: Job[] = [];
      for (let i = 0; i < 6; i++) jobs.push({ prompt: [...promptTokens(1100 + (i % 3), 50, vocab), i], maxTokens: 6 });
      const alone = await solo(jobs);
      const results: GenerateResult[] = [];
      for (const job of jobs) results.push(await greedy(colliding, job));
      results.forEach((r, i) => expect(r.tokens, `job ${i}`).toEqual(alone[i]));
      expect(results.slice(3).map((r) => r.usage.cachedTokens)).toEqual([48, 48, 48]);
    } finally {
      await colliding.dispose();
    }
  });

  it('cached pages are evicted least recently used under pressure', async () => {
    const small = await Model.load(dir, { threads: 2, kvCacheSize: { tokens: 128 }, speculative: false });
    try {
      const p1 = promptTokens(1201, 60, vocab), p2 = promptTokens(1202, 60, vocab), p3 = promptTokens(1203, 100, vocab);
      await greedy(small, { prompt: p1, maxTokens: 1 });
      await greedy(small, { prompt: p2, maxTokens: 1 });
      expect(small.stats().kvCache.pagesCached).toBe(6);
      expect((await greedy(small, { prompt: p1, maxTokens: 1 })).usage.cachedTokens).toBe(48);  // p1 used last now
      await greedy(small, { prompt: p3, maxTokens: 1 });  // needs 7 pages: 5 free... then p2's go first
      expect(small.stats().kvCache.evictions).toBeGreaterThan(0);
      expect((await greedy(small, { prompt: p2, maxTokens: 1 })).usage.cachedTokens).toBe(0);
    } finally {
      await small.dispose();
    }
  });

  it('64 users with one 2k-token system prompt prefill it once', async () => {
    const m = await Model.load(dir, { threads: 2 });
    try {
      const system = promptTokens(1301, 2000, vocab);
      const users = Array.from({ length: 64 }, (_, i) => [...system, ...promptTokens(1400 + i, 8, vocab)]);
      const before = m.stats();
      const results = await Promise.all(users.map((prompt) => greedy(m, { prompt, maxTokens: 2 })));
      const after = m.stats();
      const computed = after.promptTokens - before.promptTokens;
      // One user computes the system prompt; the other 63 only their own tail (and the system
      // prompt's partial last page).
      expect(computed).toBeLessThan(2000 + 64 * 40);
      // 124 pages at least (less the position the MTP layer computes again while speculation is on).
      expect(results.filter((r) => r.usage.cachedTokens >= 1983).length).toBe(63);
    } finally {
      await m.dispose();
    }
  }, 60_000);
});

describe('queue limits and options', () => {
  it('requests beyond maxQueuedRequests reject with QueueFullError and the model keeps serving', async () => {
    const until = async (m: Model, running: number) => {
      for (let i = 0; i < 500 && m.stats().running < running; i++) await new Promise((r) => setTimeout(r, 2));
      expect(m.stats().running).toBe(running);
    };
    const m = await Model.load(dir, { threads: 2, maxConcurrentRequests: 2, maxQueuedRequests: 3 });
    try {
      // Two long requests take both running slots; then three may wait and the next three are refused.
      const long = [0, 1].map((i) => greedy(m, { prompt: promptTokens(1500 + i, 30, vocab), maxTokens: 300 }));
      await until(m, 2);
      const more = Array.from({ length: 6 }, (_, i) => greedy(m, { prompt: promptTokens(1510 + i, 30, vocab), maxTokens: 5 })
        .then(() => 'ok', (e: unknown) => e));
      const results = await Promise.all(more);
      expect(results.slice(0, 3)).toEqual(['ok', 'ok', 'ok']);
      for (const r of results.slice(3)) {
        expect(r).toBeInstanceOf(QueueFullError);
        expect((r as QueueFullError).code).toBe('QUEUE_FULL');
      }
      await Promise.all(long);
      expect((await greedy(m, { prompt: [1, 2, 3], maxTokens: 2 })).tokens).toHaveLength(2);
    } finally {
      await m.dispose();
    }
    // maxQueuedRequests 0: no queue beyond the free running slots, but requests still run.
    const noQueue = await Model.load(dir, { threads: 1, maxConcurrentRequests: 1, maxQueuedRequests: 0 });
    try {
      const first = greedy(noQueue, { prompt: [1], maxTokens: 300 });
      await until(noQueue, 1);
      await expect(greedy(noQueue, { prompt: [2], maxTokens: 1 })).rejects.toBeInstanceOf(QueueFullError);
      expect((await first).tokens).toHaveLength(300);
      expect((await greedy(noQueue, { prompt: [2], maxTokens: 1 })).tokens).toHaveLength(1);
    } finally {
      await noQueue.dispose();
    }
  });


  it('rejects invalid pool sizes, page sizes, limits and KV types with InvalidParamError', async () => {
    const bad: Record<string, unknown>[] = [
      { kvCacheSize: 0 }, { kvCacheSize: -5 }, { kvCacheSize: 1.5 }, { kvCacheSize: '1GB' }, { kvCacheSize: { tokens: 0 } },
      { kvCacheSize: { tokens: 10, bytes: 5 } }, { kvCacheSize: 10 },  // 10 bytes hold no page
      { kvCacheType: 'fp16' }, { kvCacheType: 8 }, { kvPageTokens: 0 }, { kvPageTokens: 257 }, { kvPageTokens: 1.5 },
      { maxBatchTokens: 0 }, { maxConcurrentRequests: 0 }, { maxQueuedRequests: -1 }, { prefixCache: 'yes' },
    ];
    for (const opts of bad) {
      await expect(Model.load(dir, { threads: 1, ...opts } as never), JSON.stringify(opts)).rejects.toBeInstanceOf(InvalidParamError);
    }
    await expect(greedy(model, { prompt: [1], maxTokens: 1 }, { cacheNamespace: 5 as never })).rejects.toBeInstanceOf(InvalidParamError);
  });

  it('reports running and waiting requests, KV pages, hit rate, tokens/s and latency percentiles', async () => {
    const m = await Model.load(dir, { threads: 2 });
    try {
      await Promise.all(Array.from({ length: 4 }, (_, i) => greedy(m, { prompt: promptTokens(1600, 40, vocab).concat([i]), maxTokens: 10 })));
      const st = m.stats();
      expect(st).toMatchObject({ running: 0, waiting: 0, requestsFinished: 4, requestsFailed: 0, generationTokens: 40 });
      expect(st.kvCache.pagesTotal).toBe(m.info.kvCache.pages);
      expect(st.timeToFirstTokenMs.count).toBe(4);
      expect(st.interTokenLatencyMs.count).toBe(36);
      expect(st.timeToFirstTokenMs.p50).toBeGreaterThan(0);
      expect(st.timeToFirstTokenMs.p99).toBeGreaterThanOrEqual(st.timeToFirstTokenMs.p50);
      expect(st.generationTokensPerSecond).toBeGreaterThan(0);
      expect(st.prefixCache.queryTokens).toBe(4 * 41);
      expect(st.prefixCache.hitTokens).toBe(st.prefixCache.queryTokens - st.promptTokens);
    } finally {
      await m.dispose();
    }
  });
});

describe('sessions under the scheduler (issue 17)', () => {
  it('disposing a session of a running batch rejects the batch with DisposedError and leaves the other session as before', async () => {
    // 16-token steps: the batch takes a few hundred steps, so the dispose lands in the middle of it.
    const slow = await Model.load(dir, { threads: 2, maxBatchTokens: 16 });
    const a = slow.createSession({ contextLength: 2048 });
    const b = slow.createSession({ contextLength: 2048 });
    const batch = slow.evaluateBatch([
      { session: a, tokens: promptTokens(1701, 2000, vocab) },
      { session: b, tokens: promptTokens(1702, 2000, vocab) },
    ]).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    const t0 = performance.now();
    await b.dispose();
    const disposeMs = performance.now() - t0;
    expect(await batch).toBeInstanceOf(DisposedError);
    expect(a.length).toBe(0);
    expect(b.disposed).toBe(true);
    expect(disposeMs).toBeLessThan(1000);  // within a step, not after the whole batch
    const c = slow.createSession();
    expect(await a.evaluate([1, 2, 3])).toEqual(await c.evaluate([1, 2, 3]));
    await c.dispose();
    expect(slow.stats().kvCache.pagesUsed).toBe(1);  // only a's page of 3 tokens
    await slow.dispose();
  });

  it('session.length is final when an aborted stream rejects, and the next turn reuses exactly that', async () => {
    const m = await Model.load(path.join(REPO_ROOT, 'models', 'tiny-default'), { threads: 2 });
    try {
      const s = m.createSession({ contextLength: 2048 });
      const ac = new AbortController();
      let chunks = 0;
      const stream = s.stream('hello there', { maxTokens: 1500, ignoreEos: true, temperature: 0, signal: ac.signal });
      let lengthAtRejection = -1;
      try {
        for await (const c of stream) {
          if (c.type === 'text' || c.type === 'reasoning') chunks++;
          if (chunks === 5) ac.abort();
        }
      } catch (e) {
        expect(e).toBeInstanceOf(AbortError);
        lengthAtRejection = s.length;
      }
      const promptLength = m.tokenizer!.encode('hello there').length;
      expect(lengthAtRejection).toBeGreaterThan(0);
      await new Promise((r) => setTimeout(r, 20));
      expect(s.length).toBe(lengthAtRejection);  // nothing settles later
      // The session keeps its context: a plain continuation reuses all of it.
      const next = await s.generate('hello there', { maxTokens: 1, temperature: 0 });
      expect(next.usage.cachedTokens).toBeGreaterThan(0);
      expect(lengthAtRejection).toBeGreaterThanOrEqual(promptLength);
      await s.dispose();
    } finally {
      await m.dispose();
    }
  });
});
