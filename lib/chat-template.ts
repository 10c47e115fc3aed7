// Renders a checkpoint's Jinja chat template (spec §6.3) with @huggingface/jinja, which follows HF
// transformers' semantics: trim_blocks and lstrip_blocks on, one trailing newline of the template
// dropped, tojson with Python's separators. The template is hostile input (RELIABILITY A12), so it runs
// in the library's interpreter (its own value types: no attribute or prototype access to host
// objects), on JSON-only copies of the inputs, with a step budget, a wall-clock budget, a cap on every
// string and list it builds, and a capped range().

import * as jinja from '@huggingface/jinja';
import { InvalidParamError, TemplateError } from './errors.js';
import type { Tokenizer } from './tokenizer.js';

// The package's .d.ts files use extension-less relative imports, which NodeNext resolution cannot
// follow, so its classes arrive untyped; these are the parts used here.
interface JinjaValue { type: string; value: unknown }
interface JinjaEnvironment { set(name: string, value: unknown): unknown }
type JinjaProgram = { type: 'Program' };
interface JinjaInterpreter {
  run(program: JinjaProgram): JinjaValue;
  evaluate(statement: unknown, environment: unknown): JinjaValue;
}
const Environment = jinja.Environment as unknown as new () => JinjaEnvironment;
const Interpreter = jinja.Interpreter as unknown as new (env: JinjaEnvironment) => JinjaInterpreter;
const parse = jinja.parse as unknown as (tokens: unknown) => JinjaProgram;
const tokenize = jinja.tokenize as unknown as (source: string, options: { lstrip_blocks: boolean; trim_blocks: boolean }) => unknown;

/** A JSON value, as tool schemas and tool-call arguments are. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
/** A JSON Schema object (not validated here; it is shown to the model as JSON). */
export type JSONSchema = { [key: string]: JsonValue };

/** One part of OpenAI-style multi-part content; only text parts reach the prompt. */
export interface TextContentPart { type: 'text'; text: string }
export type ChatContent = string | readonly (TextContentPart | string)[];

export interface ToolCall {
  type?: 'function';
  /** OpenAI call id; the GLM template does not show it. */
  id?: string;
  function: {
    name: string;
    /** An object, or its JSON text (OpenAI's shape), which is parsed and must be an object. */
    arguments: { [key: string]: JsonValue } | string;
  };
}

export type ChatMessage =
  | { role: 'system'; content: ChatContent }
  | { role: 'user'; content: ChatContent }
  | {
    role: 'assistant';
    content?: ChatContent | null;
    /** The turn's thinking; shown again only for assistant turns after the last user message. */
    reasoning_content?: string | null;
    tool_calls?: readonly ToolCall[];
  }
  | {
    role: 'tool';
    /** The tool's result. A list of text parts is joined into one string; GLM's template also accepts a list of results. */
    content: ChatContent | readonly ({ output: JsonValue } | string)[];
    tool_call_id?: string;
    name?: string;
  };

export interface ToolDefinition {
  type: 'function';
  function: { name: string; description?: string; parameters: JSONSchema };
}

export interface RenderChatOptions {
  tools?: readonly ToolDefinition[];
  /** End with the assistant header so the model writes the next turn. Default false. */
  addGenerationPrompt?: boolean;
  /**
   * Passed to the template as `enable_thinking`; undefined leaves it undefined (GLM: thinking on).
   * false makes GLM's template append `/nothink` to user turns and an empty think block to the prompt.
   */
  enableThinking?: boolean;
  /** Longest string (output or intermediate) the template may build, in UTF-16 units. Default 16 Mi. */
  maxOutputChars?: number;
  /**
   * Interpreter steps (AST node evaluations). Default 100,000 + 1,000 per message and per tool: GLM's
   * template takes ~40 steps per message, and the interpreter runs roughly 0.25-1.3 M steps/s, so a
   * runaway template stops within about half a second for a short conversation.
   */
  maxSteps?: number;
  /** Wall-clock budget in ms. Default 2000. */
  timeoutMs?: number;
}

