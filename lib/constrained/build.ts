// The grammar of a constrained generation, composed as GBNF text: GLM's free-text thinking first (chat
// input in thinking mode; the constraint applies after </think>), then the answer (a JSON Schema's
// rules, any JSON object, or the user's grammar) and/or tool calls in GLM's format, whose arguments
// follow each tool's parameter schema.
import { InvalidParamError } from '../errors.js';
import type { ToolDefinition } from '../text/tool-calls.js';
import { gbnfLiteral, gbnfToken, renameRule } from './gbnf.js';
import type { Constraint, JsonSchema, ResolvedConstraint } from './options.js';
import { schemaJson } from './options.js';

/** The markup token ids of GLM's chat format (undefined where the tokenizer lacks one). */
export interface MarkupTokens {
  think?: number | undefined;
  endThink?: number | undefined;
  toolCall?: number | undefined;
  endToolCall?: number | undefined;
  argKey?: number | undefined;
  endArgKey?: number | undefined;
  argValue?: number | undefined;
  endArgValue?: number | undefined;
}

export interface GrammarContext {
  /** The prompt was rendered from chat messages (the model answers after "\n", possibly thinking first). */
  chat: boolean;
  thinking: boolean;
  tokens: MarkupTokens;
  /** JSON Schema → GBNF (the native compiler). */
  schemaToGbnf: (schemaJson: string, rulePrefix: string) => string;
}

/** GBNF for the generation, or undefined when nothing constrains it. */
export function buildGrammar(c: ResolvedConstraint, tools: readonly ToolDefinition[], ctx: GrammarContext): string | undefined {
  if (!c.answer && tools.length === 0) return undefined;
  const rules: string[] = [];
  let answer: string | undefined;
  if (c.answer) {
    const a = answerRules(c.answer, ctx);
    rules.push(...a.rules);
    answer = a.start;
  }
  let body: string;
  if (tools.length === 0 || c.toolChoice === 'none') {
    body = answer ?? 'glm-free';  // toolChoice 'none': text only (the call token is not text)
  } else {
    rules.push(...toolRules(tools, c.toolChoice, ctx));
    if (c.toolChoice === 'auto') body = answer ? `( ${answer} | glm-calls )` : 'glm-free glm-calls?';
    else body = 'glm-calls';
  }
  const t = ctx.tokens;
  const head: string[] = [];
  if (ctx.chat && ctx.thinking && t.think !== undefined && t.endThink !== undefined) {
    // Thinking stays free text; the answer starts after </think> (and GLM's newline).
    head.push(`root ::= glm-think? "\\n"? ${body}`, `glm-think ::= "\\n"? ${gbnfToken(t.think)} glm-free ${gbnfToken(t.endThink)}`);
  } else {
    head.push(`root ::= ${ctx.chat ? '"\\n"? ' : ''}${body}`);
  }
  // The user's grammar comes first so its line numbers stay those of the error messages.
  const user = c.answer?.kind === 'grammar' ? rules.shift()! : undefined;
  return [...(user ? [user] : []), ...head, ...rules, 'glm-free ::= .*'].join('\n') + '\n';
}

function answerRules(a: Constraint, ctx: GrammarContext): { start: string; rules: string[] } {
  // The user's root becomes "glm-": as long as "root", so the columns of compile errors stay right.
  if (a.kind === 'grammar') return { start: 'glm-', rules: [renameRule(a.text, 'root', 'glm-')] };
  const schema: JsonSchema = a.kind === 'json_object' ? { type: 'object' } : a.schema;
  return { start: 'glm-s-root', rules: [ctx.schemaToGbnf(schemaJson(schema, 'responseFormat.schema'), 'glm-s-')] };
}

function toolRules(tools: readonly ToolDefinition[], choice: ResolvedConstraint['toolChoice'], ctx: GrammarContext): string[] {
  const t = ctx.tokens;
  if ([t.toolCall, t.endToolCall, t.argKey, t.endArgKey, t.argValue, t.endArgValue].some((x) => x === undefined)) {
    throw new InvalidParamError("toolChoice: this model's tokenizer lacks GLM's tool-call tokens (<tool_call>, <arg_key>, ...)");
  }
  const rules: string[] = [];
  const calls: string[] = [];
  tools.forEach((tool, i) => {
    if (typeof choice === 'object' && tool.function.name !== choice.name) return;
    const name = `glm-call-${i}`;
    calls.push(name);
    const args = argumentRules(tool, i, ctx);
    rules.push(...args.rules);
    rules.push(`${name} ::= ${gbnfToken(t.toolCall!)} ${gbnfLiteral(tool.function.name)} "\\n" ${args.sequence} ${gbnfToken(t.endToolCall!)}`);
  });
  rules.push(`glm-call ::= ${calls.join(' | ')}`);
  // One call for a named tool; otherwise one or more, each after GLM's newline.
  rules.push(typeof choice === 'object' ? 'glm-calls ::= glm-call' : 'glm-calls ::= glm-call ( "\\n"? glm-call )*');
  return rules;
}

