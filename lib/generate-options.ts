// Validation of text-generation options (RELIABILITY.md table D): every field checked for type and
// range at the edge, with messages that name the option.
import { InvalidParamError } from './errors.js';
import { checkInteger, checkKnownKeys, checkNumber, checkObject, checkSignal, describe } from './options.js';
import type { ToolDefinition } from './text/tool-calls.js';
import type { StreamChunk } from './generation.js';
import { resolveSpeculativeGenerate, type SpeculativeGenerateOptions } from './speculative.js';
import { resolveConstraint, type ResolvedConstraint, type ResponseFormat, type ToolChoice } from './constrained/options.js';

export interface TextGenerateOptions {
  /** Tokens to generate at most (0 evaluates the prompt only). Default 512. */
  maxTokens?: number;
  /** 0 = greedy (argmax, ties to the lowest id). Default 0.6. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  /** HF/CTRL repetition penalty over prompt + output (1 = off), in (0, 10]. */
  repetitionPenalty?: number;
  /** OpenAI presence penalty over the output, in [-2, 2]. */
  presencePenalty?: number;
  /** OpenAI frequency penalty over the output, in [-2, 2]. */
  frequencyPenalty?: number;
  seed?: number;
  /** Stop strings (never included in the text) and stop token ids (included in `tokens`). */
  stop?: string | readonly (string | number)[];
  signal?: AbortSignal;
  /** GLM thinking mode (default true): the model reasons in <think> first. Chat input only. */
  thinking?: boolean;
  /** Functions the model may call (chat input only). */
  tools?: readonly ToolDefinition[];
  /** true: the logprob of each generated token; a number n (0..20): also the n most likely tokens. */
  logprobs?: boolean | number;
  /** Called with every streamed chunk (in addition to the async iterator of session.stream). */
  onChunk?: (chunk: StreamChunk) => void | Promise<void>;
  /** Keep going past the model's end-of-sequence tokens (benchmarks, tests; as vLLM's ignore_eos). */
  ignoreEos?: boolean;
  /**
   * Prefix-cache namespace (a tenant id, up to 256 characters): requests share cached prompt pages only
   * with requests of the same namespace. Default '' (shared by every request of the model).
   */
  cacheNamespace?: string;
  /**
   * Speculative decoding for this request (models loaded with it; default: the model's setting):
   * `false` drafts nothing, `{ draftTokens }` proposes k drafts per round. The output is the same.
   */
  speculative?: SpeculativeGenerateOptions;
  /**
   * Constrained decoding of the answer: `{ type: 'json_schema', schema }` (the text always parses and
   * validates against the schema), `{ type: 'json_object' }` or `{ type: 'text' }` (free, the default).
   * With thinking on, the reasoning stays free text and the constraint starts after </think>.
   */
  responseFormat?: ResponseFormat;
  /** Constrained decoding with a GBNF grammar (llama.cpp's format, plus <[id]> for a token by id). */
  grammar?: string;
  /** With tools: 'auto' (default), 'required', 'none' or { name }; every call and its arguments follow the tool's schema. */
  toolChoice?: ToolChoice;
}

export interface ResolvedGenerateOptions {
  maxTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  minP: number;
  repetitionPenalty: number;
  presencePenalty: number;
  frequencyPenalty: number;
  seed: number;
  stopStrings: string[];
  stopTokens: number[];
  signal: AbortSignal | undefined;
  thinking: boolean;
  tools: ToolDefinition[];
  topLogprobs: number;  // -1 = off
  onChunk: TextGenerateOptions['onChunk'];
  ignoreEos: boolean;
  cacheNamespace: string;
  draftTokens: number;  // -1: the model's default
  constraint: ResolvedConstraint;
}

const KEYS = ['maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'presencePenalty',
  'frequencyPenalty', 'seed', 'stop', 'signal', 'thinking', 'tools', 'logprobs', 'onChunk', 'ignoreEos', 'cacheNamespace', 'speculative',
  'responseFormat', 'grammar', 'toolChoice'] as const;

export const MAX_STOP_STRINGS = 16;
export const MAX_STOP_STRING_LENGTH = 256;
export const MAX_TOP_LOGPROBS = 20;
export const MAX_TOOLS = 128;

