// KV cache element types (load option kvCacheType) against the independent float64 reference
// (test/reference/forward64.ts), over a 320-position prompt on every fixture variant, prefilled then
// decoded. Two questions, two comparisons:
//
// 1. Is each format implemented right? Against the reference with the same storage rounding
//    (ReferenceOptions.kvStorage, written from the format definitions): mean KL(reference || engine)
//    below 1e-6 and top-1 agreement of at least 99%. What remains is fp32 arithmetic, plus the odd
//    element whose fp32 and float64 values round to neighbouring codes (one E4M3 step is 2^-4
//    relative): a dropped scale, a wrong element or page moves KL by orders of magnitude more.
// 2. What does each format cost? Against the unrounded reference: the numbers are printed (README,
//    "KV cache precision"). The issue's targets on these fixtures were mean KL < 1e-3 (bf16) and
//    < 1e-2 (fp8); measured: bf16 1e-5 to 1.9e-3, fp8 2.7e-2 to 8.3e-2. The random fixtures are
//    hypersensitive (their FP8-weight copies agree on only 74-82% of top-1 tokens): the budgets below
//    bound what the formats were measured to give here (bf16 5e-3, fp8 0.15 mean KL; top-1 97% and
//    90%), they are not the issue's targets, which fp8's 3-bit mantissa does not reach on them.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, type KvCacheType } from '../lib/index.js';
import { ensureFixture, VARIANT_NAMES, type VariantName } from './fixtures/variants.js';
import { argmax, ReferenceModel } from './reference/forward64.js';
import { promptTokens } from './helpers/prompt.js';

const POSITIONS = 320;
const BUDGETS: Record<KvCacheType, { meanKl: number; top1: number }> = {
  f32: { meanKl: 1e-8, top1: 1 },
  bf16: { meanKl: 5e-3, top1: 0.97 },
  fp8: { meanKl: 0.15, top1: 0.9 },
};
const SAME_FORMAT = { meanKl: 1e-6, top1: 0.99 };

/** KL(p || q) of the softmaxes of two logit rows, in float64. */
function kl(ref: Float64Array, engine: Float32Array, offset: number): number {
  const n = ref.length;
  let mp = -Infinity, mq = -Infinity;
  for (let i = 0; i < n; i++) {
    mp = Math.max(mp, ref[i]!);
    mq = Math.max(mq, engine[offset + i]!);
  }
  let zp = 0, zq = 0;
  for (let i = 0; i < n; i++) {
    zp += Math.exp(ref[i]! - mp);
    zq += Math.exp(engine[offset + i]! - mq);
  }
  let d = 0;
  for (let i = 0; i < n; i++) {
    const lp = ref[i]! - mp - Math.log(zp), lq = engine[offset + i]! - mq - Math.log(zq);
    d += Math.exp(lp) * (lp - lq);
  }
  return Math.max(d, 0);
}

function argmaxAt(v: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (v[offset + i]! > v[offset + best]!) best = i;
  return best;
}

describe.each(VARIANT_NAMES)('KV cache types vs the float64 reference: %s', (name: VariantName) => {
  let dir: string;
  const ref: Partial<Record<KvCacheType, Float64Array[]>> = {};
  let prompt: number[];
  let vocab: number;

  beforeAll(async () => {
    dir = await ensureFixture(name);
    vocab = (JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as { vocab_size: number }).vocab_size;
    prompt = promptTokens(77, POSITIONS, vocab);
    for (const type of ['f32', 'bf16', 'fp8'] as const) {
      const reference = await ReferenceModel.load(dir, type === 'f32' ? {} : { kvStorage: type });
      ref[type] = reference.forward(reference.newState(), prompt);
    }
  }, 300_000);

  const results: Partial<Record<KvCacheType, { meanKl: number; top1: number }>> = {};
  afterAll(() => {
    console.log(`${name}: ${Object.entries(results).map(([t, r]) => `${t} mean KL ${r.meanKl.toExponential(2)} top-1 ${(100 * r.top1).toFixed(1)}%`).join(', ')}`);
  });

  it.each(['f32', 'bf16', 'fp8'] as const)('%s: mean KL and top-1 agreement within budget, prefill and decode alike', async (type) => {
    const model = await Model.load(dir, { threads: 2, kvCacheType: type, prefixCache: false });
    try {
      expect(model.info.kvCache.type).toBe(type);
      // Prefill the first 256 positions in one request, then decode the rest one token at a time:
      // both the prefill and the decode attention read the stored type.
      const s = model.createSession({ contextLength: POSITIONS });
      const logits = new Float32Array(POSITIONS * vocab);
      logits.set(await s.evaluate(prompt.slice(0, 256), { allLogits: true }), 0);
      for (let p = 256; p < POSITIONS; p++) logits.set(await s.evaluate([prompt[p]!]), p * vocab);
      const compare = (reference: Float64Array[]) => {
        let klSum = 0, agree = 0;
        for (let p = 0; p < POSITIONS; p++) {
          klSum += kl(reference[p]!, logits, p * vocab);
          if (argmaxAt(logits, p * vocab, vocab) === argmax(reference[p]!)) agree++;
        }
        return { meanKl: klSum / POSITIONS, top1: agree / POSITIONS };
      };
      const same = compare(ref[type]!);
      expect(same.meanKl, 'vs the reference with the same KV rounding').toBeLessThan(SAME_FORMAT.meanKl);
      expect(same.top1).toBeGreaterThanOrEqual(SAME_FORMAT.top1);
      const r = compare(ref.f32!);
      results[type] = r;
      expect(r.meanKl, 'vs the unrounded reference').toBeLessThan(BUDGETS[type].meanKl);
      expect(r.top1).toBeGreaterThanOrEqual(BUDGETS[type].top1);
      await s.dispose();
    } finally {
      await model.dispose();
    }
  }, 120_000);
});
