// Anthropic Messages routes: POST /v1/messages and /v1/messages/count_tokens, as Claude Code and the
// @anthropic-ai/sdk use them. Content blocks are mapped onto the library's chat messages (thinking →
// reasoning_content, tool_use → tool_calls, tool_result → tool messages); the stream follows
// Anthropic's event sequence (message_start, content blocks, message_delta, message_stop, pings).
import { createHash, randomBytes, randomInt } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ChatMessage, ToolCall, ToolDefinition } from '../chat-template.js';
import type { TextGenerateResult } from '../generation.js';
import type { TextGenerateOptions } from '../generate-options.js';
import { buildPrompt } from '../prompt.js';
import { badRequest, errorBody } from './errors.js';
import {
  checkMaxTokens, checkMessageCount, checkToolName, checkToolSchema, checkToolsSize, isObject, optBool, optInteger, optNumber, optTopP,
  optString, requireArray, requireObject, type RequestLimits,
} from './limits.js';
import { responseHeaders, type RouteSettings } from './openai.js';
import { Run, type ServerContext } from './run.js';
import { SseWriter } from './sse.js';
import { pumpStream } from './stream.js';

const hex = (n: number) => randomBytes(n).toString('hex');

/**
 * Claude Code (since 2.1.36) puts `x-anthropic-billing-header: …; cch=<nonce>;` at the top of the
 * system prompt, new on every request. Left in, it would make every prompt differ from the first
 * tokens on and no request could reuse the prefix cache; it means nothing to the model, so such lines
 * are removed before the prompt is rendered (README, "HTTP server").
 */
const BILLING_LINE = /^x-anthropic-billing-header:[^\n]*(\n|$)/gim;

export function stripBillingHeader(text: string): string {
  return text.replace(BILLING_LINE, '');
}

function systemText(v: unknown): string | undefined {
  if (v === undefined || v === null) return undefined;
  const blocks = typeof v === 'string' ? [v] : requireArray(v, 'system').map((b, i) => {
    const block = requireObject(b, `system[${i}]`);
    if (block.type !== 'text' || typeof block.text !== 'string') throw badRequest(`system[${i}] must be a text block {type: "text", text}`, 'system');
    return block.text;
  });
  const kept = blocks.map(stripBillingHeader).filter((t) => t.trim() !== '');
  return kept.length > 0 ? kept.join('\n\n') : undefined;
}

function toolResultText(v: unknown, where: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  return requireArray(v, where).map((b, i) => {
    const block = requireObject(b, `${where}[${i}]`);
    if (block.type === 'text' && typeof block.text === 'string') return block.text;
    throw badRequest(`${where}[${i}]: tool_result blocks of type ${JSON.stringify(block.type)} are not supported (this model reads text only)`, where);
  }).join('\n');
}

/** A text block's text: a 400 naming the block when it is not a string. */
function blockText(block: Record<string, unknown>, where: string): string {
  if (typeof block.text !== 'string') throw badRequest(`${where}.text must be a string`, where);
  return block.text;
}

