// Speculative decoding with the checkpoint's MTP ("nextn") layer: the load and per-generation options,
// validated here, carried out by the engine (cpp/engine/scheduler_mtp.cc, speculation.h).
import { InvalidParamError } from './errors.js';
import { checkInteger, checkKnownKeys, checkNumber, describe } from './options.js';

export const MAX_DRAFT_TOKENS = 8;

/**
 * Load option `speculative`: on by default for checkpoints with an MTP layer on the CPU backend (one
 * draft per round); on the CUDA backend only when `draftTokens` is given (not yet measured on a GPU).
 * `false` turns it off (no MTP KV, no drafts). Outputs are the same either way: greedy decoding token
 * for token, seeded sampling too.
 */
export type SpeculativeLoadOptions = false | {
  /** Drafts per round (1..8, default 1: GLM's MTP layer was trained for one step). */
  draftTokens?: number;
  /** Steps with more generating requests than this draft nothing (default 1 on the CPU: measured). */
  maxBatch?: number;
  /**
   * Per-draft acceptance below which a request stops drafting after 8 rounds, and below which the
   * model stops running its MTP layer after 8 rounds over all requests (default 0.3: break-even). The
   * model also stops it when none of the drafts of its first 3 rounds was accepted. 0 turns both off.
   */
  minAcceptance?: number;
};

/** Generate option `speculative`: `false` turns drafting off for this request; `{ draftTokens }` sets k. */
export type SpeculativeGenerateOptions = false | { draftTokens: number };

export interface NativeSpeculativeOptions {
  draftTokens?: number;
  maxBatch?: number;
  minAcceptance?: number;
}

export function resolveSpeculativeLoad(value: unknown): false | NativeSpeculativeOptions {
  if (value === false) return false;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidParamError(`speculative must be false or an object, got ${describe(value)}`);
  }
  const o = value as Record<string, unknown>;
  checkKnownKeys('speculative', o, ['draftTokens', 'maxBatch', 'minAcceptance']);
  const out: NativeSpeculativeOptions = {};
  if (o.draftTokens !== undefined) out.draftTokens = checkInteger('speculative.draftTokens', o.draftTokens, 1, MAX_DRAFT_TOKENS);
  if (o.maxBatch !== undefined) out.maxBatch = checkInteger('speculative.maxBatch', o.maxBatch, 0, 65536);
  if (o.minAcceptance !== undefined) out.minAcceptance = checkNumber('speculative.minAcceptance', o.minAcceptance, 0, 1);
  return out;
}

/** The engine's draftTokens for a generation: -1 (the model's default), 0 (off) or k. */
export function resolveSpeculativeGenerate(value: unknown): number {
  if (value === undefined) return -1;
  if (value === false) return 0;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidParamError(`speculative must be false or { draftTokens }, got ${describe(value)}`);
  }
  const o = value as Record<string, unknown>;
  checkKnownKeys('speculative', o, ['draftTokens']);
  return checkInteger('speculative.draftTokens', o.draftTokens, 1, MAX_DRAFT_TOKENS);
}

/** model.stats().speculative (glm_draft_* metrics). */
export interface SpeculativeStats {
  /** The model runs its MTP layer (false: never had one, turned off, or suspended as useless). */
  active: boolean;
  /** Verification rounds, drafts verified, drafts accepted, accepted / verified, MTP layer steps. */
  rounds: number;
  draftTokens: number;
  acceptedDraftTokens: number;
  acceptanceRate: number;
  mtpSteps: number;
}