const MAX_TEMPLATE_CHARS = 1024 * 1024;
/** Longest list the template may build, and the longest range() (real templates loop over messages). */
const MAX_LIST_ITEMS = 1_000_000;
const MAX_RANGE = 100_000;
/** Input JSON limits: nesting depth (deep nesting would overflow the interpreter's recursion). */
const MAX_INPUT_DEPTH = 64;

class BudgetExceeded extends Error {}
class TemplateRaised extends Error {}

/**
 * Counts every AST node evaluation and checks every string or list produced. The library evaluates
 * recursively through `evaluate`, so this override sees loop bodies, macro calls and filters alike.
 */
class BudgetedInterpreter extends Interpreter {
  #steps = 0;
  readonly #maxSteps: number;
  readonly #maxChars: number;
  readonly #deadline: number;
  constructor(env: JinjaEnvironment, maxSteps: number, maxChars: number, timeoutMs: number) {
    super(env);
    this.#maxSteps = maxSteps;
    this.#maxChars = maxChars;
    this.#deadline = performance.now() + timeoutMs;
  }
  override evaluate(statement: unknown, environment: unknown): JinjaValue {
    const steps = ++this.#steps;
    if (steps > this.#maxSteps) throw new BudgetExceeded(`the template exceeded its budget of ${this.#maxSteps} steps`);
    if ((steps & 1023) === 0 && performance.now() > this.#deadline) throw new BudgetExceeded('the template exceeded its time budget');
    const v = super.evaluate(statement, environment);
    const value: unknown = v.value;
    if (typeof value === 'string' && value.length > this.#maxChars) {
      throw new BudgetExceeded(`the template built a string of ${value.length} characters, over the limit of ${this.#maxChars}`);
    }
    if (Array.isArray(value) && value.length > MAX_LIST_ITEMS) {
      throw new BudgetExceeded(`the template built a list of ${value.length} items, over the limit of ${MAX_LIST_ITEMS}`);
    }
    return v;
  }
}

/** range() as in Python, refusing results longer than MAX_RANGE before allocating them. */
function cappedRange(start: unknown, stop?: unknown, step: unknown = 1): number[] {
  let a = start, b = stop;
  if (b === undefined) { b = a; a = 0; }
  if (![a, b, step].every((x) => typeof x === 'number' && Number.isInteger(x))) throw new TemplateRaised('range() takes integers');
  const [lo, hi, st] = [a, b, step] as [number, number, number];
  if (st === 0) throw new TemplateRaised('range() step must not be zero');
  const n = Math.max(0, Math.ceil((hi - lo) / st));
  if (n > MAX_RANGE) throw new BudgetExceeded(`range() of ${n} items is over the limit of ${MAX_RANGE}`);
  return Array.from({ length: n }, (_, i) => lo + i * st);
}

// Parsed templates by source: parsing is most of the cost of a short render and a model has one template.
const parsedCache = new Map<string, JinjaProgram>();

function compile(template: string): JinjaProgram {
  const hit = parsedCache.get(template);
  if (hit) return hit;
  if (template.length > MAX_TEMPLATE_CHARS) throw new TemplateError(`the chat template is ${template.length} characters, over the limit of ${MAX_TEMPLATE_CHARS}`);
  let program: JinjaProgram;
  try {
    program = parse(tokenize(template, { lstrip_blocks: true, trim_blocks: true }));
  } catch (e) {
    throw new TemplateError(`the chat template does not parse: ${(e as Error).message}`, { cause: e });
  }
  if (parsedCache.size >= 8) parsedCache.delete(parsedCache.keys().next().value!);
  parsedCache.set(template, program);
  return program;
}

/**
 * A JSON-only deep copy: the template sees no functions, class instances, getters or prototypes of
 * caller objects, and nesting is bounded. Non-JSON values → InvalidParamError naming the path.
 */
function toJson(x: unknown, where: string, depth = 0): JsonValue {
  if (depth > MAX_INPUT_DEPTH) throw new InvalidParamError(`${where} is nested deeper than ${MAX_INPUT_DEPTH} levels`);
  if (x === null || typeof x === 'string' || typeof x === 'boolean') return x;
  if (typeof x === 'number') {
    if (!Number.isFinite(x)) throw new InvalidParamError(`${where} is ${x}, which JSON cannot hold`);
    return x;
  }
  if (Array.isArray(x)) return x.map((v, i) => toJson(v, `${where}[${i}]`, depth + 1));
  if (typeof x === 'object') {
    const proto = Object.getPrototypeOf(x);
    if (proto !== Object.prototype && proto !== null) throw new InvalidParamError(`${where} must be a plain object`);
    const out: { [key: string]: JsonValue } = {};
    for (const [k, v] of Object.entries(x)) {
      if (v === undefined) continue; // as JSON.stringify drops it
      out[k] = toJson(v, `${where}.${k}`, depth + 1);
    }
    return out;
  }
  throw new InvalidParamError(`${where} has a ${typeof x}, which is not JSON`);
}

function checkContent(c: unknown, where: string, role: string): void {
  if (typeof c === 'string') return;
  // GLM's template also takes a tool message's content as a list of results ({output} objects or strings).
  if (role === 'tool' && Array.isArray(c) && !c.every((p) => typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'text')) return;
  if (Array.isArray(c)) {
    c.forEach((p, i) => {
      if (typeof p === 'string') return;
      if (typeof p !== 'object' || p === null || typeof (p as { type?: unknown }).type !== 'string') {
        throw new InvalidParamError(`${where}[${i}] must be a string or a content part with a "type"`);
      }
      if ((p as { type: string }).type === 'text' && typeof (p as { text?: unknown }).text !== 'string') {
        throw new InvalidParamError(`${where}[${i}].text must be a string`);
      }
    });
    return;
  }
  throw new InvalidParamError(`${where} must be a string or an array of content parts`);
}

const textOf = (c: ChatContent): string =>
  typeof c === 'string' ? c : c.map((p) => (typeof p === 'string' ? p : p.type === 'text' ? p.text : '')).join('');

/**
 * Brings OpenAI-shaped messages to what chat templates expect (as vLLM does before rendering):
 * null/missing assistant content becomes '' (Jinja would print "None"), tool-call arguments given as
 * JSON text are parsed to objects (templates iterate `arguments.items()`), and tool results given as
 * text parts are joined into one string.
 */
function prepareMessages(messages: unknown): JsonValue[] {
  if (!Array.isArray(messages)) throw new InvalidParamError('messages must be an array');
  return messages.map((m: unknown, i) => {
    const where = `messages[${i}]`;
    if (typeof m !== 'object' || m === null) throw new InvalidParamError(`${where} must be an object`);
    const msg = { ...(m as Record<string, unknown>) };
    const role = msg['role'];
    if (role !== 'system' && role !== 'user' && role !== 'assistant' && role !== 'tool') {
      throw new InvalidParamError(`${where}.role must be 'system', 'user', 'assistant' or 'tool', got ${JSON.stringify(role)}`);
    }
    if (role === 'assistant') {
      if (msg['content'] === null || msg['content'] === undefined) msg['content'] = '';
      if (msg['reasoning_content'] === null) delete msg['reasoning_content'];
      if (msg['reasoning_content'] !== undefined && typeof msg['reasoning_content'] !== 'string') {
        throw new InvalidParamError(`${where}.reasoning_content must be a string`);
      }
      const calls = msg['tool_calls'];
      if (calls === null || (Array.isArray(calls) && calls.length === 0)) delete msg['tool_calls'];
      else if (calls !== undefined) {
        if (!Array.isArray(calls)) throw new InvalidParamError(`${where}.tool_calls must be an array`);
        msg['tool_calls'] = calls.map((tc: unknown, j) => {
          const w = `${where}.tool_calls[${j}]`;
          const fn = (tc as { function?: unknown } | null)?.function;
          if (typeof fn !== 'object' || fn === null) throw new InvalidParamError(`${w}.function must be an object`);
          const { name, arguments: args } = fn as { name?: unknown; arguments?: unknown };
          if (typeof name !== 'string' || name.length === 0) throw new InvalidParamError(`${w}.function.name must be a non-empty string`);
          let parsed: unknown = args ?? {};
          if (typeof parsed === 'string') {
            try { parsed = parsed.trim() === '' ? {} : JSON.parse(parsed); } catch (e) {
              throw new InvalidParamError(`${w}.function.arguments is not valid JSON: ${(e as Error).message}`, { cause: e });
            }
          }
          if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
            throw new InvalidParamError(`${w}.function.arguments must be a JSON object`);
          }
          return { ...(tc as object), function: { ...(fn as object), name, arguments: parsed } };
        });
      }
    }
    checkContent(msg['content'], `${where}.content`, role);
    if (role === 'tool' && Array.isArray(msg['content']) && msg['content'].every((p: unknown) => (p as { type?: unknown }).type === 'text')) {
      msg['content'] = textOf(msg['content'] as ChatContent);
    }
    return toJson(msg, where);
  });
}

/**
 * Renders `messages` with a chat template. The result is text for `Tokenizer.encode(…, { special: true })`.
 * Errors: malformed messages/tools → InvalidParamError; a template that does not parse, fails,
 * calls raise_exception or runs over its budgets → TemplateError.
 */
export function renderChat(template: string, messages: ChatMessage[], opts: RenderChatOptions = {}): string {
  return render(template, messages, opts, undefined);
}

/** Applies `f` to every string and object key of a JSON value. */
function mapStrings(x: JsonValue, f: (s: string) => string): JsonValue {
  if (typeof x === 'string') return f(x);
  if (Array.isArray(x)) return x.map((v) => mapStrings(v, f));
  if (x !== null && typeof x === 'object') {
    const out: { [key: string]: JsonValue } = {};
    for (const [k, v] of Object.entries(x)) out[f(k)] = mapStrings(v, f);
    return out;
  }
  return x;
}

function render(template: string, messages: ChatMessage[], opts: RenderChatOptions, escape: ((s: string) => string) | undefined): string {
  if (typeof template !== 'string') throw new InvalidParamError('template must be a string');
  const maxChars = opts.maxOutputChars ?? 16 * 1024 * 1024;
  const inputs = (Array.isArray(messages) ? messages.length : 0) + (Array.isArray(opts.tools) ? opts.tools.length : 0);
  const maxSteps = opts.maxSteps ?? 100_000 + 1_000 * inputs;
  const timeoutMs = opts.timeoutMs ?? 2000;
  for (const [k, v] of [['maxOutputChars', maxChars], ['maxSteps', maxSteps], ['timeoutMs', timeoutMs]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new InvalidParamError(`${k} must be a positive integer, got ${String(v)}`);
  }
  const program = compile(template);
  let msgs = prepareMessages(messages);
  if (escape) msgs = msgs.map((m) => mapStrings(m, escape));
  let tools: JsonValue | undefined;
  if (opts.tools !== undefined) {
    if (!Array.isArray(opts.tools)) throw new InvalidParamError('tools must be an array');
    opts.tools.forEach((t: unknown, i) => {
      const fn = (t as { function?: { name?: unknown } } | null)?.function;
      if (typeof fn !== 'object' || fn === null || typeof fn.name !== 'string' || fn.name.length === 0) {
        throw new InvalidParamError(`tools[${i}].function.name must be a non-empty string`);
      }
    });
    tools = toJson(opts.tools, 'tools');
    if (escape) tools = mapStrings(tools, escape);
  }

  const env = new Environment();
  env.set('false', false);
  env.set('true', true);
  env.set('none', null);
  env.set('False', false);
  env.set('True', true);
  env.set('None', null);
  env.set('raise_exception', (message: unknown) => { throw new TemplateRaised(String(message)); });
  env.set('range', cappedRange);
  env.set('messages', msgs);
  // HF passes tools only when given; an empty list stays falsy in the template.
  if (tools !== undefined) env.set('tools', tools);
  env.set('add_generation_prompt', opts.addGenerationPrompt ?? false);
  if (opts.enableThinking !== undefined) env.set('enable_thinking', opts.enableThinking);

  try {
    const out = new BudgetedInterpreter(env, maxSteps, maxChars, timeoutMs).run(program).value;
    if (typeof out !== 'string') throw new TemplateError('the template did not render to a string');
    return out;
  } catch (e) {
    if (e instanceof TemplateError) throw e;
    if (e instanceof BudgetExceeded) throw new TemplateError(e.message, { cause: e });
    if (e instanceof TemplateRaised) throw new TemplateError(`the template raised an exception: ${e.message}`, { cause: e });
    // Library errors, and RangeError/stack overflow from a pathological template.
    throw new TemplateError(`the template failed: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

// ---------------------------------------------------------------------------------------------
// Rendering straight to tokens without role injection (RELIABILITY C7).
//
// Encoding renderChat's text with special: true would turn `<|user|>` typed by a user (or returned by
// a tool) into the real role token. Instead every caller-provided string (contents, reasoning, tool
// arguments and names, tool definitions, object keys) has each occurrence of a *special* added token
// prefixed with MARK before rendering, and MARK itself doubled. The template's string operations
// (strip, endswith, split on </think>) see the same text apart from these non-whitespace marks. The
// rendered text is then encoded piecewise: template text with special tokens, marked occurrences as
// plain text, MARK MARK as one literal MARK. Non-special added tokens (<think>, tool-call markup,
// /nothink) are not marked: they carry no role, GLM relies on them inside assistant history, and a
// user typing /nothink is the documented way to switch thinking off (spec §6.3).

/** A Unicode noncharacter: never assigned, so real text almost never holds it (and when it does, doubling keeps it). */
const MARK = '\uFDD0';

export interface ChatTokens {
  /** The prompt text, identical to what renderChat returns. */
  text: string;
  /** Its token ids: special tokens only where the template wrote them. */
  tokens: number[];
}

/**
 * Renders `messages` with `template` and tokenizes the result so that special-token text inside
 * caller-provided strings stays plain text, while the template's own `[gMASK]`, `<|user|>`, … become
 * special tokens. Same options and errors as renderChat.
 */
export function renderChatTokens(tokenizer: Tokenizer, template: string, messages: ChatMessage[], opts: RenderChatOptions = {}): ChatTokens {
  const specials = tokenizer.addedTokens.filter((t) => t.special).map((t) => t.content)
    .sort((a, b) => b.length - a.length || (a < b ? -1 : 1)); // longest first: leftmost-longest match
  const esc = (s: string) => s.replace(/[\^$\\.*+?()[\]{}|\/]/g, '\\$&');
  const find = specials.length > 0 ? new RegExp(`${MARK}|${specials.map(esc).join('|')}`, 'gu') : new RegExp(MARK, 'gu');
  const escape = (s: string) => s.replace(find, (m) => (m === MARK ? MARK + MARK : MARK + m));
  const marked = render(template, messages, opts, escape);

  const tokens: number[] = [];
  // A loop, not push(...ids): spreading a large prompt's ids would overflow the call stack.
  const add = (ids: number[]) => { for (const id of ids) tokens.push(id); };
  let text = '';
  let pos = 0;
  for (let at = marked.indexOf(MARK); at >= 0; at = marked.indexOf(MARK, pos)) {
    const before = marked.slice(pos, at);
    add(tokenizer.encode(before, { special: true }));
    text += before;
    const rest = marked.slice(at + 1);
    const literal = rest.startsWith(MARK) ? MARK : specials.find((sp) => rest.startsWith(sp));
    if (literal === undefined) {
      // A MARK the escaping did not write (the template's own text): keep it as a character.
      add(tokenizer.encode(MARK));
      text += MARK;
      pos = at + 1;
      continue;
    }
    add(tokenizer.encode(literal)); // plain text
    text += literal;
    pos = at + 1 + literal.length;
  }
  const tail = marked.slice(pos);
  add(tokenizer.encode(tail, { special: true }));
  text += tail;
  return { text, tokens };
}
