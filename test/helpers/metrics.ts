// Comparison metrics shared by the engine-vs-reference tests.

/** max_i |engine[offset + i] − ref[i]| / max_i |ref[i]|: the error normalised by the logits' scale. */
export function normalisedError(engine: Float32Array, offset: number, ref: Float64Array): number {
  let maxDiff = 0, maxRef = 0;
  for (let i = 0; i < ref.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(engine[offset + i]! - ref[i]!));
    maxRef = Math.max(maxRef, Math.abs(ref[i]!));
  }
  return maxDiff / maxRef;
}

/** Index of the largest of v[offset .. offset + n), ties to the lowest. */
export function argmaxAt(v: Float32Array, offset: number, n: number): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (v[offset + i]! > v[offset + best]!) best = i;
  return best;
}
