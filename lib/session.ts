// A conversation's state on a model: its KV cache (bounded by contextLength) and the tokens in it.
import type { NativeModel, NativeSession } from './binding.js';
import { withAbort } from './abort.js';
import { ContextOverflowError, DisposedError, InvalidParamError, toGlmError } from './errors.js';
import { checkCacheNamespace, resolveGenerateOptions, type TextGenerateOptions } from './generate-options.js';
import { Generation, type StreamChunk, type TextGenerateResult } from './generation.js';
import { checkKnownKeys, checkObject, checkSignal, toTokenArray, type TokenInput } from './options.js';
import { buildPrompt, isChatInput, requireTokenizer, type GenerateInput } from './prompt.js';
import type { Tokenizer } from './tokenizer.js';
import { buildGrammar } from './constrained/build.js';
import { compileGrammar, markupTokens, schemaToGbnf } from './constrained/compile.js';

export interface EvaluateOptions {
  signal?: AbortSignal;
  /** Return the logits after every token ([tokens.length × vocab], row-major) instead of only the last. */
  allLogits?: boolean;
  /** Prefix-cache namespace (see TextGenerateOptions.cacheNamespace). */
  cacheNamespace?: string;
}

/** What a Session needs from its Model (kept narrow so the two files stay independent). */
export interface SessionOwner {
  readonly native: NativeModel;
  readonly vocabSize: number;
  readonly tokenizer: Tokenizer | undefined;
  readonly eosTokenIds: readonly number[];
  assertUsable(): void;
  forgetSession(session: Session): void;
}

export type { GenerateInput, StreamChunk, TextGenerateOptions, TextGenerateResult };

export class Session {
  readonly contextLength: number;
  /** @internal */
  readonly native: NativeSession;
  readonly #owner: SessionOwner;
  #disposed = false;
  #length = 0;      // tokens in the KV cache after every settled call (as the engine published it)
  #pending = 0;     // tokens queued by evaluate() calls that have not settled yet
  #generating = 0;  // generations queued or running (they may shorten the cache: prefix reuse)

  /** @internal Use model.createSession(). */
  constructor(owner: SessionOwner, native: NativeSession, contextLength: number) {
    this.#owner = owner;
    this.native = native;
    this.contextLength = contextLength;
  }

  /**
   * Tokens in the session's context after its last settled call (the engine publishes it before the
   * call's promise settles, so it is final in any handler of that call).
   */
  get length(): number {
    this.#assertUsable();
    return this.native.length;
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
    checkKnownKeys('evaluate options', opts, ['signal', 'allLogits', 'cacheNamespace']);
    return this.#evaluate(tokens, opts, opts.allLogits === true, false);
  }

  /**
   * Diagnostics of speculative decoding: evaluate() with allLogits, plus the MTP layer's logits (models
   * loaded with speculation on). draftLogits row j is the MTP layer's distribution for the token two
   * after the pair it reads: the trunk's hidden state at new token j − 1 (the session's last token
   * before these for j = 0; on an empty session row 0 reads new token 0) and new token j. Rows:
   * tokens.length − 1 on an empty session, else tokens.length.
   */
  async evaluateDrafts(tokens: TokenInput, options?: Omit<EvaluateOptions, 'allLogits'>): Promise<{ logits: Float32Array; draftLogits: Float32Array }> {
    this.#assertUsable();
    const opts = checkObject('evaluateDrafts options', options);
    checkKnownKeys('evaluateDrafts options', opts, ['signal', 'cacheNamespace']);
    const spec = this.#owner.native.info().speculative;
    if (spec.draftTokens === 0) throw new InvalidParamError(`evaluateDrafts needs speculative decoding (${spec.reason})`);
    const logits = await this.#evaluate(tokens, opts, true, true);
    return { logits, draftLogits: logits.draftLogits ?? new Float32Array(0) };
  }