/** Anthropic messages (+ system) → the library's chat messages. */
export function anthropicMessages(body: Record<string, unknown>, limits: RequestLimits): ChatMessage[] {
  const list = requireArray(body.messages, 'messages');
  checkMessageCount(list, limits);
  const out: ChatMessage[] = [];
  const system = systemText(body.system);
  if (system !== undefined) out.push({ role: 'system', content: system });
  list.forEach((m, i) => {
    const where = `messages[${i}]`;
    const msg = requireObject(m, where);
    const blocks = typeof msg.content === 'string' ? [{ type: 'text', text: msg.content }] : requireArray(msg.content, `${where}.content`);
    if (msg.role === 'user') {
      let text: string[] = [];
      const flush = () => {
        if (text.length > 0) out.push({ role: 'user', content: text.join('\n') });
        text = [];
      };
      blocks.forEach((b, j) => {
        const w = `${where}.content[${j}]`;
        const block = requireObject(b, w);
        if (block.type === 'text') {
          text.push(blockText(block, w));
        } else if (block.type === 'tool_result') {
          flush();
          const id = optString(block.tool_use_id, `${w}.tool_use_id`);
          out.push({ role: 'tool', content: toolResultText(block.content, `${w}.content`), ...(id !== undefined ? { tool_call_id: id } : {}) });
        } else {
          throw badRequest(`${w}: user content blocks of type ${JSON.stringify(block.type)} are not supported (this model reads text only)`, w);
        }
      });
      flush();
      // A user turn whose blocks were all empty text still counts as a turn.
      if (blocks.length === 0) throw badRequest(`${where}.content must not be empty`, `${where}.content`);
    } else if (msg.role === 'assistant') {
      const text: string[] = [], reasoning: string[] = [];
      const calls: ToolCall[] = [];
      blocks.forEach((b, j) => {
        const w = `${where}.content[${j}]`;
        const block = requireObject(b, w);
        if (block.type === 'text') {
          text.push(blockText(block, w));
        } else if (block.type === 'thinking') {
          // The signature is accepted unchecked: it is ours (opaque) or another server's.
          if (typeof block.thinking !== 'string') throw badRequest(`${w}.thinking must be a string`, w);
          reasoning.push(block.thinking);
        } else if (block.type === 'redacted_thinking') {
          // Encrypted by another provider: nothing this model can read.
        } else if (block.type === 'tool_use') {
          const name = optString(block.name, `${w}.name`);
          if (!name) throw badRequest(`${w}.name is required`, w);
          const input = block.input ?? {};
          if (!isObject(input)) throw badRequest(`${w}.input must be an object`, w);
          const id = optString(block.id, `${w}.id`);
          calls.push({ type: 'function', ...(id !== undefined ? { id } : {}), function: { name, arguments: input as Record<string, never> } });
        } else {
          throw badRequest(`${w}: assistant content blocks of type ${JSON.stringify(block.type)} are not supported`, w);
        }
      });
      out.push({
        role: 'assistant', content: text.join(''),
        ...(reasoning.length > 0 ? { reasoning_content: reasoning.join('\n') } : {}),
        ...(calls.length > 0 ? { tool_calls: calls } : {}),
      });
    } else {
      throw badRequest(`${where}.role must be 'user' or 'assistant', got ${JSON.stringify(msg.role)}`, `${where}.role`);
    }
  });
  return out;
}

/**
 * tools + tool_choice → what the model sees. Anthropic's server tools (a `type` such as
 * web_search_20250305, no input_schema) run on Anthropic's side and are left out; tool_choice
 * 'none' hides the tools, {type: 'tool', name} leaves only that one; 'any' and 'tool' force a call
 * (constrained decoding, see anthropicToolChoice).
 */
function anthropicTools(b: Record<string, unknown>, limits: RequestLimits): ToolDefinition[] {
  if (b.tools === undefined || b.tools === null) return [];
  const tools: ToolDefinition[] = [];
  requireArray(b.tools, 'tools').forEach((t, i) => {
    const where = `tools[${i}]`;
    const tool = requireObject(t, where);
    if (tool.type !== undefined && tool.type !== 'custom' && tool.input_schema === undefined) return;
    const name = checkToolName(tool.name, `${where}.name`);
    const description = optString(tool.description, `${where}.description`);
    if (tool.input_schema === undefined) throw badRequest(`${where}.input_schema is required`, where);
    const parameters = checkToolSchema(tool.input_schema, `${where}.input_schema`);
    tools.push({ type: 'function', function: { name, ...(description !== undefined ? { description } : {}), parameters: parameters as ToolDefinition['function']['parameters'] } });
  });
  checkToolsSize(tools, limits, 'tools');
  const choice = b.tool_choice;
  if (choice === undefined || choice === null) return tools;
  const c = requireObject(choice, 'tool_choice');
  if (c.type === 'auto' || c.type === 'any') return tools;
  if (c.type === 'none') return [];
  if (c.type === 'tool') {
    const only = tools.filter((t) => t.function.name === c.name);
    if (only.length === 0) throw badRequest(`tool_choice names ${JSON.stringify(c.name)}, which is not in tools`, 'tool_choice');
    return only;
  }
  throw badRequest('tool_choice.type must be "auto", "any", "tool" or "none"', 'tool_choice');
}

