// Load options of the serving engine (KV page pool, prefix cache, scheduler) and model.stats()'s shape:
// validated here at the edge, carried out by the engine (cpp/engine/scheduler.h, kv_pool.h).
import { InvalidParamError } from './errors.js';
import { checkInteger, describe } from './options.js';
import { resolveSpeculativeLoad, type NativeSpeculativeOptions, type SpeculativeLoadOptions, type SpeculativeStats } from './speculative.js';

export type KvCacheType = 'f32' | 'bf16' | 'fp8';

export interface ServingOptions {
  /**
   * Size of the model's KV page pool, shared by all its sessions: bytes, or `{ tokens }` (positions of
   * context across all sessions). Default on the CPU: half the memory available at load, at most 64
   * full contexts of the model (the pool is reserved, not committed: memory is used as pages fill);
   * on CUDA: what is left of the device after weights and activations.
   */
  kvCacheSize?: number | { tokens: number };
  /**
   * How keys and values are stored: 'bf16' (default; half of 'f32'), 'fp8' (E4M3 with one scale per
   * position and head, a quarter plus 3%), or 'f32' (exact: what the forward pass computed).
   */
  kvCacheType?: KvCacheType;
  /** Positions per KV page (1..256, default 16): the granularity of prefix sharing. */
  kvPageTokens?: number;
  /** Share the KV of equal prompt prefixes across sessions (default true). */
  prefixCache?: boolean;
  /** Tokens per forward step (default 256 on the CPU, 512 on CUDA): longer prompts are prefilled in chunks. */
  maxBatchTokens?: number;
  /** Requests computing at once (default 64); more wait in the queue. */
  maxConcurrentRequests?: number;
  /** Requests waiting beyond those (default 1024); more reject at once with QueueFullError. */
  maxQueuedRequests?: number;
  /**
   * @internal Tests: keep only this many bits of the prefix cache's page hashes (0: every page
   * collides), to show that its exact parent-and-token check keeps results correct.
   */
  prefixCacheHashBits?: number;
  /** Speculative decoding with the checkpoint's MTP layer (lib/speculative.ts); default on where it exists. */
  speculative?: SpeculativeLoadOptions;
}

export const SERVING_KEYS = ['kvCacheSize', 'kvCacheType', 'kvPageTokens', 'prefixCache', 'maxBatchTokens',
  'maxConcurrentRequests', 'maxQueuedRequests', 'prefixCacheHashBits', 'speculative'] as const;

/** What the native loader takes (absent keys keep the engine's defaults). */
export interface NativeServingOptions {
  kvCacheBytes?: number;
  kvCacheTokens?: number;
  kvCacheType?: KvCacheType;
  kvPageTokens?: number;
  prefixCache?: boolean;
  maxBatchTokens?: number;
  maxConcurrentRequests?: number;
  maxQueuedRequests?: number;
  prefixHashBits?: number;
  speculative?: false | NativeSpeculativeOptions;
}

const MAX_POOL_BYTES = 2 ** 50;  // 1 PiB: anything above is a unit mistake, not a machine

export function resolveServingOptions(o: Record<string, unknown>): NativeServingOptions {
  const out: NativeServingOptions = {};
  if (o.kvCacheSize !== undefined) {
    const size = o.kvCacheSize;
    if (typeof size === 'object' && size !== null && !Array.isArray(size)) {
      const keys = Object.keys(size);
      if (keys.length !== 1 || keys[0] !== 'tokens') throw new InvalidParamError('kvCacheSize must be a byte count or { tokens }');
      out.kvCacheTokens = checkInteger('kvCacheSize.tokens', (size as { tokens: unknown }).tokens, 1, 2 ** 40);
    } else {
      out.kvCacheBytes = checkInteger('kvCacheSize', size, 1, MAX_POOL_BYTES);
    }
  }
  if (o.kvCacheType !== undefined) {
    if (o.kvCacheType !== 'f32' && o.kvCacheType !== 'bf16' && o.kvCacheType !== 'fp8') {
      throw new InvalidParamError(`kvCacheType must be 'f32', 'bf16' or 'fp8', got ${describe(o.kvCacheType)}`);
    }
    out.kvCacheType = o.kvCacheType;
  }
  if (o.kvPageTokens !== undefined) out.kvPageTokens = checkInteger('kvPageTokens', o.kvPageTokens, 1, 256);
  if (o.prefixCache !== undefined) {
    if (typeof o.prefixCache !== 'boolean') throw new InvalidParamError(`prefixCache must be a boolean, got ${describe(o.prefixCache)}`);
    out.prefixCache = o.prefixCache;
  }
  if (o.maxBatchTokens !== undefined) out.maxBatchTokens = checkInteger('maxBatchTokens', o.maxBatchTokens, 1, 65536);
  if (o.maxConcurrentRequests !== undefined) {
    out.maxConcurrentRequests = checkInteger('maxConcurrentRequests', o.maxConcurrentRequests, 1, 65536);
  }
  if (o.maxQueuedRequests !== undefined) out.maxQueuedRequests = checkInteger('maxQueuedRequests', o.maxQueuedRequests, 0, 2 ** 31 - 1);
  if (o.prefixCacheHashBits !== undefined) out.prefixHashBits = checkInteger('prefixCacheHashBits', o.prefixCacheHashBits, 0, 64);
  if (o.speculative !== undefined) out.speculative = resolveSpeculativeLoad(o.speculative);
  return out;
}

export interface LatencyPercentiles {
  p50: number;
  p90: number;
  p99: number;
  /** Samples the percentiles were taken from (the most recent 4096). */
  count: number;
}

/**
 * model.stats(): the scheduler's state and counters. Each field maps to one Prometheus metric
 * (README, "Concurrency"): counters are cumulative since load, rates cover the last 10 seconds.
 */
export interface ServingStats {
  /** Requests computing now (glm_requests_running). */
  running: number;
  /** Requests submitted and not yet running, including those behind a busy session (glm_requests_waiting). */
  waiting: number;
  kvCache: {
    /** glm_kv_pages_total, glm_kv_pages_used (held by sessions), glm_kv_pages_cached (prefix cache, reclaimable). */
    pagesTotal: number;
    pagesUsed: number;
    pagesCached: number;
    pageTokens: number;
    /** Cached pages reclaimed for new work (glm_kv_evictions_total). */
    evictions: number;
  };
  prefixCache: {
    /** Prompt tokens looked up and, of those, served from cached KV (glm_prefix_cache_queries_total, glm_prefix_cache_hits_total). */
    queryTokens: number;
    hitTokens: number;
    hitRate: number;
  };
  /** Running requests whose pages were taken back and recomputed later (glm_preemptions_total). */
  preemptions: number;
  /** Prompt tokens computed (cache hits excluded) and tokens generated (glm_prompt_tokens_total, glm_generation_tokens_total). */
  promptTokens: number;
  generationTokens: number;
  /** glm_requests_finished_total, glm_requests_failed_total (errors, aborts, disposes). */
  requestsFinished: number;
  requestsFailed: number;
  /** Forward steps run (glm_steps_total). */
  steps: number;
  /** Speculative decoding: rounds, drafts verified and accepted, the acceptance rate (glm_draft_*). */
  speculative: SpeculativeStats;
  promptTokensPerSecond: number;
  generationTokensPerSecond: number;
  /** Submission to first token (glm_time_to_first_token_seconds), over the last 4096 requests. */
  timeToFirstTokenMs: LatencyPercentiles;
  /** Between consecutive tokens of a request (glm_inter_token_latency_seconds), over the last 4096 gaps. */
  interTokenLatencyMs: LatencyPercentiles;
}
