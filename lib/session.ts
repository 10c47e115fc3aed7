// A conversation's state on a model: its KV cache (bounded by contextLength) and the tokens in it.
import type { NativeModel, NativeSession } from './binding.js';
import { withAbort } from './abort.js';
import { ContextOverflowError, DisposedError, toGlmError } from './errors.js';
import { checkKnownKeys, checkObject, checkSignal, toTokenArray, type TokenInput } from './options.js';

export interface EvaluateOptions {
  signal?: AbortSignal;
  /** Return the logits after every token ([tokens.length × vocab], row-major) instead of only the last. */
  allLogits?: boolean;
}

/** What a Session needs from its Model (kept narrow so the two files stay independent). */
export interface SessionOwner {
  readonly native: NativeModel;
  readonly vocabSize: number;
  assertUsable(): void;
  forgetSession(session: Session): void;
}

export class Session {
  readonly contextLength: number;
  /** @internal */
  readonly native: NativeSession;
  readonly #owner: SessionOwner;
  #disposed = false;
  #length = 0;   // tokens in the KV cache after every settled call (evaluate is all or nothing)
  #pending = 0;  // tokens queued by evaluate() calls that have not settled yet

  /** @internal Use model.createSession(). */
  constructor(owner: SessionOwner, native: NativeSession, contextLength: number) {
    this.#owner = owner;
    this.native = native;
    this.contextLength = contextLength;
  }

  /** Tokens currently held in the KV cache. */
  get length(): number {
    this.#assertUsable();
    return this.#length;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Appends `tokens` to the session's KV cache and resolves with the next-token logits after the last
   * one (a Float32Array of vocabSize), or after every token with `allLogits`. Calls on one session run
   * one after another in call order. All or nothing: if it rejects (overflow, abort, bad token) the
   * session is left exactly as before.
   */
  async evaluate(tokens: TokenInput, options?: EvaluateOptions): Promise<Float32Array> {
    this.#assertUsable();
    const opts = checkObject('evaluate options', options);
    checkKnownKeys('evaluate options', opts, ['signal', 'allLogits']);
    const signal = checkSignal('signal', opts.signal);
    const ids = toTokenArray('tokens', tokens, this.#owner.vocabSize);
    this.checkFits(ids.length);
    this.#pending += ids.length;
    try {
      const [logits] = await withAbort(signal, (flag) =>
        this.#owner.native.evaluate([this.native], [ids], [opts.allLogits === true], flag));
      this.#length += ids.length;
      return logits!;
    } finally {
      this.#pending -= ids.length;
    }
  }

  /** Empties the KV cache; the session can be reused for a new conversation. */
  async reset(): Promise<void> {
    this.#assertUsable();
    try {
      await this.native.reset();
      this.#length = 0;
    } catch (error) {
      throw toGlmError(error);
    }
  }

  /** Frees the KV cache. In-flight calls on this session reject with DisposedError. Idempotent. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#owner.forgetSession(this);
    try {
      await this.native.dispose();
    } catch (error) {
      const e = toGlmError(error);
      if (e.code !== 'DISPOSED') throw e;  // the model went first: nothing left to free
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /** @internal Throws ContextOverflowError when `n` more tokens cannot fit (counting queued calls). */
  checkFits(n: number): void {
    const used = this.#length + this.#pending;
    if (used + n > this.contextLength) {
      throw new ContextOverflowError(
        `context overflow: ${n} new tokens + ${used} already in the session = ${used + n} exceed the context length ${this.contextLength}`,
        { requestedTokens: used + n, contextLength: this.contextLength },
      );
    }
  }

  /** @internal Records tokens a batched call (model.evaluateBatch) added. */
  addCommitted(n: number): void {
    this.#length += n;
  }

  /** @internal Reserves room for a batched call's tokens until it settles. */
  addPending(n: number): void {
    this.#pending += n;
  }

  /** @internal Marks the session disposed when its model goes away. */
  markDisposed(): void {
    this.#disposed = true;
  }

  #assertUsable(): void {
    if (this.#disposed) throw new DisposedError('session is disposed');
    this.#owner.assertUsable();
  }
}
