// API-key check. Both Anthropic (`x-api-key`) and OpenAI/Claude Code (`Authorization: Bearer`) forms
// are accepted. Keys are compared as SHA-256 digests with timingSafeEqual: equal-length inputs, so
// neither the key's content nor its length leaks through response timing.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

export class ApiKeyCheck {
  readonly #expected: Buffer;
  constructor(apiKey: string) {
    this.#expected = digest(apiKey);
  }

  /** The key the request presents, if any. */
  static presented(headers: IncomingHttpHeaders): string | undefined {
    const x = headers['x-api-key'];
    if (typeof x === 'string' && x.length > 0) return x;
    const auth = headers.authorization;
    if (typeof auth === 'string') {
      const m = /^Bearer\s+(.+)$/i.exec(auth.trim());
      if (m) return m[1]!;
    }
    return undefined;
  }

  /** True when the request carries the key in either header. */
  accepts(headers: IncomingHttpHeaders): boolean {
    const key = ApiKeyCheck.presented(headers);
    // Compare even when absent so a missing key costs the same as a wrong one.
    const ok = timingSafeEqual(digest(key ?? ''), this.#expected);
    return key !== undefined && ok;
  }
}
