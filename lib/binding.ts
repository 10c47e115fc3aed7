// The only module that loads the native addon; everything else talks to this typed surface.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { KvCacheType, NativeServingOptions, ServingStats } from './serving-options.js';
import { loadAddon, loadAddonSync, type LoadedAddon } from './addon-loader.js';
import { InvalidParamError } from './errors.js';

export interface NativeAbortFlag {
  abort(): void;
  /** Ends a generation after the current token without an error (finishReason "stop_requested"). */
  requestStop(): void;
  readonly aborted: boolean;
}

export interface NativeSession {
  /** Tokens in the cache after the last settled job on this session. */
  readonly length: number;
  reset(): Promise<void>;
  dispose(): Promise<void>;
}

export interface NativeModelInfo {
  architecture: string;
  hiddenSize: number;
  numLayers: number;
  numAttentionHeads: number;
  numKeyValueHeads: number;
  headDim: number;
  rotaryDim: number;
  vocabSize: number;
  intermediateSize: number;
  moeIntermediateSize: number;
  numExperts: number;
  numExpertsPerToken: number;
  numSharedExperts: number;
  firstDenseLayers: number;
  maxPositionEmbeddings: number;
  routedScalingFactor: number;
  useQkNorm: boolean;
  hasMtp: boolean;
  eosTokenIds: number[];
  dtype: string;
  backend: string;
  /** Why this backend runs: "requested", or why 'auto' chose it / fell back to the CPU (one line). */
  backendReason: string;
  threads: number;
  cpuIsa: string;
  /** The CUDA self-test (device query, one tiny kernel); run only in the loader's probe child. */
  cudaProbe(): { ok: boolean; device?: string; reason?: string };
  /**
   * kvCacheBytes: KV pages in use (held by sessions or cached prefixes); kvPoolBytes: the pool's size
   * (reserved; on the CPU committed as pages are first written).
   */
  memory: { weightsMappedBytes: number; weightsOwnedBytes: number; kvCacheBytes: number; kvPoolBytes: number; scratchBytes: number };
  /** The KV page pool: element type, positions per page, pages, bytes per page (all layers), prefix sharing. */
  kvCache: { type: KvCacheType; pageTokens: number; pages: number; pageBytes: number; prefixCache: boolean };
  /** The scheduler's limits (load options or their defaults). */
  scheduler: { maxBatchTokens: number; maxConcurrentRequests: number; maxQueuedRequests: number };
  /**
   * CUDA backend: decode steps captured as CUDA graphs, replayed, and captures that failed (each such
   * step ran eagerly; the reason is printed once on stderr). Zeros on the CPU or with cudaGraphs: false.
   */
  cudaGraphs: { captures: number; replays: number; failures: number };
  /** Drafts per round for requests that do not choose (0: speculative decoding is off) and why. */
  speculative: { draftTokens: number; reason: string };
}

export interface NativeGenerateParams {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  /** -1: no logprobs; n >= 0: the chosen token's logprob and the n most likely tokens'. */
  topLogprobs: number;
  seed: number;
  stopTokens: Int32Array;
  /** The prompt is the whole context: keep the common prefix of the session's cache. */
  reusePrefix: boolean;
  /** Prefix-cache namespace (sessions share cached prompt pages only within one). */
  cacheNamespace?: string;
  /** MTP drafts per round: -1 the model's default, 0 off. */
  draftTokens?: number;
  /** Constrained decoding: every token stays inside this grammar (finishReason 'grammar' when it is complete). */
  grammar?: NativeGrammar;
}

/** Tokens as the engine chose them; top arrays are flattened [count × topN], padded with -1 / -Infinity. */
export interface NativeTokenBatch {
  ids: Int32Array;
  logprobs?: Float32Array;
  topIds?: Int32Array;
  topLogprobs?: Float32Array;
}

export interface NativeGenerateResult {
  tokens: NativeTokenBatch;
  finishReason: 'stop' | 'length' | 'stop_requested' | 'grammar';
  promptTokens: number;
  cachedTokens: number;
  /** Submission to admission by the scheduler. */
  queueMs: number;
  prefillMs: number;
  decodeMs: number;
  /** MTP drafts verified, and of those accepted. */
  draftTokens: number;
  acceptedDraftTokens: number;
}

export interface NativeModel {
  info(): NativeModelInfo;
  createSession(contextLength: number): NativeSession;
  /** With draftLogits[i], item i's array carries the MTP layer's logits as `.draftLogits`. */
  evaluate(sessions: NativeSession[], tokens: Int32Array[], allLogits: boolean[], abort?: NativeAbortFlag, cacheNamespace?: string,
    draftLogits?: boolean[]): Promise<Array<Float32Array & { draftLogits?: Float32Array }>>;
  generate(
    session: NativeSession, tokens: Int32Array, params: NativeGenerateParams, abort?: NativeAbortFlag,
    onTokens?: (start: number, batch: NativeTokenBatch) => void,
  ): Promise<NativeGenerateResult>;
  stats(): ServingStats;
  /**
   * Compiles a GBNF grammar against the model's vocabulary (off the JS thread; cached by text). The
   * vocabulary is needed until hasGrammarVocabulary() says the model holds it.
   */
  compileGrammar(gbnf: string, vocabulary: NativeGrammarVocabulary | null): Promise<NativeGrammar>;
  hasGrammarVocabulary(): boolean;
  dispose(): Promise<void>;
}