/** tool_choice 'any' or {type: 'tool'} → a call is required (the tool list is already narrowed to the named one). */
function anthropicToolChoice(b: Record<string, unknown>, tools: readonly ToolDefinition[]): 'required' | undefined {
  const c = b.tool_choice;
  return tools.length > 0 && isObject(c) && (c.type === 'any' || c.type === 'tool') ? 'required' : undefined;
}

/** thinking: {type: 'enabled', budget_tokens} turns GLM's thinking on; absent or 'disabled' off (Anthropic's default). */
function thinkingOf(v: unknown, maxTokens: number | undefined): boolean {
  if (v === undefined || v === null) return false;
  const t = requireObject(v, 'thinking');
  if (t.type === 'disabled') return false;
  if (t.type !== 'enabled' && t.type !== 'adaptive') throw badRequest('thinking.type must be "enabled", "adaptive" or "disabled"', 'thinking.type');
  const budget = optInteger(t.budget_tokens, 'thinking.budget_tokens', 1, 1 << 30);
  if (budget !== undefined && maxTokens !== undefined && budget >= maxTokens) {
    throw badRequest(`thinking.budget_tokens (${budget}) must be less than max_tokens (${maxTokens})`, 'thinking.budget_tokens');
  }
  return true;
}

interface Parsed {
  messages: ChatMessage[];
  options: Omit<TextGenerateOptions, 'signal' | 'onChunk'>;
  maxTokens: number;
  stream: boolean;
  model: string;
}

function parse(body: unknown, ctx: ServerContext, limits: RequestLimits): Parsed {
  const b = requireObject(body, 'body');
  const maxTokens = checkMaxTokens(b.max_tokens, 'max_tokens', limits, true)!;
  const messages = anthropicMessages(b, limits);
  const options: Parsed['options'] = {};
  const temperature = optNumber(b.temperature, 'temperature', 0, 1);
  if (temperature !== undefined) options.temperature = temperature;
  const topP = optTopP(b.top_p);
  if (topP !== undefined) options.topP = topP;
  const topK = optInteger(b.top_k, 'top_k', 0, 1 << 30);
  if (topK !== undefined) options.topK = topK;
  if (b.stop_sequences !== undefined && b.stop_sequences !== null) {
    const stop = requireArray(b.stop_sequences, 'stop_sequences');
    if (!stop.every((s) => typeof s === 'string')) throw badRequest('stop_sequences must be an array of strings', 'stop_sequences');
    if (stop.length > 0) options.stop = stop as string[];
  }
  if (b.metadata !== undefined && b.metadata !== null) requireObject(b.metadata, 'metadata');
  options.thinking = thinkingOf(b.thinking, maxTokens);
  const tools = anthropicTools(b, limits);
  if (tools.length > 0) options.tools = tools;
  const toolChoice = anthropicToolChoice(b, tools);
  if (toolChoice) options.toolChoice = toolChoice;
  // Anthropic's API has no seed; this server takes one (an extension) so sampled answers can be reproduced.
  const seed = optInteger(b.seed, 'seed', 0, Number.MAX_SAFE_INTEGER);
  options.seed = seed ?? randomInt(0, 2 ** 47);
  const stream = optBool(b.stream, 'stream') === true;
  const model = optString(b.model, 'model') || ctx.modelName;
  return { messages, options, maxTokens, stream, model };
}

type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence' | 'tool_use';

function stopOf(r: TextGenerateResult): { stop_reason: StopReason; stop_sequence: string | null } {
  if (r.finishReason === 'length') return { stop_reason: 'max_tokens', stop_sequence: null };
  if (r.toolCalls.length > 0) return { stop_reason: 'tool_use', stop_sequence: null };
  if (r.stop && 'string' in r.stop) return { stop_reason: 'stop_sequence', stop_sequence: r.stop.string };
  return { stop_reason: 'end_turn', stop_sequence: null };
}

/** Anthropic counts cache reads apart from input_tokens (Claude Code adds them up for its context meter). */
function usageOf(r: TextGenerateResult): Record<string, number> {
  return {
    input_tokens: r.usage.promptTokens - r.usage.cachedTokens,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: r.usage.cachedTokens,
    output_tokens: r.usage.completionTokens,
  };
}

