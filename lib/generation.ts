// One text generation on a session: prompt tokens in, a stream of typed chunks out (text, reasoning,
// tool calls, done). The engine samples and streams token ids from its own thread; this module turns
// them into valid UTF-8 text, applies stop strings, parses thinking and tool calls, and assembles the
// final result. The async iterator and the optional onChunk callback see the same chunks in order.
import type { NativeAbortFlag, NativeGenerateResult, NativeGrammar, NativeModel, NativeSession, NativeTokenBatch } from './binding.js';
import { validateConstrainedOutput } from './constrained/validate.js';
import { GlmError, toGlmError } from './errors.js';
import { abortErrorFor, abortReasonOf } from './abort.js';
import type { ResolvedGenerateOptions } from './generate-options.js';
import { binding } from './binding.js';
import { GlmOutputParser, type OutputEvent, type TokenText } from './text/output-parser.js';
import type { ParsedToolCall } from './text/tool-calls.js';

export type FinishReason = 'stop' | 'length' | 'tool_calls';

export interface TokenLogprob {
  token: number;
  logprob: number;
  /** The most likely tokens at this step (when logprobs was a number), best first. */
  top: { token: number; logprob: number }[];
}

export interface TextGenerateResult {
  /** The answer, without reasoning, tool-call markup or stop strings. */
  text: string;
  /** The <think> part (empty when thinking is off). */
  reasoning: string;
  toolCalls: ParsedToolCall[];
  /** Every generated token id (a stop token included). */
  tokens: number[];
  finishReason: FinishReason;
  /** What ended the generation when finishReason is 'stop'. */
  stop?: { token: number } | { string: string };
  /** draftTokens: MTP drafts verified (speculative decoding); acceptedDraftTokens: of those, accepted. */
  usage: { promptTokens: number; cachedTokens: number; completionTokens: number; totalTokens: number; draftTokens: number; acceptedDraftTokens: number };
  /** queueMs: waiting for the model's scheduler (other requests); prefillMs: admission to the first token. */
  timings: { queueMs: number; prefillMs: number; decodeMs: number; prefillTokensPerSecond: number; decodeTokensPerSecond: number };
  logprobs?: TokenLogprob[];
}

export type StreamChunk =
  | { type: 'text'; text: string }
  | { type: 'reasoning'; text: string }
  | { type: 'tool_call'; toolCall: ParsedToolCall }
  | { type: 'done'; result: TextGenerateResult };

export interface GenerationTarget {
  native: NativeModel;
  session: NativeSession;
  tokenizer: TokenText;
  /** Token ids that end the generation besides the user's (the model's eos ids). */
  eosTokenIds: readonly number[];
  observationTokenId: number | undefined;
  /** Constrained decoding: the generation's grammar (GBNF) and how to compile it for this model. */
  grammar?: string;
  compileGrammar?: (gbnf: string) => Promise<NativeGrammar>;
}

/** A running generation: an async iterable of chunks whose `result` promise settles at the end. */
export class Generation implements AsyncIterable<StreamChunk> {
  readonly result: Promise<TextGenerateResult>;
  /**
   * Tokens in the rendered prompt, known before the first output (an HTTP server reports it at the
   * start of a stream); the same number as the result's usage.promptTokens.
   */
  readonly promptTokens: number;
  readonly #queue: StreamChunk[] = [];
  #waiting: ((r: IteratorResult<StreamChunk>) => void) | undefined;
  #failWaiting: ((e: unknown) => void) | undefined;
  #ended = false;
  #error: unknown;
  #flag: NativeAbortFlag | undefined;
  #iterated = false;

