// Every result produced under a schema is checked with ajv before it is returned: the grammar should
// make a mismatch impossible, so one is an engine bug and raised as an InternalError, never passed on.
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { InternalError } from '../errors.js';
import type { ParsedToolCall, ToolDefinition } from '../text/tool-calls.js';
import type { JsonSchema, ResolvedConstraint } from './options.js';

// ajv-formats is CommonJS with a default export; under NodeNext it arrives as the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

let ajv: Ajv | undefined;
const compiled = new Map<string, ValidateFunction>();
const MAX_COMPILED = 256;

function validator(schema: JsonSchema): ValidateFunction {
  const key = JSON.stringify(schema);
  let v = compiled.get(key);
  if (!v) {
    if (!ajv) ajv = addFormats(new Ajv({ strict: false, allErrors: false, validateFormats: true }));
    v = ajv.compile(schema);
    if (compiled.size >= MAX_COMPILED) compiled.delete(compiled.keys().next().value!);
    compiled.set(key, v);
  }
  return v;
}

function check(schema: JsonSchema, value: unknown, what: string): void {
  const v = validator(schema);
  if (!v(value)) {
    const first = v.errors?.[0];
    throw new InternalError(`constrained decoding produced ${what} that does not match its schema (${first?.instancePath || '/'} ${first?.message ?? ''}); this is a glm-node bug`);
  }
}

/**
 * Checks a complete constrained output: the answer text against responseFormat, every tool call
 * against its tool's parameters. `complete`: the grammar reached its end (not cut by maxTokens or a stop string).
 */
export function validateConstrainedOutput(c: ResolvedConstraint, tools: readonly ToolDefinition[], text: string, toolCalls: readonly ParsedToolCall[], complete: boolean): void {
  if (!complete) return;
  if (toolCalls.length === 0 && c.answer && (c.answer.kind === 'json_schema' || c.answer.kind === 'json_object')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new InternalError(`constrained decoding produced text that is not JSON (${(error as Error).message}); this is a glm-node bug`);
    }
    check(c.answer.kind === 'json_object' ? { type: 'object' } : c.answer.schema, value, 'JSON');
  }
  if (c.toolChoice === 'none') {
    if (toolCalls.length > 0) throw new InternalError('constrained decoding produced a tool call with toolChoice "none"; this is a glm-node bug');
    return;
  }
  for (const call of toolCalls) {
    if (call.errors.length > 0) throw new InternalError(`constrained decoding produced a malformed tool call (${call.errors[0]}); this is a glm-node bug`);
    const tool = tools.find((t) => t.function.name === call.name);
    if (!tool) throw new InternalError(`constrained decoding produced a call of unknown tool "${call.name}"; this is a glm-node bug`);
    check((tool.function.parameters ?? {}) as JsonSchema, call.arguments, `arguments for "${call.name}"`);
  }
  if ((c.toolChoice === 'required' || typeof c.toolChoice === 'object') && toolCalls.length === 0) {
    throw new InternalError('constrained decoding ended without the required tool call; this is a glm-node bug');
  }
}
