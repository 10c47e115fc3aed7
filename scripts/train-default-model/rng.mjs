// A small seeded PRNG (mulberry32) so the corpus and the eval sets are reproducible from their seeds,
// whatever Node version runs the generator (Math.random cannot be seeded).

export class Rng {
  constructor(seed) {
    this.s = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next() {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Integer in [lo, hi] inclusive. */
  int(lo, hi) {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  pick(list) {
    return list[Math.floor(this.next() * list.length)];
  }

  chance(p) {
    return this.next() < p;
  }

  /** A new array with `n` distinct items of `list` in random order. */
  sample(list, n) {
    const a = [...list];
    for (let i = a.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a.slice(0, n);
  }

  /** Picks a key of `weights` ({name: weight}) with probability proportional to its weight. */
  weighted(weights) {
    const total = Object.values(weights).reduce((a, b) => a + b, 0);
    let r = this.next() * total;
    for (const [k, w] of Object.entries(weights)) {
      if ((r -= w) < 0) return k;
    }
    return Object.keys(weights).at(-1);
  }
}

/** FNV-1a 32-bit hash of a string: decides which arithmetic problems are held out, independent of seeds. */
export function fnv1a(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}
