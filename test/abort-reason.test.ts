// The reason given to AbortController.abort(reason) reaches the caller as the AbortError's `cause`
// (as Node's own APIs do), for every operation that takes a signal: Model.load, session.evaluate,
// model.evaluateBatch, session.stream / session.generate, and both forms of model.generate. Each is
// checked with a signal aborted before the call and with one aborted while the call is under way; the
// code stays ABORTED whatever the reason.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AbortError, Model, type StreamChunk } from '../lib/index.js';
import { REPO_ROOT } from './fixtures/variants.js';
import { promptTokens } from './helpers/prompt.js';

const DEFAULT_MODEL = path.join(REPO_ROOT, 'models', 'tiny-default');
let model: Model;
let vocab: number;

beforeAll(async () => {
  model = await Model.load(DEFAULT_MODEL, { backend: 'cpu', threads: 2 });
  vocab = model.vocabSize;
}, 60_000);
afterAll(async () => {
  await model?.dispose();
});

/** Settles `work` and checks it rejected with an AbortError whose cause is exactly `reason`. */
async function expectAbortedWith(work: Promise<unknown>, reason: unknown): Promise<AbortError> {
  const error = await work.then(() => { throw new Error('expected the call to reject with AbortError'); }, (e: unknown) => e);
  expect(error).toBeInstanceOf(AbortError);
  const e = error as AbortError;
  expect(e.code).toBe('ABORTED');
  expect(e.cause).toBe(reason);
  return e;
}

/** A signal aborted with `reason`, or with the platform's default reason when none is given. */
function aborted(...reason: [unknown?]): AbortSignal {
  const ac = new AbortController();
  ac.abort(...reason);
  return ac.signal;
}

const chat = [{ role: 'user' as const, content: 'Tell me a long story.' }];
const endless = { temperature: 0, maxTokens: 1500, ignoreEos: true } as const;

describe('the reason of an already-aborted signal is the AbortError cause', () => {
  const reason = new Error('my reason');

  it('Model.load', async () => {
    const e = await expectAbortedWith(Model.load(DEFAULT_MODEL, { threads: 1, signal: aborted(reason) }), reason);
    expect(e.message).toBe('the operation was aborted: my reason');
  });

  it('session.evaluate, and the session is untouched', async () => {
    const s = model.createSession({ contextLength: 64 });
    await expectAbortedWith(s.evaluate([1, 2, 3], { signal: aborted(reason) }), reason);
    expect(s.length).toBe(0);
    await s.dispose();
  });

  it('model.evaluateBatch', async () => {
    const a = model.createSession({ contextLength: 64 }), b = model.createSession({ contextLength: 64 });
    await expectAbortedWith(model.evaluateBatch([{ session: a, tokens: [1] }, { session: b, tokens: [2, 3] }], { signal: aborted(reason) }), reason);
    expect([a.length, b.length]).toEqual([0, 0]);
    await a.dispose();
    await b.dispose();
  });

  it('session.stream: the result promise and the iterator', async () => {
    const s = model.createSession({ contextLength: 256 });
    const stream = s.stream(chat, { ...endless, maxTokens: 8, signal: aborted(reason) });
    await expectAbortedWith(stream.result, reason);
    await expectAbortedWith((async () => { for await (const _ of stream) { /* nothing arrives */ } })(), reason);
    await s.dispose();
  });

  it('session.generate and model.generate (text and token forms)', async () => {
    const s = model.createSession({ contextLength: 256 });
    await expectAbortedWith(s.generate('hello', { maxTokens: 4, signal: aborted(reason) }), reason);
    await s.dispose();
    await expectAbortedWith(model.generate(chat, { maxTokens: 4, signal: aborted(reason) }), reason);
    await expectAbortedWith(model.generate({ tokens: [1, 2], maxTokens: 4, signal: aborted(reason) }), reason);
  });

  it('the default reason is the DOMException AbortError the platform made', async () => {
    const signal = aborted();
    const e = await expectAbortedWith(model.generate({ tokens: [1, 2], maxTokens: 4, signal }), signal.reason);
    expect(e.cause).toBeInstanceOf(DOMException);
    expect((e.cause as DOMException).name).toBe('AbortError');
    expect(e.message).toBe('the operation was aborted');
  });

  it('a reason that is not an Error is carried as it is', async () => {
    const e = await expectAbortedWith(model.generate('hi', { maxTokens: 4, signal: aborted('user left') }), 'user left');
    expect(e.message).toBe('the operation was aborted: user left');
    const payload = { why: 'shutdown' };
    await expectAbortedWith(model.generate('hi', { maxTokens: 4, signal: aborted(payload) }), payload);
  });
});