  constructor(target: GenerationTarget, prompt: Int32Array, opts: ResolvedGenerateOptions, reusePrefix: boolean) {
    this.promptTokens = prompt.length;
    this.result = this.#run(target, prompt, opts, reusePrefix);
    // The result promise is also observed through the iterator; never leave it unhandled.
    this.result.catch(() => undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<StreamChunk> {
    if (this.#iterated) throw new GlmError('INVALID_PARAM', 'a generation stream can be iterated only once');
    this.#iterated = true;
    return {
      next: () => {
        const chunk = this.#queue.shift();
        if (chunk) return Promise.resolve({ value: chunk, done: false });
        if (this.#error !== undefined) return Promise.reject(this.#error);
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.#waiting = resolve;
          this.#failWaiting = reject;
        });
      },
      // Leaving a for-await loop early ends the generation gently (no error): the caller lost interest.
      return: async () => {
        this.#flag?.requestStop();
        await this.result.catch(() => undefined);
        return { value: undefined, done: true };
      },
    };
  }

  #push(chunk: StreamChunk): void {
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = this.#failWaiting = undefined;
      w({ value: chunk, done: false });
    } else {
      this.#queue.push(chunk);
    }
  }

  #end(error?: unknown): void {
    this.#ended = true;
    if (error !== undefined) this.#error = error;
    if (this.#waiting && this.#queue.length === 0) {
      const w = this.#waiting, f = this.#failWaiting;
      this.#waiting = this.#failWaiting = undefined;
      if (error !== undefined) f!(error);
      else w({ value: undefined, done: true });
    }
  }

  async #run(target: GenerationTarget, prompt: Int32Array, opts: ResolvedGenerateOptions, reusePrefix: boolean): Promise<TextGenerateResult> {
    const parser = new GlmOutputParser(target.tokenizer, { stop: opts.stopStrings, tools: opts.tools });
    const text: string[] = [], reasoning: string[] = [];
    const toolCalls: ParsedToolCall[] = [];
    let delivered = 0;
    let stopIndex = -1;  // tokens up to here produced the output when a stop string matched
    let callbackError: unknown;
    let callbackChain = Promise.resolve();
    const flag = new (binding().AbortFlag)();
    this.#flag = flag;

    const emit = (chunk: StreamChunk) => {
      this.#push(chunk);
      if (opts.onChunk && callbackError === undefined) {
        // Callbacks run in order; one that throws (or rejects) stops the generation and its error
        // becomes the generation's error (RELIABILITY E5).
        const cb = opts.onChunk;
        callbackChain = callbackChain.then(() => cb(chunk)).catch((e: unknown) => {
          if (callbackError === undefined) {
            callbackError = e;
            flag.abort();
          }
        });
      }
    };
    const onEvents = (events: OutputEvent[]) => {
      for (const e of events) {
        if (e.type === 'tool_call') {
          toolCalls.push(e.call);
          emit({ type: 'tool_call', toolCall: e.call });
        } else {
          (e.type === 'text' ? text : reasoning).push(e.text);
          emit({ type: e.type, text: e.text });
        }
      }
    };
    const take = (start: number, ids: Int32Array) => {
      for (let i = Math.max(0, delivered - start); i < ids.length; i++) {
        delivered = start + i + 1;
        const wasDone = parser.done;
        onEvents(parser.push(ids[i]!));
        if (parser.done && !wasDone) {
          stopIndex = delivered;
          flag.requestStop();  // a stop string matched: the engine may stop sampling
        }
      }
    };

    const signal = opts.signal;
    const onAbort = () => flag.abort();
    try {
      if (signal?.aborted) throw abortErrorFor(signal);
      signal?.addEventListener('abort', onAbort, { once: true });
      const stopTokens = Int32Array.from(new Set([...(opts.ignoreEos ? [] : target.eosTokenIds), ...opts.stopTokens]));
      // (Compiled off the JS thread and cached by the model: a schema sent with every request compiles once.)
      const grammar = target.grammar !== undefined ? await target.compileGrammar!(target.grammar) : undefined;
      if (signal?.aborted) throw abortErrorFor(signal);
      let native: NativeGenerateResult;
      try {
        native = await target.native.generate(target.session, prompt, {
          maxTokens: opts.maxTokens, temperature: opts.temperature, topK: opts.topK, topP: opts.topP, minP: opts.minP,
          repetitionPenalty: opts.repetitionPenalty, presencePenalty: opts.presencePenalty,
          frequencyPenalty: opts.frequencyPenalty, topLogprobs: opts.topLogprobs, seed: opts.seed, stopTokens, reusePrefix,
          cacheNamespace: opts.cacheNamespace, draftTokens: opts.draftTokens, ...(grammar ? { grammar } : {}),
        }, flag, (start: number, batch: NativeTokenBatch) => take(start, batch.ids));
      } catch (error) {
        throw callbackError ?? abortReasonOf(toGlmError(error), signal);
      }
      // Tokens whose stream callback had not arrived yet come from the result (it holds them all).
      take(0, native.tokens.ids);
      onEvents(parser.finish());
      await callbackChain;
      if (callbackError !== undefined) throw callbackError;

      // Tokens after a matched stop string were sampled before the engine saw the stop request: they
      // are not part of the output.
      const all = Array.from(native.tokens.ids);
      const ids = stopIndex >= 0 ? all.slice(0, stopIndex) : all;
      const completion = ids.length;
      const last = ids[ids.length - 1];
      let finishReason: FinishReason = 'length';
      let stop: TextGenerateResult['stop'];
      if (parser.stopMatched !== undefined) {
        finishReason = 'stop';
        stop = { string: parser.stopMatched };
      } else if (native.finishReason === 'stop' && last !== undefined) {
        finishReason = toolCalls.length > 0 && last === target.observationTokenId ? 'tool_calls' : 'stop';
        stop = { token: last };
      } else if (native.finishReason === 'grammar') {
        finishReason = toolCalls.length > 0 ? 'tool_calls' : 'stop';  // the grammar is complete
      } else if (native.finishReason === 'stop_requested') {
        finishReason = 'stop';  // the consumer left the stream early
      }
      if (target.grammar !== undefined) {
        const complete = parser.stopMatched === undefined && (native.finishReason === 'grammar' || native.finishReason === 'stop');
        validateConstrainedOutput(opts.constraint, opts.tools, text.join(''), toolCalls, complete);
      }
      const result: TextGenerateResult = {
        text: text.join(''),
        reasoning: reasoning.join(''),
        toolCalls,
        tokens: ids,
        finishReason,
        ...(stop ? { stop } : {}),
        usage: {
          promptTokens: native.promptTokens,
          cachedTokens: native.cachedTokens,
          completionTokens: completion,
          totalTokens: native.promptTokens + completion,
          draftTokens: native.draftTokens,
          acceptedDraftTokens: native.acceptedDraftTokens,
        },
        timings: {
          queueMs: native.queueMs,
          prefillMs: native.prefillMs,
          decodeMs: native.decodeMs,
          prefillTokensPerSecond: native.prefillMs > 0 ? ((native.promptTokens - native.cachedTokens) / native.prefillMs) * 1000 : 0,
          decodeTokensPerSecond: native.decodeMs > 0 && completion > 1 ? ((completion - 1) / native.decodeMs) * 1000 : 0,
        },
        ...(opts.topLogprobs >= 0 ? { logprobs: logprobsOf(native.tokens, opts.topLogprobs).slice(0, ids.length) } : {}),
      };
      const done: StreamChunk = { type: 'done', result };
      this.#push(done);
      if (opts.onChunk) await opts.onChunk(done);
      this.#end();
      return result;
    } catch (error) {
      const e = error instanceof GlmError ? error : error instanceof Error ? error : toGlmError(error);
      this.#end(e);
      throw e;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}

function logprobsOf(batch: NativeTokenBatch, topN: number): TokenLogprob[] {
  const out: TokenLogprob[] = [];
  for (let i = 0; i < batch.ids.length; i++) {
    const top: { token: number; logprob: number }[] = [];
    for (let j = 0; j < topN; j++) {
      const id = batch.topIds![i * topN + j]!;
      if (id >= 0) top.push({ token: id, logprob: batch.topLogprobs![i * topN + j]! });
    }
    out.push({ token: batch.ids[i]!, logprob: batch.logprobs![i]!, top });
  }
  return out;
}