/** Every token's bytes (offsets: n + 1 entries) and which tokens only a grammar's <[id]> matches. */
export interface NativeGrammarVocabulary {
  bytes: Uint8Array;
  offsets: Uint32Array;
  tokenOnly: Uint8Array;
}

/** An opaque compiled grammar, passed to generate() as params.grammar. */
export type NativeGrammar = { readonly __nativeGrammar: unique symbol };

/** One matrix for the native quantizer (cpp/addon/quantize_job.cc); bytes are the stored tensor's. */
export interface NativeQuantizeJob {
  target: 'fp8' | 'fp8-block' | 'mxfp4';
  dtype: string;
  rows: number;
  cols: number;
  bytes: Uint8Array;
  /** An F8_E4M3 input's scales (as F32) in its own layout. */
  inScheme?: 'fp8-channel' | 'fp8-block';
  inScales?: Float32Array;
  /** Mean squared activation per input column: the scale search minimises the weighted error. */
  channelWeight?: Float32Array;
  /** With channelWeight: E[x xᵀ] [cols, cols], for GPTQ-style error feedback along each row. */
  covariance?: Float32Array;
}

export interface NativeQuantizedMatrix {
  data: Uint8Array;
  scales: Uint8Array;
  err2: number;
  ref2: number;
  werr2: number;
  wref2: number;
}

export interface NativeCalibrationStats {
  tokens: number;
  /** Input key -> mean squared activation per channel. */
  inputs: Record<string, Float32Array>;
  /** Input key -> E[x xᵀ] [C, C] (only when they fit the covariance budget). */
  covariances: Record<string, Float32Array>;
  inputTokens: Record<string, number>;
  /** Quantizable module -> the input key it reads (absent: no statistics for it). */
  modules: Record<string, string>;
  /** Routed expert ("model.layers.L.mlp.experts.E") -> calibration tokens routed to it. */
  expertTokens: Record<string, number>;
}

export interface NativeBinding {
  AbortFlag: new () => NativeAbortFlag;
  loadModel(
    dir: string,
    options: { backend: 'auto' | 'cpu' | 'cuda'; threads: number; prefetch: boolean; cudaGraphs: boolean } & NativeServingOptions,
    onProgress: ((stage: string, done: number, total: number) => void) | undefined,
    abort: NativeAbortFlag | undefined,
  ): Promise<NativeModel>;
  cpuIsa: string;
  /** The CUDA self-test (device query, one tiny kernel); run only in the loader's probe child. */
  cudaProbe(): { ok: boolean; device?: string; reason?: string };
  /** Benchmark helper: best-pass multi-threaded read bandwidth of this machine (bytes/s). */
  /** JSON Schema (JSON text) → GBNF rules starting at `${rulePrefix}root`; throws INVALID_PARAM naming the keyword. */
  jsonSchemaToGbnf(schemaJson: string, rulePrefix: string, allowWhitespace: boolean): string;
  measureReadBandwidth(bytes: number, threads: number, minSeconds: number): Promise<{ bytesPerSecond: number; passes: number; bufferBytes: number }>;
  /** The checkpoint quantizer: a job thread with its own pool of `threads` (0: all cores). */
  createQuantizer(threads: number): unknown;
  quantizeMatrix(quantizer: unknown, job: NativeQuantizeJob): Promise<NativeQuantizedMatrix>;
  disposeQuantizer(quantizer: unknown): void;
  collectActivationStats(dir: string, sequences: Int32Array[], options: { threads: number; minExpertTokens: number; covarianceBudgetBytes?: number },
    abort: NativeAbortFlag | undefined, onProgress: ((done: number, total: number) => void) | undefined): Promise<NativeCalibrationStats>;
}

// The package root is the nearest folder above this file whose package.json names glm-node (this file
// runs from lib/ under a test runner and from dist/lib/ once compiled).
function findPackageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown }).name === 'glm-node') return dir;
      } catch {
        // an unreadable manifest is not ours; keep looking upwards
      }
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('glm-node: cannot find the package root above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

const packageRoot = findPackageRoot();

/** GLM_NODE_BACKEND (cpu|cuda|auto), which overrides the `backend` load option; undefined when unset. */
export function backendFromEnv(): 'auto' | 'cpu' | 'cuda' | undefined {
  const v = process.env.GLM_NODE_BACKEND;
  if (v === undefined || v === '') return undefined;
  if (v === 'auto' || v === 'cpu' || v === 'cuda') return v;
  throw new InvalidParamError(`GLM_NODE_BACKEND must be cpu, cuda or auto, got "${v}"`);
}

let loaded: LoadedAddon<NativeBinding> | undefined;
let pending: Promise<LoadedAddon<NativeBinding>> | undefined;

/** The addon this process uses, chosen and loaded once (lib/addon-loader.ts); the CUDA probe runs without blocking. */
export async function loadedAddon(): Promise<LoadedAddon<NativeBinding>> {
  if (loaded) return loaded;
  pending ??= loadAddon<NativeBinding>(packageRoot, backendFromEnv() ?? 'auto').then(
    (l) => (loaded ??= l),
    (error: unknown) => { pending = undefined; throw error; },  // a later call may succeed (e.g. after a build)
  );
  return pending;
}

/** The same, synchronously: for callers that cannot wait (the first call blocks on the CUDA probe, if any). */
export function loadedAddonSync(): LoadedAddon<NativeBinding> {
  return (loaded ??= loadAddonSync<NativeBinding>(packageRoot, backendFromEnv() ?? 'auto'));
}

/** The loaded addon's functions (loads it on first use). */
export function binding(): NativeBinding {
  return loadedAddonSync().binding;
}
