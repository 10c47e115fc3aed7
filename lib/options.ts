// Validation of every user-supplied option at the edge (RELIABILITY.md table D / E6): wrong types and
// out-of-range values become InvalidParamError before anything reaches native code.
import { InvalidParamError, InvalidTokenError } from './errors.js';

export type TokenInput = readonly number[] | Uint32Array | Int32Array;

/** Upper bound on one call's token count; bigger inputs are rejected before any copy. */
export const MAX_TOKENS_PER_CALL = 1 << 24;

export function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) {
    throw new InvalidParamError(`${name} must be an integer, got ${describe(value)}`);
  }
  if (value < min || value > max) throw new InvalidParamError(`${name} must be in [${min}, ${max}], got ${value}`);
  return value;
}

export function checkNumber(name: string, value: unknown, min: number, max: number, opts: { minExclusive?: boolean } = {}): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new InvalidParamError(`${name} must be a finite number, got ${describe(value)}`);
  }
  if (value < min || value > max || (opts.minExclusive && value === min)) {
    throw new InvalidParamError(`${name} must be in ${opts.minExclusive ? '(' : '['}${min}, ${max}], got ${value}`);
  }
  return value;
}

export function describe(value: unknown): string {
  if (typeof value === 'bigint') return `${value}n (a BigInt)`;
  if (typeof value === 'string') return `"${value.length > 40 ? value.slice(0, 40) + '…' : value}" (a string)`;
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of length ${value.length}`;
  if (typeof value === 'object') return `an object`;
  return String(value);
}

/** Copies token ids into an Int32Array, rejecting non-integers and ids outside [0, vocabSize). */
export function toTokenArray(name: string, tokens: unknown, vocabSize: number, opts: { allowEmpty?: boolean } = {}): Int32Array {
  if (!(Array.isArray(tokens) || tokens instanceof Uint32Array || tokens instanceof Int32Array)) {
    throw new InvalidParamError(`${name} must be an array of token ids or a Uint32Array, got ${describe(tokens)}`);
  }
  const list = tokens as ArrayLike<unknown>;
  if (list.length === 0 && !opts.allowEmpty) throw new InvalidParamError(`${name} must hold at least one token`);
  if (list.length > MAX_TOKENS_PER_CALL) throw new InvalidParamError(`${name} holds ${list.length} tokens; the limit is ${MAX_TOKENS_PER_CALL}`);
  const out = new Int32Array(list.length);
  for (let i = 0; i < list.length; i++) {
    const id = list[i];
    if (typeof id !== 'number' || !Number.isInteger(id)) {
      throw new InvalidTokenError(`${name}[${i}] is not an integer token id: ${describe(id)}`);
    }
    if (id < 0 || id >= vocabSize) {
      throw new InvalidTokenError(`${name}[${i}] = ${id} is outside the vocabulary [0, ${vocabSize})`);
    }
    out[i] = id;
  }
  return out;
}

export function checkSignal(name: string, signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal)) throw new InvalidParamError(`${name} must be an AbortSignal, got ${describe(signal)}`);
  return signal;
}

export function checkObject(name: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidParamError(`${name} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Rejects option keys the function does not know (a typo such as `max_tokens` would be silently ignored otherwise). */
export function checkKnownKeys(name: string, value: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) throw new InvalidParamError(`${name}: unknown option "${key}" (known: ${known.join(', ')})`);
  }
}
