// Deterministic pseudo-random prompts for engine tests (independent of the fixtures' generator).
export function promptTokens(seed: number, length: number, vocab: number): number[] {
  let x = (seed * 2654435761) >>> 0 || 1;
  const out: number[] = [];
  for (let i = 0; i < length; i++) {
    // xorshift32: plenty for picking token ids
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out.push(x % vocab);
  }
  return out;
}
