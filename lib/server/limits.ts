// Request-shape checks shared by both dialects: field types, counts and sizes, each failing with a
// 400 that names the field. The library validates again behind these (ranges, template budgets);
// these exist so an HTTP client gets the request field's own name and a bound on work before any
// template or tokenizer runs.
import { badRequest } from './errors.js';
import type { ToolDefinition } from '../chat-template.js';

export interface RequestLimits {
  /** Largest request body in bytes (default 32 MiB: long agent transcripts exceed Fastify's 1 MiB). */
  bodyBytes: number;
  /** Most messages in one request (default 10,000). */
  messages: number;
  /** Largest max_tokens accepted (default 65,536); a smaller context clamps it further. */
  maxTokens: number;
  /** Largest total size of the tools' JSON (default 1 MiB). */
  toolSchemaBytes: number;
}

export const DEFAULT_LIMITS: RequestLimits = { bodyBytes: 32 * 1024 * 1024, messages: 10_000, maxTokens: 65_536, toolSchemaBytes: 1024 * 1024 };

const kind = (v: unknown) => (v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`);

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function requireObject(v: unknown, where: string): Record<string, unknown> {
  if (!isObject(v)) throw badRequest(`${where} must be an object, got ${kind(v)}`, where);
  return v;
}

export function optString(v: unknown, where: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw badRequest(`${where} must be a string, got ${kind(v)}`, where);
  return v;
}

export function optBool(v: unknown, where: string): boolean | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badRequest(`${where} must be a boolean, got ${kind(v)}`, where);
  return v;
}

export function optNumber(v: unknown, where: string, lo: number, hi: number): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw badRequest(`${where} must be a number, got ${kind(v)}`, where);
  if (v < lo || v > hi) throw badRequest(`${where} must be in [${lo}, ${hi}], got ${v}`, where);
  return v;
}

/** top_p: absent, or in (0, 1]. */
export function optTopP(v: unknown): number | undefined {
  const topP = optNumber(v, 'top_p', 0, 1);
  if (topP === 0) throw badRequest('top_p must be in (0, 1], got 0', 'top_p');
  return topP;
}

export function optInteger(v: unknown, where: string, lo: number, hi: number): number | undefined {
  const n = optNumber(v, where, lo, hi);
  if (n !== undefined && !Number.isInteger(n)) throw badRequest(`${where} must be an integer, got ${n}`, where);
  return n;
}

export function requireArray(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) throw badRequest(`${where} must be an array, got ${kind(v)}`, where);
  return v;
}

export function checkMessageCount(messages: unknown[], limits: RequestLimits, where = 'messages'): void {
  if (messages.length === 0) throw badRequest(`${where} must not be empty`, where);
  if (messages.length > limits.messages) throw badRequest(`${where} holds ${messages.length} messages; this server's limit is ${limits.messages}`, where);
}

export function checkMaxTokens(v: unknown, where: string, limits: RequestLimits, required: boolean): number | undefined {
  if (required && (v === undefined || v === null)) throw badRequest(`${where} is required`, where);
  return optInteger(v, where, 1, limits.maxTokens);
}

/**
 * Checks a tool's JSON schema enough that it is a schema: an object whose `type` (when present) is a
 * JSON-schema type name or a list of them, whose `properties` (when present) map names to objects and
 * whose `required` (when present) lists strings. Deeper meaning is the model's business.
 */
export function checkToolSchema(schema: unknown, where: string): Record<string, unknown> {
  if (!isObject(schema)) throw badRequest(`${where} must be a JSON schema object, got ${kind(schema)}`, where);
  const types = ['object', 'string', 'number', 'integer', 'boolean', 'array', 'null'];
  const t = schema.type;
  if (t !== undefined && !(typeof t === 'string' && types.includes(t)) && !(Array.isArray(t) && t.every((x) => typeof x === 'string' && types.includes(x)))) {
    throw badRequest(`${where}.type must be one of ${types.join(', ')} (or a list of them), got ${JSON.stringify(t)}`, where);
  }
  if (schema.properties !== undefined) {
    if (!isObject(schema.properties)) throw badRequest(`${where}.properties must be an object`, where);
    for (const [k, p] of Object.entries(schema.properties)) {
      if (!isObject(p) && typeof p !== 'boolean') throw badRequest(`${where}.properties.${k} must be a schema object`, where);
    }
  }
  if (schema.required !== undefined && !(Array.isArray(schema.required) && schema.required.every((x) => typeof x === 'string'))) {
    throw badRequest(`${where}.required must be an array of strings`, where);
  }
  return schema;
}

/** The tools' total JSON size against the limit (a bound on prompt size and template work). */
export function checkToolsSize(tools: readonly ToolDefinition[], limits: RequestLimits, where: string): void {
  const bytes = Buffer.byteLength(JSON.stringify(tools), 'utf8');
  if (bytes > limits.toolSchemaBytes) {
    throw badRequest(`${where} take ${bytes} bytes of JSON; this server's limit is ${limits.toolSchemaBytes}`, where);
  }
}

/** A tool name as the library accepts it (also what OpenAI allows). */
export function checkToolName(name: unknown, where: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw badRequest(`${where} must be 1-64 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(name)}`, where);
  }
  return name;
}

/** Deepest nesting a request body may have (the library's own bound on chat and tool JSON). */
export const MAX_BODY_DEPTH = 64;

/**
 * Rejects bodies nested deeper than MAX_BODY_DEPTH before anything recursive (JSON.stringify, the
 * template's input copy) walks them: a 32 MiB body of brackets would otherwise overflow the stack.
 * Iterative, so the check itself cannot.
 */
export function checkDepth(body: unknown): void {
  const stack: [unknown, number][] = [[body, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= MAX_BODY_DEPTH) throw badRequest(`the request body is nested deeper than ${MAX_BODY_DEPTH} levels`);
    for (const x of Array.isArray(v) ? v : Object.values(v)) if (typeof x === 'object' && x !== null) stack.push([x, depth + 1]);
  }
}