// "During": the signal is live when the call starts (so native work is submitted) and is aborted
// right after, while that work is queued or running. The work is long (1500 tokens), so it cannot have
// finished before the abort.
describe('the reason of a signal aborted during the call is the AbortError cause', () => {
  it('Model.load, aborted from its first progress report', async () => {
    const ac = new AbortController();
    const reason = new Error('load cancelled by test');
    const load = Model.load(DEFAULT_MODEL, { threads: 1, prefetch: true, signal: ac.signal, onProgress: () => ac.abort(reason) });
    await expectAbortedWith(load, reason);
  });

  it('session.evaluate, and the session is untouched', async () => {
    const s = model.createSession({ contextLength: 2048 });
    const ac = new AbortController();
    const reason = new Error('evaluate cancelled');
    const work = s.evaluate(promptTokens(1, 1500, vocab), { signal: ac.signal });
    ac.abort(reason);
    await expectAbortedWith(work, reason);
    expect(s.length).toBe(0);
    await s.dispose();
  });

  it('model.evaluateBatch', async () => {
    const a = model.createSession({ contextLength: 2048 }), b = model.createSession({ contextLength: 2048 });
    const ac = new AbortController();
    const reason = new Error('batch cancelled');
    const work = model.evaluateBatch([{ session: a, tokens: promptTokens(2, 1500, vocab) }, { session: b, tokens: [2, 3] }], { signal: ac.signal });
    ac.abort(reason);
    await expectAbortedWith(work, reason);
    expect([a.length, b.length]).toEqual([0, 0]);
    await a.dispose();
    await b.dispose();
  });

  it('session.stream aborted mid-decode: the result promise and the iterator', async () => {
    const s = model.createSession({ contextLength: 2048 });
    const ac = new AbortController();
    const reason = new Error('stream cancelled');
    const stream = s.stream(chat, { ...endless, signal: ac.signal });
    const seen: StreamChunk[] = [];
    const iterated = (async () => {
      for await (const chunk of stream) {
        seen.push(chunk);
        if (seen.length === 3) ac.abort(reason);
      }
    })();
    await expectAbortedWith(iterated, reason);
    await expectAbortedWith(stream.result, reason);
    expect(seen.length).toBeGreaterThanOrEqual(3);
    expect(seen.some((c) => c.type === 'done')).toBe(false);
    await s.dispose();
  });

  it('session.generate and model.generate (text form) aborted from onChunk', async () => {
    const s = model.createSession({ contextLength: 2048 });
    for (const run of [
      (signal: AbortSignal, onChunk: () => void) => s.generate(chat, { ...endless, signal, onChunk }),
      (signal: AbortSignal, onChunk: () => void) => model.generate(chat, { ...endless, signal, onChunk }),
    ]) {
      const ac = new AbortController();
      const reason = new Error('generate cancelled');
      let chunks = 0;
      await expectAbortedWith(run(ac.signal, () => { if (++chunks === 2) ac.abort(reason); }), reason);
    }
    await s.dispose();
  });

  it('model.generate (token form)', async () => {
    const ac = new AbortController();
    const reason = new Error('token generation cancelled');
    const work = model.generate({ tokens: promptTokens(3, 500, vocab), maxTokens: 1500, stopTokens: [], signal: ac.signal });
    ac.abort(reason);
    await expectAbortedWith(work, reason);
  });

  it('AbortSignal.timeout: the cause is its TimeoutError, whose message is kept in ours', async () => {
    const signal = AbortSignal.timeout(5);
    const work = model.generate({ tokens: [1, 2], maxTokens: 2000, stopTokens: [], signal });
    work.catch(() => undefined);  // observed below, after the timeout fired
    const e = await expectAbortedWith(work, await new Promise((resolve) => signal.addEventListener('abort', () => resolve(signal.reason))));
    expect((e.cause as DOMException).name).toBe('TimeoutError');
    expect(e.message.endsWith(`: ${(e.cause as DOMException).message}`), e.message).toBe(true);
    expect(e.message).toMatch(/timeout$/);
  });
});