/** An opaque thinking signature (clients must send it back; this server accepts any). */
const signatureOf = (id: string, thinking: string) =>
  createHash('sha256').update(id).update('\0').update(thinking).digest('base64');

export async function messages(ctx: ServerContext, settings: RouteSettings, req: FastifyRequest, reply: FastifyReply, receivedAt: number): Promise<unknown> {
  const p = parse(req.body, ctx, settings.limits);
  const id = `msg_${hex(12)}`;
  const run = Run.start(ctx, reply.raw, receivedAt, p.messages, p.options, p.maxTokens);
  const toolId = () => `toolu_${hex(12)}`;

  if (!p.stream) {
    const r = await run.result();
    const content: Record<string, unknown>[] = [];
    if (r.reasoning) content.push({ type: 'thinking', thinking: r.reasoning, signature: signatureOf(id, r.reasoning) });
    if (r.text) content.push({ type: 'text', text: r.text });
    for (const c of r.toolCalls) content.push({ type: 'tool_use', id: toolId(), name: c.name, input: c.arguments });
    return { id, type: 'message', role: 'assistant', model: p.model, content, ...stopOf(r), usage: usageOf(r) };
  }

  const sse = new SseWriter(reply.raw, () => ctx.metrics.backpressure());
  const event = (type: string, data: Record<string, unknown>) => sse.send(JSON.stringify({ type, ...data }), type);
  let index = -1;
  let open: { type: 'thinking' | 'text'; text: string } | undefined;
  const closeBlock = async () => {
    if (!open) return;
    if (open.type === 'thinking') await event('content_block_delta', { index, delta: { type: 'signature_delta', signature: signatureOf(id, open.text) } });
    await event('content_block_stop', { index });
    open = undefined;
  };
  const write = async (type: 'thinking' | 'text', text: string) => {
    if (open?.type !== type) {
      await closeBlock();
      index++;
      open = { type, text: '' };
      await event('content_block_start', { index, content_block: type === 'thinking' ? { type, thinking: '', signature: '' } : { type, text: '' } });
    }
    open!.text += text;
    await event('content_block_delta', { index, delta: type === 'thinking' ? { type: 'thinking_delta', thinking: text } : { type: 'text_delta', text } });
  };
  await pumpStream(run, sse, {
    commit: async () => {
      reply.hijack();
      sse.commit(responseHeaders(reply));
      await event('message_start', {
        message: {
          id, type: 'message', role: 'assistant', model: p.model, content: [], stop_reason: null, stop_sequence: null,
          usage: { input_tokens: run.generation.promptTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 0 },
        },
      });
      await event('ping', {});
    },
    chunk: async (c) => {
      if (c.type === 'text' || c.type === 'reasoning') {
        await write(c.type === 'reasoning' ? 'thinking' : 'text', c.text);
        return;
      }
      await closeBlock();
      index++;
      await event('content_block_start', { index, content_block: { type: 'tool_use', id: toolId(), name: c.toolCall.name, input: {} } });
      await event('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: JSON.stringify(c.toolCall.arguments) } });
      await event('content_block_stop', { index });
    },
    done: async (r) => {
      await closeBlock();
      await event('message_delta', { delta: stopOf(r), usage: usageOf(r) });
      await event('message_stop', {});
    },
    ping: () => event('ping', {}),
    error: async (e) => {
      await sse.send(JSON.stringify(errorBody(e, 'anthropic', req.id)), 'error');
    },
  }, settings);
  return reply;
}

export function countTokens(ctx: ServerContext, settings: RouteSettings, req: FastifyRequest): unknown {
  const b = requireObject(req.body, 'body');
  const messages = anthropicMessages(b, settings.limits);
  const tools = anthropicTools(b, settings.limits);
  const thinking = thinkingOf(b.thinking, undefined);
  // The same rendering a generation would do, so the count is what the model would read.
  const prompt = buildPrompt(ctx.model, messages, { tools, thinking });
  return { input_tokens: prompt.length };
}
