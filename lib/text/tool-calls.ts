// GLM-4.5 tool-call bodies → {name, arguments}. The model writes
//   <tool_call>NAME\n<arg_key>K</arg_key>\n<arg_value>V</arg_value>\n…</tool_call>
// with string values raw and every other value as JSON (spec §6.3). Values are typed by the tool's
// JSON schema; anything that does not fit is reported in `errors`, never dropped silently.

import type { JSONSchema, ToolDefinition } from '../chat-template.js';

export type { ToolDefinition };

export interface ParsedToolCall {
  /** Unique within one generation: call_0, call_1, … */
  id: string;
  name: string;
  arguments: Record<string, unknown>;
  /** The text between <tool_call> and </tool_call>, as the model wrote it. */
  raw: string;
  /** Problems found while parsing (unknown tool, unterminated call, a value that is not valid JSON, …). */
  errors: string[];
}

const PAIR = /<arg_key>([\s\S]*?)<\/arg_key>\s*<arg_value>([\s\S]*?)<\/arg_value>/g;

function wantsString(schema: unknown): boolean | undefined {
  const type = (schema as { type?: unknown } | null)?.type;
  if (type === undefined) return undefined;
  const types = Array.isArray(type) ? type : [type];
  if (types.length === 1) return types[0] === 'string';
  return undefined;  // a union: decide by the value
}

function propertiesOf(schema: JSONSchema | undefined): Record<string, unknown> {
  const p = (schema as { properties?: unknown } | undefined)?.properties;
  return p && typeof p === 'object' && !Array.isArray(p) ? (p as Record<string, unknown>) : {};
}

// Model-written keys are data: "__proto__" must become an own property, not a prototype change.
function setOwn(o: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(o, key, { value, enumerable: true, writable: true, configurable: true });
}

/** Parses one tool-call body (without the <tool_call> / </tool_call> markers). */
export function parseToolCall(body: string, index: number, tools: readonly ToolDefinition[], terminated: boolean): ParsedToolCall {
  const errors: string[] = [];
  if (!terminated) errors.push('the model stopped inside this tool call (no </tool_call>)');
  const firstKey = body.indexOf('<arg_key>');
  const name = (firstKey >= 0 ? body.slice(0, firstKey) : body).trim();
  if (!name) errors.push('the tool call has no function name');
  const tool = tools.find((t) => t.function.name === name);
  if (name && tools.length > 0 && !tool) errors.push(`unknown tool "${name}"`);
  const properties = propertiesOf(tool?.function.parameters);

  const args: Record<string, unknown> = {};
  let consumed = firstKey >= 0 ? firstKey : body.length;
  PAIR.lastIndex = 0;
  for (let m = PAIR.exec(body); m; m = PAIR.exec(body)) {
    if (body.slice(consumed, m.index).trim()) errors.push(`unexpected text before argument "${m[1]!.trim()}"`);
    consumed = m.index + m[0].length;
    const key = m[1]!.trim();
    const rawValue = m[2]!;
    if (Object.prototype.hasOwnProperty.call(args, key)) errors.push(`argument "${key}" appears twice; the last one is kept`);
    const asString = wantsString(Object.prototype.hasOwnProperty.call(properties, key) ? properties[key] : undefined);
    if (asString === true) {
      setOwn(args, key, rawValue);  // strings are written raw, unescaped
      continue;
    }
    const trimmed = rawValue.trim();
    try {
      setOwn(args, key, JSON.parse(trimmed));
    } catch {
      setOwn(args, key, rawValue);
      // With no schema type a bare word is simply a string; a declared non-string type is a mismatch.
      if (asString === false) errors.push(`argument "${key}" should be ${JSON.stringify((properties[key] as { type?: unknown }).type)} but is not valid JSON`);
    }
  }
  if (body.slice(consumed).trim()) errors.push('unparsed text after the last argument');
  return { id: `call_${index}`, name, arguments: args, raw: body, errors };
}
