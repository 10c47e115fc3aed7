// Stop strings over a text stream: text is released only once it can no longer be the start of a
// stop string, so a stop string never leaks partially (RELIABILITY C9), even across tokens.
export class StopStringMatcher {
  readonly #stops: readonly string[];
  #held = '';
  #matched: string | undefined;

  constructor(stops: readonly string[]) {
    this.#stops = stops.filter((s) => s.length > 0);
  }

  /** The stop string that ended the stream, if any. */
  get matched(): string | undefined {
    return this.#matched;
  }

  /** Feeds text; returns the part that is safe to emit. After a match, everything else is dropped. */
  push(text: string): string {
    if (this.#matched !== undefined) return '';
    const buf = this.#held + text;
    let cut = -1;
    for (const s of this.#stops) {
      const i = buf.indexOf(s);
      if (i >= 0 && (cut < 0 || i < cut)) {
        cut = i;
        this.#matched = s;
      }
    }
    if (cut >= 0) {
      this.#held = '';
      return buf.slice(0, cut);
    }
    const keep = this.#longestPendingPrefix(buf);
    this.#held = buf.slice(buf.length - keep);
    return buf.slice(0, buf.length - keep);
  }

  /** Ends a segment (or the stream): held text cannot complete a stop string any more. */
  flush(): string {
    const out = this.#matched === undefined ? this.#held : '';
    this.#held = '';
    return out;
  }

  // Length of the longest suffix of buf that is a proper prefix of some stop string.
  #longestPendingPrefix(buf: string): number {
    let best = 0;
    for (const s of this.#stops) {
      for (let n = Math.min(s.length - 1, buf.length); n > best; n--) {
        if (buf.endsWith(s.slice(0, n))) {
          best = n;
          break;
        }
      }
    }
    return best;
  }
}
