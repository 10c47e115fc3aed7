// Constrained-decoding options of generate/stream (responseFormat, grammar, toolChoice): their shapes
// and the combinations that make sense, checked at the edge with messages that name the option.
import { InvalidParamError } from '../errors.js';
import { describe } from '../options.js';
import type { ToolDefinition } from '../text/tool-calls.js';

/** JSON Schema (draft 2020-12 subset: see the README's "Constrained decoding" section). */
export type JsonSchema = Record<string, unknown> | boolean;

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; schema: JsonSchema; name?: string };

/**
 * Which tools the model may call: 'auto' (default with tools: text or calls, calls always well-formed),
 * 'required' (at least one call), 'none' (no call), or { name } (exactly that function).
 */
export type ToolChoice = 'auto' | 'required' | 'none' | { name: string };

export type Constraint =
  | { kind: 'json_object' }
  | { kind: 'json_schema'; schema: JsonSchema; name: string | undefined }
  | { kind: 'grammar'; text: string };

export interface ResolvedConstraint {
  answer: Constraint | undefined;
  toolChoice: ToolChoice;
}

export const MAX_GRAMMAR_LENGTH = 256 * 1024;
export const MAX_SCHEMA_JSON_LENGTH = 256 * 1024;

export function resolveConstraint(o: Record<string, unknown>, tools: readonly ToolDefinition[]): ResolvedConstraint {
  let answer: Constraint | undefined;
  const rf = o.responseFormat;
  if (rf !== undefined) {
    if (!rf || typeof rf !== 'object' || Array.isArray(rf)) throw new InvalidParamError(`responseFormat must be an object, got ${describe(rf)}`);
    const f = rf as Record<string, unknown>;
    if (f.type === 'json_object') {
      answer = { kind: 'json_object' };
    } else if (f.type === 'json_schema') {
      const schema = f.schema;
      if (typeof schema !== 'boolean' && (!schema || typeof schema !== 'object' || Array.isArray(schema))) {
        throw new InvalidParamError(`responseFormat.schema must be a JSON Schema object, got ${describe(schema)}`);
      }
      if (f.name !== undefined && (typeof f.name !== 'string' || f.name.length > 64)) {
        throw new InvalidParamError('responseFormat.name must be a string of at most 64 characters');
      }
      const json = schemaJson(schema, 'responseFormat.schema');
      answer = { kind: 'json_schema', schema: JSON.parse(json) as JsonSchema, name: f.name as string | undefined };
    } else if (f.type !== 'text') {
      throw new InvalidParamError(`responseFormat.type must be 'text', 'json_object' or 'json_schema', got ${describe(f.type)}`);
    }
  }
  if (o.grammar !== undefined) {
    if (typeof o.grammar !== 'string' || o.grammar.trim().length === 0 || o.grammar.length > MAX_GRAMMAR_LENGTH) {
      throw new InvalidParamError(`grammar must be a non-empty GBNF string of at most ${MAX_GRAMMAR_LENGTH} characters`);
    }
    if (answer) throw new InvalidParamError('grammar and responseFormat cannot be used together');
    answer = { kind: 'grammar', text: o.grammar };
  }
  let toolChoice: ToolChoice = tools.length > 0 ? 'auto' : 'none';
  const tc = o.toolChoice;
  if (tc !== undefined) {
    if (tc === 'auto' || tc === 'required' || tc === 'none') {
      toolChoice = tc;
    } else if (tc && typeof tc === 'object' && !Array.isArray(tc) && typeof (tc as { name?: unknown }).name === 'string') {
      const name = (tc as { name: string }).name;
      if (!tools.some((t) => t.function.name === name)) throw new InvalidParamError(`toolChoice names "${name}", which is not one of the tools`);
      toolChoice = { name };
    } else {
      throw new InvalidParamError(`toolChoice must be 'auto', 'required', 'none' or { name }, got ${describe(tc)}`);
    }
    if (tools.length === 0 && toolChoice !== 'none' && toolChoice !== 'auto') {
      throw new InvalidParamError(`toolChoice ${JSON.stringify(tc)} needs tools`);
    }
  }
  if (answer && (toolChoice === 'required' || typeof toolChoice === 'object')) {
    throw new InvalidParamError('a forced tool call (toolChoice required or { name }) cannot be combined with responseFormat or grammar');
  }
  return { answer, toolChoice: tools.length > 0 ? toolChoice : 'none' };
}

/** The schema as JSON text (size-limited; functions, cycles and other non-JSON values refused). */
export function schemaJson(schema: unknown, what: string): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(schema);
  } catch (error) {
    throw new InvalidParamError(`${what} is not JSON-serialisable: ${(error as Error).message}`);
  }
  if (json === undefined) throw new InvalidParamError(`${what} is not JSON-serialisable`);
  if (json.length > MAX_SCHEMA_JSON_LENGTH) throw new InvalidParamError(`${what} is ${json.length} characters of JSON; the limit is ${MAX_SCHEMA_JSON_LENGTH}`);
  return json;
}