const STRING_ARGUMENT_KEYWORDS = new Set(['type', 'title', 'description', 'default', 'examples', 'minLength', 'maxLength', 'enum', 'const', '$comment', 'deprecated']);

// GLM writes a tool's arguments as <arg_key>K</arg_key>\n<arg_value>V</arg_value>\n pairs: string
// values raw, everything else JSON (spec §6). Arguments follow the schema's property order; required
// ones must appear, others may be left out; undeclared arguments are not allowed.
function argumentRules(tool: ToolDefinition, index: number, ctx: GrammarContext): { sequence: string; rules: string[] } {
  const t = ctx.tokens;
  const where = `tools[${index}].function.parameters`;
  const params = (tool.function.parameters ?? {}) as Record<string, unknown>;
  for (const k of ['anyOf', 'oneOf', 'allOf', 'not', 'if', 'patternProperties', '$ref']) {
    if (params[k] !== undefined) throw new InvalidParamError(`${where}: unsupported JSON Schema keyword '${k}' for constrained tool arguments`);
  }
  const properties = (params.properties && typeof params.properties === 'object' ? params.properties : {}) as Record<string, unknown>;
  const required = new Set(Array.isArray(params.required) ? (params.required as unknown[]).filter((x): x is string => typeof x === 'string') : []);
  for (const r of required) {
    if (!Object.prototype.hasOwnProperty.call(properties, r)) throw new InvalidParamError(`${where}: required argument "${r}" has no schema in properties`);
  }
  const defs: Record<string, unknown> = {};
  if (params.$defs !== undefined) defs.$defs = params.$defs;
  if (params.definitions !== undefined) defs.definitions = params.definitions;
  const rules: string[] = [];
  const parts: string[] = [];
  Object.entries(properties).forEach(([key, schema], j) => {
    const value = `glm-t${index}-a${j}`;
    rules.push(...valueRules(schema, value, defs, `${where}.properties.${key}`, ctx));
    const pair = `${gbnfToken(t.argKey!)} ${gbnfLiteral(key)} ${gbnfToken(t.endArgKey!)} "\\n" ${gbnfToken(t.argValue!)} ${value} ${gbnfToken(t.endArgValue!)} "\\n"`;
    parts.push(required.has(key) ? pair : `( ${pair} )?`);
  });
  return { sequence: parts.length ? parts.join(' ') : '""', rules };
}

function valueRules(schema: unknown, name: string, defs: Record<string, unknown>, where: string, ctx: GrammarContext): string[] {
  const s = schema && typeof schema === 'object' && !Array.isArray(schema) ? (schema as Record<string, unknown>) : undefined;
  if (s && s.type === 'string') {
    // A raw string: any text, or one of the listed values.
    for (const k of Object.keys(s)) {
      if (!STRING_ARGUMENT_KEYWORDS.has(k)) throw new InvalidParamError(`${where}: unsupported JSON Schema keyword '${k}' for a string tool argument`);
    }
    if (s.const !== undefined || s.enum !== undefined) {
      const values = s.const !== undefined ? [s.const] : Array.isArray(s.enum) ? s.enum : [];
      if (values.length === 0 || !values.every((v) => typeof v === 'string')) throw new InvalidParamError(`${where}: enum/const of a string argument must list strings`);
      return [`${name} ::= ${(values as string[]).map(gbnfLiteral).join(' | ')}`];
    }
    const min = typeof s.minLength === 'number' ? s.minLength : 0;
    const max = typeof s.maxLength === 'number' ? s.maxLength : undefined;
    if (!Number.isInteger(min) || min < 0 || (max !== undefined && (!Number.isInteger(max) || max < min))) {
      throw new InvalidParamError(`${where}: minLength/maxLength must be integers with minLength <= maxLength`);
    }
    return [`${name} ::= .{${min},${max ?? ''}}`];
  }
  const withDefs = s ? { ...defs, ...s } : schema;
  return [ctx.schemaToGbnf(schemaJson(withDefs, where), `${name}-`), `${name} ::= ${name}-root`];
}