  async #evaluate(tokens: TokenInput, opts: Record<string, unknown>, allLogits: boolean, draftLogits: boolean) {
    const signal = checkSignal('signal', opts.signal);
    const cacheNamespace = checkCacheNamespace(opts.cacheNamespace);
    const ids = toTokenArray('tokens', tokens, this.#owner.vocabSize);
    this.checkFits(ids.length);
    this.#pending += ids.length;
    try {
      const [logits] = await withAbort(signal, (flag) =>
        this.#owner.native.evaluate([this.native], [ids], [allLogits], flag, cacheNamespace, [draftLogits]));
      return logits!;
    } finally {
      this.#pending -= ids.length;
      this.#length = this.native.length;
    }
  }

  /**
   * Generates a reply as a stream of chunks (`text`, `reasoning`, `tool_call`, then `done` with the
   * result). `input` is the whole context — a prompt string, OpenAI-style chat messages (rendered with
   * the model's chat template) or token ids — and the session keeps its KV cache between calls, so a
   * conversation re-sent with one more turn only evaluates the new part. Calls on one session run one
   * after another in call order. Breaking out of the loop ends the generation early.
   */
  stream(input: GenerateInput, options?: TextGenerateOptions): Generation {
    this.#assertUsable();
    // maxTokens is range-checked loosely here; whether it fits the context is a ContextOverflowError below (C2).
    const opts = resolveGenerateOptions(options, { vocabSize: this.#owner.vocabSize, maxTokens: 2 ** 31 - 1 });
    const prompt = buildPrompt(this.#owner, input, opts);
    const room = this.contextLength - prompt.length;
    if (room < 1) {
      throw new ContextOverflowError(
        `context overflow: the prompt holds ${prompt.length} tokens; the context length is ${this.contextLength}`,
        { requestedTokens: prompt.length, contextLength: this.contextLength },
      );
    }
    if (options?.maxTokens === undefined) {
      opts.maxTokens = Math.min(opts.maxTokens, room);  // documented default: 512 or what still fits
    } else if (prompt.length + opts.maxTokens > this.contextLength) {
      throw new ContextOverflowError(
        `context overflow: ${prompt.length} prompt tokens + maxTokens ${opts.maxTokens} = ${prompt.length + opts.maxTokens} exceed the context length ${this.contextLength}`,
        { requestedTokens: prompt.length + opts.maxTokens, contextLength: this.contextLength },
      );
    }
    const tokenizer = requireTokenizer(this.#owner);
    const grammar = buildGrammar(opts.constraint, opts.tools, {
      chat: isChatInput(input), thinking: opts.thinking, tokens: markupTokens(tokenizer), schemaToGbnf,
    });
    const owner = this.#owner;
    const generation = new Generation({
      native: owner.native,
      session: this.native,
      tokenizer,
      eosTokenIds: owner.eosTokenIds,
      observationTokenId: tokenizer.tokenToId('<|observation|>'),
      ...(grammar !== undefined ? { grammar, compileGrammar: (text: string) => compileGrammar(owner.native, tokenizer, owner.vocabSize, text) } : {}),
    }, prompt, opts, true);
    this.#generating++;
    generation.result.finally(() => {
      this.#generating--;
      this.#length = this.native.length;
    }).catch(() => undefined);
    return generation;
  }

  /** Like stream(), resolving with the final result. */
  async generate(input: GenerateInput, options?: TextGenerateOptions): Promise<TextGenerateResult> {
    return this.stream(input, options).result;
  }

  /** Empties the KV cache; the session can be reused for a new conversation. */
  async reset(): Promise<void> {
    this.#assertUsable();
    try {
      await this.native.reset();
      this.#length = this.native.length;
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
    if (this.#generating > 0) return;  // the engine checks: a queued generation may shorten the cache
    const used = this.#length + this.#pending;
    if (used + n > this.contextLength) {
      throw new ContextOverflowError(
        `context overflow: ${n} new tokens + ${used} already in the session = ${used + n} exceed the context length ${this.contextLength}`,
        { requestedTokens: used + n, contextLength: this.contextLength },
      );
    }
  }

  /** @internal Re-reads the cache length the engine published after a batched call. */
  syncLength(): void {
    this.#length = this.native.length;
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