export function resolveGenerateOptions(options: unknown, limits: { vocabSize: number; maxTokens: number }): ResolvedGenerateOptions {
  const o = checkObject('generate options', options);
  checkKnownKeys('generate options', o, KEYS);
  const num = (k: string, d: number, lo: number, hi: number, opts?: { minExclusive?: boolean }) =>
    o[k] === undefined ? d : checkNumber(k, o[k], lo, hi, opts);
  const int = (k: string, d: number, lo: number, hi: number) => (o[k] === undefined ? d : checkInteger(k, o[k], lo, hi));

  const stopStrings: string[] = [];
  const stopTokens: number[] = [];
  if (o.stop !== undefined) {
    const list = typeof o.stop === 'string' ? [o.stop] : o.stop;
    if (!Array.isArray(list)) throw new InvalidParamError(`stop must be a string or an array of strings and token ids, got ${describe(o.stop)}`);
    if (list.length > MAX_STOP_STRINGS) throw new InvalidParamError(`stop holds ${list.length} entries; the limit is ${MAX_STOP_STRINGS}`);
    for (const [i, s] of list.entries()) {
      if (typeof s === 'string') {
        if (s.length === 0 || s.length > MAX_STOP_STRING_LENGTH) {
          throw new InvalidParamError(`stop[${i}] must be 1 to ${MAX_STOP_STRING_LENGTH} characters long`);
        }
        if (/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s)) throw new InvalidParamError(`stop[${i}] contains a lone surrogate`);
        stopStrings.push(s);
      } else if (typeof s === 'number' && Number.isInteger(s) && s >= 0 && s < limits.vocabSize) {
        stopTokens.push(s);
      } else {
        throw new InvalidParamError(`stop[${i}] must be a string or a token id in [0, ${limits.vocabSize}), got ${describe(s)}`);
      }
    }
  }

  let topLogprobs = -1;
  if (o.logprobs === true) topLogprobs = 0;
  else if (o.logprobs === false || o.logprobs === undefined) topLogprobs = -1;
  else topLogprobs = checkInteger('logprobs', o.logprobs, 0, MAX_TOP_LOGPROBS);

  if (o.thinking !== undefined && typeof o.thinking !== 'boolean') {
    throw new InvalidParamError(`thinking must be a boolean, got ${describe(o.thinking)}`);
  }
  if (o.ignoreEos !== undefined && typeof o.ignoreEos !== 'boolean') {
    throw new InvalidParamError(`ignoreEos must be a boolean, got ${describe(o.ignoreEos)}`);
  }
  if (o.onChunk !== undefined && typeof o.onChunk !== 'function') {
    throw new InvalidParamError(`onChunk must be a function, got ${describe(o.onChunk)}`);
  }
  const tools = checkTools(o.tools);
  return {
    maxTokens: int('maxTokens', 512, 0, limits.maxTokens),
    temperature: num('temperature', 0.6, 0, 100),
    topK: int('topK', 0, 0, limits.vocabSize),
    topP: num('topP', 1, 0, 1, { minExclusive: true }),
    minP: num('minP', 0, 0, 1),
    repetitionPenalty: num('repetitionPenalty', 1, 0, 10, { minExclusive: true }),
    presencePenalty: num('presencePenalty', 0, -2, 2),
    frequencyPenalty: num('frequencyPenalty', 0, -2, 2),
    seed: int('seed', 0, 0, Number.MAX_SAFE_INTEGER),
    stopStrings,
    stopTokens,
    signal: checkSignal('signal', o.signal),
    thinking: o.thinking === undefined ? true : o.thinking,
    tools,
    topLogprobs,
    onChunk: o.onChunk as TextGenerateOptions['onChunk'],
    ignoreEos: o.ignoreEos === true,
    cacheNamespace: checkCacheNamespace(o.cacheNamespace),
    draftTokens: resolveSpeculativeGenerate(o.speculative),
    constraint: resolveConstraint(o, tools),
  };
}

export const MAX_CACHE_NAMESPACE_LENGTH = 256;

/** A prefix-cache namespace option: a string of at most 256 characters ('' when absent). */
export function checkCacheNamespace(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value !== 'string' || value.length > MAX_CACHE_NAMESPACE_LENGTH) {
    throw new InvalidParamError(`cacheNamespace must be a string of at most ${MAX_CACHE_NAMESPACE_LENGTH} characters, got ${describe(value)}`);
  }
  return value;
}

function checkTools(tools: unknown): ToolDefinition[] {
  if (tools === undefined) return [];
  if (!Array.isArray(tools)) throw new InvalidParamError(`tools must be an array, got ${describe(tools)}`);
  if (tools.length > MAX_TOOLS) throw new InvalidParamError(`tools holds ${tools.length} entries; the limit is ${MAX_TOOLS}`);
  const names = new Set<string>();
  return tools.map((t: unknown, i) => {
    const tool = t as ToolDefinition | null;
    if (!tool || typeof tool !== 'object' || tool.type !== 'function' || !tool.function || typeof tool.function !== 'object') {
      throw new InvalidParamError(`tools[${i}] must be {type: 'function', function: {name, description?, parameters?}}`);
    }
    const { name, parameters } = tool.function;
    if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
      throw new InvalidParamError(`tools[${i}].function.name must be 1-64 characters of A-Z a-z 0-9 _ . -`);
    }
    if (names.has(name)) throw new InvalidParamError(`tools[${i}]: duplicate function name "${name}"`);
    names.add(name);
    if (parameters !== undefined && (typeof parameters !== 'object' || parameters === null || Array.isArray(parameters))) {
      throw new InvalidParamError(`tools[${i}].function.parameters must be a JSON schema object`);
    }
    return tool;
  });
}
