// The engine's logits against the independent float64 reference (test/reference/forward64.ts) on
// every fixture variant: at every position of a 64-token prompt (prefill path), over 32 greedy steps
// (decode path), and for batched steps that mix sessions.
//
// Budget: max_i |engine_i − ref_i| ≤ 1e-4 · max_i |ref_i| per position (normalised max error).
// Why: the weights are stored exactly in both (BF16/F16/F32 widen exactly); the engine differs only by
// running activations, accumulations and the softmax in fp32 (unit roundoff 6e-8). Through ≤ 5 layers
// of dot products of length ≤ 160 that leaves ~1e-6 relative error; 1e-4 keeps 100× headroom for noise
// from summation order while staying 4 orders of magnitude below the logit changes that dropping any
// single feature causes on these fixtures (≥ 4.5 absolute with logits of magnitude ~10; see
// test/reference.test.ts "every feature is live"), so an engine that ignores a feature fails here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../lib/index.js';
import { ensureFixture, VARIANT_NAMES, type VariantName } from './fixtures/variants.js';
import { argmax, ReferenceModel } from './reference/forward64.js';
import { promptTokens } from './helpers/prompt.js';
import { argmaxAt, normalisedError } from './helpers/metrics.js';

const BUDGET = 1e-4;
const PROMPT = 64;
const STEPS = 32;



describe.each(VARIANT_NAMES)('engine vs float64 reference: %s', (name: VariantName) => {
  let model: Model;
  let ref: ReferenceModel;
  let vocab: number;
  let prompt: number[];
  let refPromptLogits: Float64Array[];

  beforeAll(async () => {
    const dir = await ensureFixture(name);
    // f32 KV: the CPU engine's fp32 numerics end to end (bf16 / fp8 KV: test/kv-types.test.ts; CUDA: test/cuda-backend.test.ts)
    model = await Model.load(dir, { backend: 'cpu', threads: 2, kvCacheType: 'f32' });
    ref = await ReferenceModel.load(dir);
    vocab = model.info.vocabSize;
    prompt = promptTokens(17, PROMPT, vocab);
    refPromptLogits = ref.forward(ref.newState(), prompt);
  }, 120_000);
  afterAll(async () => {
    await model?.dispose();
  });

  it('matches at every position of a 64-token prompt (one prefill pass)', async () => {
    const session = model.createSession({ contextLength: 256 });
    const logits = await session.evaluate(prompt, { allLogits: true });
    expect(logits.length).toBe(PROMPT * vocab);
    let worst = 0;
    for (let p = 0; p < PROMPT; p++) {
      worst = Math.max(worst, normalisedError(logits, p * vocab, refPromptLogits[p]!));
      expect(argmaxAt(logits, p * vocab, vocab), `argmax at position ${p}`).toBe(argmax(refPromptLogits[p]!));
    }
    console.log(name, "worst prefill error", worst.toExponential(2));
    expect(worst).toBeLessThanOrEqual(BUDGET);
    await session.dispose();
  });

  it('matches over 32 greedy steps token by token (decode path) and greedy tokens are identical', async () => {
    const expected = ref.greedy(prompt, STEPS);
    // Engine greedy generation through model.generate (sampler on the engine side, no stop tokens).
    const generated = await model.generate({ tokens: prompt, maxTokens: STEPS, temperature: 0, stopTokens: [] });
    expect(generated.tokens).toEqual(expected.tokens);
    expect(generated.finishReason).toBe('length');

    // The same continuation fed one token at a time: every decode step's logits within budget.
    const session = model.createSession({ contextLength: PROMPT + STEPS });
    let logits = await session.evaluate(prompt);
    for (let s = 0; s < STEPS; s++) {
      expect(normalisedError(logits, 0, expected.logits[s]!), `step ${s}`).toBeLessThanOrEqual(BUDGET);
      if (s + 1 < STEPS) logits = await session.evaluate([expected.tokens[s]!]);
    }
    await session.dispose();
  });

  it('prefill in uneven chunks gives the same logits as one pass', async () => {
    const session = model.createSession({ contextLength: PROMPT });
    const parts = [prompt.slice(0, 1), prompt.slice(1, 8), prompt.slice(8, 37), prompt.slice(37)];
    let last = new Float32Array();
    for (const part of parts) last = await session.evaluate(part);
    expect(normalisedError(last, 0, refPromptLogits[PROMPT - 1]!)).toBeLessThanOrEqual(BUDGET);
    expect(session.length).toBe(PROMPT);
    await session.dispose();
  });

  it('a batched step (one prefill chunk + decodes of other sessions) equals each sequence alone', async () => {
    // Session A: prefill of 40 tokens; sessions B and C: already hold a prompt and decode one token.
    const a = model.createSession({ contextLength: 128 });
    const b = model.createSession({ contextLength: 128 });
    const c = model.createSession({ contextLength: 128 });
    const promptA = promptTokens(5, 40, vocab);
    const promptB = promptTokens(6, 23, vocab);
    const promptC = promptTokens(7, 9, vocab);
    await b.evaluate(promptB);
    await c.evaluate(promptC);
    const [la, lb, lc] = await model.evaluateBatch([
      { session: a, tokens: promptA, allLogits: true },
      { session: b, tokens: [11] },
      { session: c, tokens: [12] },
    ]);
    expect(la!.length).toBe(40 * vocab);
    expect(lb!.length).toBe(vocab);

    // Alone, against the float64 reference and against the engine's unbatched path.
    const refA = ref.forward(ref.newState(), promptA);
    const refB = ref.forward(ref.newState(), [...promptB, 11]);
    const refC = ref.forward(ref.newState(), [...promptC, 12]);
    for (let p = 0; p < 40; p++) expect(normalisedError(la!, p * vocab, refA[p]!)).toBeLessThanOrEqual(BUDGET);
    expect(normalisedError(lb!, 0, refB[refB.length - 1]!)).toBeLessThanOrEqual(BUDGET);
    expect(normalisedError(lc!, 0, refC[refC.length - 1]!)).toBeLessThanOrEqual(BUDGET);

    const alone = model.createSession({ contextLength: 128 });
    await alone.evaluate(promptB);
    const lbAlone = await alone.evaluate([11]);
    // Same engine, same data: only the row blocking of the GEMMs differs between batched and alone,
    // so they agree to fp32 summation-order noise (far tighter than the reference budget).
    let maxDiff = 0;
    for (let i = 0; i < vocab; i++) maxDiff = Math.max(maxDiff, Math.abs(lbAlone[i]! - lb![i]!));
    expect(maxDiff).toBeLessThan(1e-4);
    expect(argmaxAt(lbAlone, 0, vocab)).toBe(argmaxAt(lb!, 0, vocab));
    expect([a.length, b.length, c.length]).toEqual([40, 24, 10]);
    for (const s of [a, b, c, alone]) await s.dispose();
  });
});
