// The public entry point: load a GLM-4.5-family checkpoint folder and run it.
import { backendFromEnv, binding, loadedAddon, type NativeModel, type NativeModelInfo } from './binding.js';
import { abortErrorFor, withAbort } from './abort.js';
import {
  BackendUnavailableError, ContextOverflowError, DisposedError, InvalidParamError, ModelFormatError, toGlmError,
} from './errors.js';
import {
  checkInteger, checkKnownKeys, checkNumber, checkObject, checkSignal, describe, toTokenArray, type TokenInput,
} from './options.js';
import { Session, type SessionOwner } from './session.js';
import { checkCacheNamespace, type TextGenerateOptions } from './generate-options.js';
import type { TextGenerateResult } from './generation.js';
import { Tokenizer, type ChatTemplateSource } from './tokenizer.js';
import { resolveSpeculativeGenerate, type SpeculativeGenerateOptions } from './speculative.js';
import { resolveServingOptions, SERVING_KEYS, type ServingOptions, type ServingStats } from './serving-options.js';
import type { GenerateInput } from './prompt.js';
import { availableParallelism } from 'node:os';

export type Backend = 'auto' | 'cpu' | 'cuda';

export interface LoadProgress {
  /** "open": headers validated and shards mapped; "prefetch": weight pages read into memory. */
  stage: 'open' | 'prefetch';
  loadedBytes: number;
  totalBytes: number;
  /** 0..1 within the stage. */
  fraction: number;
}

export interface LoadOptions extends ServingOptions {
  /**
   * 'cuda': the GPU (a device of compute capability >= 8.0 and a build with CUDA), else a
   * BackendUnavailableError saying why. 'auto' (default): CUDA when usable, otherwise the CPU, with the
   * reason in `info.backendReason`. 'cpu': the CPU backend. The environment variable
   * GLM_NODE_BACKEND=cpu|cuda|auto overrides this option (README "Prebuilt binaries").
   */
  backend?: Backend;
  /** CPU threads for the forward pass (default: available parallelism). */
  threads?: number;
  signal?: AbortSignal;
  onProgress?: (progress: LoadProgress) => void;
  /** Read every weight page during load (default true) so the first tokens do not stall on disk. */
  prefetch?: boolean;
  /**
   * CUDA backend: capture each decode step's kernels as a CUDA graph once per shape and replay it
   * (default true). false runs every step eagerly; the results are bit-identical either way.
   */
  cudaGraphs?: boolean;
}

export interface ModelInfo extends NativeModelInfo {
  /** The folder the model was loaded from. */
  path: string;
  /** What the checkpoint's tokenizer files provide (README "Tokenizer and template"). */
  tokenizer: TokenizerInfo;
}

export interface TokenizerInfo {
  /** 'tokenizer.json' when text input works; null when the checkpoint has none (token ids only). */
  source: 'tokenizer.json' | null;
  /**
   * Whether tokenizer_config.json was read (false also when there is no tokenizer.json). A checkpoint
   * may lack it: the tokenizer is then tokenizer.json alone (text encodes the same) and only a chat
   * template can be missing.
   */
  config: boolean;
  /** Where the chat template came from; null: chat-message input is refused with UnsupportedFormatError. */
  chatTemplate: ChatTemplateSource | null;
}

export interface GenerateOptions {
  /** Prompt token ids. */
  tokens: TokenInput;
  /** Tokens to generate at most (0 evaluates the prompt only). Default 256. */
  maxTokens?: number;
  /** 0 = greedy (argmax, ties to the lowest id). Default 0. */
  temperature?: number;
  /** Keep the k most likely tokens (0 = off). */
  topK?: number;
  /** Nucleus sampling mass in (0, 1] (1 = off). */
  topP?: number;
  /** Drop tokens below minP × the top probability, in [0, 1] (0 = off). */
  minP?: number;
  /** Seed of the sampler's generator: the same seed and inputs give the same tokens. Default 0. */
  seed?: number;
  /** Token ids that end the generation (included in the output). Default: the model's eos ids. */
  stopTokens?: readonly number[];
  /** KV capacity of the temporary session (default prompt + maxTokens). */
  contextLength?: number;
  signal?: AbortSignal;
  /** Prefix-cache namespace (see TextGenerateOptions.cacheNamespace). */
  cacheNamespace?: string;
  /** Speculative decoding for this request (see TextGenerateOptions.speculative). */
  speculative?: SpeculativeGenerateOptions;
}

export interface GenerateResult {
  tokens: number[];
  finishReason: 'stop' | 'length';
  /** cachedTokens: prompt tokens whose KV came from the prefix cache. */
  usage: { promptTokens: number; cachedTokens: number; completionTokens: number; totalTokens: number; draftTokens: number; acceptedDraftTokens: number };
  /** queueMs: waiting for the scheduler; prefillMs: admission to the first token; decodeMs: the rest. */
  timings: { queueMs: number; prefillMs: number; decodeMs: number; prefillTokensPerSecond: number; decodeTokensPerSecond: number };
}

export interface BatchItem {
  session: Session;
  tokens: TokenInput;
  allLogits?: boolean;
}

const GENERATE_KEYS = ['tokens', 'maxTokens', 'temperature', 'topK', 'topP', 'minP', 'seed', 'stopTokens', 'contextLength', 'signal',
  'cacheNamespace', 'speculative'] as const;

export class Model implements SessionOwner {
  /** @internal */
  readonly native: NativeModel;
  readonly path: string;
  /** The checkpoint's tokenizer (tokenizer.json), when it has one; text and chat input need it. */
  readonly tokenizer: Tokenizer | undefined;
  readonly #info: NativeModelInfo;
  /** Set when the loader, not the engine, decided the backend (the CUDA variant unusable, GLM_NODE_BACKEND). */
  readonly #backendReason: string | undefined;
  readonly #sessions = new Set<Session>();
  #disposed = false;

  private constructor(native: NativeModel, dir: string, tokenizer: Tokenizer | undefined, backendReason: string | undefined) {
    this.native = native;
    this.path = dir;
    this.tokenizer = tokenizer;
    this.#backendReason = backendReason;
    this.#info = this.#withReason(native.info());
  }

  #withReason(info: NativeModelInfo): NativeModelInfo {
    return this.#backendReason === undefined ? info : { ...info, backendReason: this.#backendReason };
  }

  /** Loads a Hugging Face Glm4MoeForCausalLM folder (config.json + safetensors). Weights are memory-mapped. */
  static async load(dir: string, options?: LoadOptions): Promise<Model> {
    if (typeof dir !== 'string' || dir.length === 0) throw new InvalidParamError(`dir must be a non-empty string, got ${describe(dir)}`);
    const opts = checkObject('load options', options);
    checkKnownKeys('load options', opts, ['backend', 'threads', 'signal', 'onProgress', 'prefetch', 'cudaGraphs', ...SERVING_KEYS]);
    const backend = opts.backend ?? 'auto';
    if (backend !== 'auto' && backend !== 'cpu' && backend !== 'cuda') {
      throw new InvalidParamError(`backend must be 'auto', 'cpu' or 'cuda', got ${describe(backend)}`);
    }
    const threads = opts.threads === undefined ? availableParallelism() : checkInteger('threads', opts.threads, 1, 1024);
    const signal = checkSignal('signal', opts.signal);
    if (opts.onProgress !== undefined && typeof opts.onProgress !== 'function') {
      throw new InvalidParamError(`onProgress must be a function, got ${describe(opts.onProgress)}`);
    }
    if (opts.prefetch !== undefined && typeof opts.prefetch !== 'boolean') {
      throw new InvalidParamError(`prefetch must be a boolean, got ${describe(opts.prefetch)}`);
    }
    if (opts.cudaGraphs !== undefined && typeof opts.cudaGraphs !== 'boolean') {
      throw new InvalidParamError(`cudaGraphs must be a boolean, got ${describe(opts.cudaGraphs)}`);
    }
    const serving = resolveServingOptions(opts);
    const onProgress = opts.onProgress as LoadOptions['onProgress'];
    let progressError: unknown;
    const report = onProgress
      ? (stage: string, done: number, total: number) => {
          if (progressError !== undefined) return;
          try {
            onProgress({ stage: stage as LoadProgress['stage'], loadedBytes: done, totalBytes: total, fraction: total > 0 ? done / total : 1 });
          } catch (error) {
            progressError = error;  // surfaced after the load settles (a callback must not crash the addon)
          }
        }
      : undefined;
    if (signal?.aborted) throw abortErrorFor(signal);
    // The addon is chosen once per process (lib/addon-loader.ts). When it chose the CPU addon although
    // a CUDA variant ships, the engine cannot know why: the loader's reason stands in for the engine's.
    const envBackend = backendFromEnv();
    const requested = envBackend ?? backend;
    const addon = await loadedAddon();
    let effective = requested;
    let backendReason = envBackend !== undefined ? `requested (GLM_NODE_BACKEND=${envBackend})` : undefined;
    if (requested !== 'cpu' && addon.variant === 'cpu' && addon.cudaUnavailable !== undefined) {
      const why = `CUDA backend unavailable: ${addon.cudaUnavailable}`;
      if (requested === 'cuda') throw new BackendUnavailableError(why);
      effective = 'cpu';
      backendReason = `auto: CPU because ${why}`;
    } else if (requested === 'auto') {
      backendReason = undefined;  // the engine says why it chose (a GPU found, or why not)
    }
    // The tokenizer is read first: a broken tokenizer.json or tokenizer_config.json fails the load
    // before the weights are mapped. A missing tokenizer.json leaves token-id input only; a missing
    // tokenizer_config.json only a missing chat template (Tokenizer.fromDir).
    const tokenizer = await Tokenizer.fromDirIfPresent(dir);
    const native = await withAbort(signal, (flag) =>
      binding().loadModel(dir, { backend: effective, threads, prefetch: opts.prefetch !== false, cudaGraphs: opts.cudaGraphs !== false, ...serving }, report, flag));
    // Progress reports arrive before the completion, so an abort or a throw from onProgress is known
    // here even when the native load finished before it could notice.
    if (progressError !== undefined || signal?.aborted) {
      await native.dispose();
      if (progressError !== undefined) throw progressError;
      throw abortErrorFor(signal!, 'model load aborted');
    }
    const model = new Model(native, dir, tokenizer, backendReason);
    if (tokenizer && tokenizer.vocabSize > model.vocabSize) {
      await native.dispose();
      throw new ModelFormatError(`tokenizer.json has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${model.vocabSize}`);
    }
    return model;
  }

  /** Architecture, sizes, dtype, backend, current memory use and what the tokenizer files provide. */
  get info(): ModelInfo {
    this.assertUsable();
    const t = this.tokenizer;
    return {
      ...this.#withReason(this.native.info()),
      path: this.path,
      tokenizer: { source: t ? 'tokenizer.json' : null, config: t?.hasConfig ?? false, chatTemplate: t?.chatTemplateSource ?? null },
    };
  }

  get vocabSize(): number {
    return this.#info.vocabSize;
  }

  /** Token ids that end a generation by default (config.json eos_token_id). */
  get eosTokenIds(): readonly number[] {
    return this.#info.eosTokenIds;
  }

  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * The scheduler's state, counters and latency percentiles (running and waiting requests, KV pages,
   * prefix-cache hits, preemptions, tokens/s, time to first token, inter-token latency).
   */
  stats(): ServingStats {
    this.assertUsable();
    try {
      return this.native.stats();
    } catch (error) {
      throw toGlmError(error);
    }
  }

  /** A new conversation state with its own KV cache of `contextLength` tokens (default: the model's maximum). */
  createSession(options?: { contextLength?: number }): Session {
    this.assertUsable();
    const opts = checkObject('session options', options);
    checkKnownKeys('session options', opts, ['contextLength']);
    const contextLength = opts.contextLength === undefined
      ? this.#info.maxPositionEmbeddings
      : checkInteger('contextLength', opts.contextLength, 1, this.#info.maxPositionEmbeddings);
    let native;
    try {
      native = this.native.createSession(contextLength);
    } catch (error) {
      throw toGlmError(error);
    }
    const session = new Session(this, native, contextLength);
    this.#sessions.add(session);
    return session;
  }

  /**
   * Evaluates several sessions' tokens in shared forward steps (prefill chunks and single decode tokens
   * mixed). Resolves with each item's logits, as session.evaluate would. All or nothing.
   */
  async evaluateBatch(items: readonly BatchItem[], options?: { signal?: AbortSignal; cacheNamespace?: string }): Promise<Float32Array[]> {
    this.assertUsable();
    if (!Array.isArray(items) || items.length === 0) throw new InvalidParamError('evaluateBatch needs a non-empty array of items');
    const opts = checkObject('evaluateBatch options', options);
    checkKnownKeys('evaluateBatch options', opts, ['signal', 'cacheNamespace']);
    const signal = checkSignal('signal', opts.signal);
    const cacheNamespace = checkCacheNamespace(opts.cacheNamespace);
    const seen = new Set<Session>();
    const ids = items.map((item, i) => {
      if (!(item?.session instanceof Session) || !this.#sessions.has(item.session)) {
        throw new InvalidParamError(`items[${i}].session must be a live session of this model`);
      }
      if (seen.has(item.session)) throw new InvalidParamError(`items[${i}]: a batch may hold each session only once`);
      seen.add(item.session);
      const tokens = toTokenArray(`items[${i}].tokens`, item.tokens, this.vocabSize);
      item.session.checkFits(tokens.length);
      return tokens;
    });
    items.forEach((item, i) => item.session.addPending(ids[i]!.length));
    try {
      const logits = await withAbort(signal, (flag) => this.native.evaluate(
        items.map((item) => item.session.native), ids, items.map((item) => item.allLogits === true), flag, cacheNamespace));
      return logits;
    } finally {
      items.forEach((item, i) => {
        item.session.addPending(-ids[i]!.length);
        item.session.syncLength();
      });
    }
  }

  /**
   * Generates a reply in a temporary session. `input` is a prompt string, chat messages or token ids;
   * see Session.stream for the options. The older form `generate({tokens, ...})` returns token ids only.
   */
  async generate(input: GenerateInput, options?: TextGenerateOptions): Promise<TextGenerateResult>;
  async generate(options: GenerateOptions): Promise<GenerateResult>;
  async generate(input: GenerateInput | GenerateOptions, options?: TextGenerateOptions): Promise<TextGenerateResult | GenerateResult> {
    this.assertUsable();
    if (typeof input === 'object' && input !== null && !Array.isArray(input) && !ArrayBuffer.isView(input)) {
      if (options !== undefined) throw new InvalidParamError('generate({tokens, ...}) takes a single options object');
      return this.#generateTokens(input as GenerateOptions);
    }
    // A temporary session; its cache grows page by page, so the model's full context costs nothing
    // until it is used.
    const session = this.createSession({ contextLength: this.#info.maxPositionEmbeddings });
    try {
      return await session.stream(input as GenerateInput, options).result;
    } finally {
      await session.dispose();
    }
  }

  async #generateTokens(options: GenerateOptions): Promise<GenerateResult> {
    const opts = checkObject('generate options', options);
    checkKnownKeys('generate options', opts, GENERATE_KEYS);
    const tokens = toTokenArray('tokens', opts.tokens, this.vocabSize);
    const maxTokens = opts.maxTokens === undefined ? 256 : checkInteger('maxTokens', opts.maxTokens, 0, this.#info.maxPositionEmbeddings);
    const temperature = opts.temperature === undefined ? 0 : checkNumber('temperature', opts.temperature, 0, 1e4);
    const topK = opts.topK === undefined ? 0 : checkInteger('topK', opts.topK, 0, this.vocabSize);
    const topP = opts.topP === undefined ? 1 : checkNumber('topP', opts.topP, 0, 1, { minExclusive: true });
    const minP = opts.minP === undefined ? 0 : checkNumber('minP', opts.minP, 0, 1);
    const seed = opts.seed === undefined ? 0 : checkInteger('seed', opts.seed, 0, Number.MAX_SAFE_INTEGER);
    const stopTokens = opts.stopTokens === undefined
      ? Int32Array.from(this.#info.eosTokenIds)
      : toTokenArray('stopTokens', opts.stopTokens, this.vocabSize, { allowEmpty: true });
    const signal = checkSignal('signal', opts.signal);
    const cacheNamespace = checkCacheNamespace(opts.cacheNamespace);
    const draftTokens = resolveSpeculativeGenerate(opts.speculative);
    const needed = tokens.length + maxTokens;
    const contextLength = opts.contextLength === undefined
      ? Math.min(needed, this.#info.maxPositionEmbeddings)
      : checkInteger('contextLength', opts.contextLength, 1, this.#info.maxPositionEmbeddings);
    if (needed > contextLength) {
      throw new ContextOverflowError(
        `context overflow: ${tokens.length} prompt tokens + maxTokens ${maxTokens} = ${needed} exceed the context length ${contextLength}`,
        { requestedTokens: needed, contextLength },
      );
    }
    const session = this.createSession({ contextLength });
    try {
      const r = await withAbort(signal, (flag) => this.native.generate(session.native, tokens, {
        maxTokens, temperature, topK, topP, minP, seed, stopTokens,
        repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, topLogprobs: -1, reusePrefix: false, cacheNamespace,
        draftTokens,
      }, flag));
      const completion = r.tokens.ids.length;
      return {
        tokens: Array.from(r.tokens.ids),
        finishReason: r.finishReason === 'stop' ? 'stop' : 'length',
        usage: {
          promptTokens: r.promptTokens, cachedTokens: r.cachedTokens, completionTokens: completion, totalTokens: r.promptTokens + completion,
          draftTokens: r.draftTokens, acceptedDraftTokens: r.acceptedDraftTokens,
        },
        timings: {
          queueMs: r.queueMs,
          prefillMs: r.prefillMs,
          decodeMs: r.decodeMs,
          prefillTokensPerSecond: r.prefillMs > 0 ? ((r.promptTokens - r.cachedTokens) / r.prefillMs) * 1000 : 0,
          // The first generated token comes from the prefill's logits; each later one costs a decode step.
          decodeTokensPerSecond: r.decodeMs > 0 && completion > 1 ? ((completion - 1) / r.decodeMs) * 1000 : 0,
        },
      };
    } finally {
      await session.dispose();
    }
  }

  /** Stops in-flight work (it rejects with DisposedError), frees sessions and unmaps the weights. Idempotent. */
  async dispose(): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const s of this.#sessions) s.markDisposed();
    this.#sessions.clear();
    try {
      await this.native.dispose();
    } catch (error) {
      throw toGlmError(error);
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.dispose();
  }

  /** @internal */
  assertUsable(): void {
    if (this.#disposed) throw new DisposedError('model is disposed');
  }

  /** @internal */
  forgetSession(session: Session): void {
    this.#sessions.delete(session);
  }
}
