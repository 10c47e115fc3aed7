// OpenAI-compatible routes: POST /v1/chat/completions and /v1/completions. Requests are mapped onto
// the library's chat messages and generate options (the chat template, thinking and tool-call parsing
// are the library's); answers and stream chunks follow OpenAI's shapes, with thinking as
// `reasoning_content` (and `reasoning`, vLLM's newer name).
import { randomBytes, randomInt } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ChatContent, ChatMessage, ToolCall, ToolDefinition } from '../chat-template.js';
import type { StreamChunk, TextGenerateResult, TokenLogprob } from '../generation.js';
import type { TextGenerateOptions } from '../generate-options.js';
import type { JsonSchema, ResponseFormat } from '../constrained/options.js';
import type { Tokenizer } from '../tokenizer.js';
import { badRequest, errorBody, type HttpError } from './errors.js';
import {
  checkMaxTokens, checkMessageCount, checkToolName, checkToolSchema, checkToolsSize, isObject, optBool, optInteger, optNumber, optTopP,
  optString, requireArray, requireObject, type RequestLimits,
} from './limits.js';
import { Run, type ServerContext } from './run.js';
import { SseWriter } from './sse.js';
import { pumpStream } from './stream.js';

export interface RouteSettings {
  limits: RequestLimits;
  commitMs: number;
  pingMs: number;
}

type Sampling = Omit<TextGenerateOptions, 'signal' | 'onChunk' | 'tools' | 'thinking'>;

const hex = (n: number) => randomBytes(n).toString('hex');

/** Sampling fields shared by both OpenAI endpoints. */
function samplingOf(b: Record<string, unknown>): Sampling {
  const s: Sampling = {};
  const temperature = optNumber(b.temperature, 'temperature', 0, 2);
  if (temperature !== undefined) s.temperature = temperature;
  const topP = optTopP(b.top_p);
  if (topP !== undefined) s.topP = topP;
  const topK = optInteger(b.top_k, 'top_k', 0, 1 << 30);
  if (topK !== undefined) s.topK = topK;
  const minP = optNumber(b.min_p, 'min_p', 0, 1);
  if (minP !== undefined) s.minP = minP;
  const presence = optNumber(b.presence_penalty, 'presence_penalty', -2, 2);
  if (presence !== undefined) s.presencePenalty = presence;
  const frequency = optNumber(b.frequency_penalty, 'frequency_penalty', -2, 2);
  if (frequency !== undefined) s.frequencyPenalty = frequency;
  const repetition = optNumber(b.repetition_penalty, 'repetition_penalty', 0, 10);
  if (repetition !== undefined) {
    if (repetition === 0) throw badRequest('repetition_penalty must be in (0, 10], got 0', 'repetition_penalty');
    s.repetitionPenalty = repetition;
  }
  // OpenAI seeds are any integer; the sampler takes a non-negative one. No seed: a fresh one per request.
  const seed = optInteger(b.seed, 'seed', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  s.seed = seed === undefined ? randomInt(0, 2 ** 47) : Math.abs(seed);
  if (b.stop !== undefined && b.stop !== null) {
    const stop = typeof b.stop === 'string' ? [b.stop] : b.stop;
    if (!Array.isArray(stop) || !stop.every((x) => typeof x === 'string')) throw badRequest('stop must be a string or an array of strings', 'stop');
    if (stop.length > 0) s.stop = stop as string[];
  }
  if (optBool(b.ignore_eos, 'ignore_eos') === true) s.ignoreEos = true;
  const n = optInteger(b.n, 'n', 1, 1);
  void n;
  return s;
}

/** response_format → the library's responseFormat (constrained decoding); text or absent: none. */
function responseFormatOf(v: unknown): ResponseFormat | undefined {
  if (v === undefined || v === null) return undefined;
  const rf = requireObject(v, 'response_format');
  if (rf.type === 'text') return undefined;
  if (rf.type === 'json_object') return { type: 'json_object' };
  if (rf.type === 'json_schema') {
    const js = requireObject(rf.json_schema, 'response_format.json_schema');
    const name = optString(js.name, 'response_format.json_schema.name');
    const schema = js.schema === undefined ? {} : js.schema;
    if (typeof schema !== 'boolean' && !isObject(schema)) throw badRequest('response_format.json_schema.schema must be a JSON Schema object', 'response_format');
    return { type: 'json_schema', schema: schema as JsonSchema, ...(name !== undefined ? { name } : {}) };
  }
  throw badRequest(`response_format.type must be "text", "json_object" or "json_schema", got ${JSON.stringify(rf.type)}`, 'response_format');
}

/** OpenAI content (string or parts) → the library's content; only text parts are accepted (the model reads text). */
function contentOf(v: unknown, where: string, nullable: boolean): ChatContent | undefined {
  if (v === undefined || v === null) {
    if (nullable) return undefined;
    throw badRequest(`${where} is required`, where);
  }
  if (typeof v === 'string') return v;
  const parts = requireArray(v, where);
  return parts.map((p, i) => {
    const part = requireObject(p, `${where}[${i}]`);
    if (part.type !== 'text') throw badRequest(`${where}[${i}]: content parts of type ${JSON.stringify(part.type)} are not supported (this model reads text only)`, where);
    if (typeof part.text !== 'string') throw badRequest(`${where}[${i}].text must be a string`, where);
    return { type: 'text' as const, text: part.text };
  });
}

export function openAiMessages(raw: unknown, limits: RequestLimits): ChatMessage[] {
  const list = requireArray(raw, 'messages');
  checkMessageCount(list, limits);
  return list.map((m, i): ChatMessage => {
    const where = `messages[${i}]`;
    const msg = requireObject(m, where);
    const role = msg.role;
    if (role === 'system' || role === 'developer') return { role: 'system', content: contentOf(msg.content, `${where}.content`, false)! };
    if (role === 'user') return { role: 'user', content: contentOf(msg.content, `${where}.content`, false)! };
    if (role === 'tool') {
      const id = optString(msg.tool_call_id, `${where}.tool_call_id`);
      return { role: 'tool', content: contentOf(msg.content, `${where}.content`, false)!, ...(id !== undefined ? { tool_call_id: id } : {}) };
    }
    if (role === 'assistant') {
      const reasoning = optString(msg.reasoning_content, `${where}.reasoning_content`) ?? optString(msg.reasoning, `${where}.reasoning`);
      const out: ChatMessage & { role: 'assistant' } = { role: 'assistant', content: contentOf(msg.content, `${where}.content`, true) ?? '' };
      if (reasoning !== undefined) out.reasoning_content = reasoning;
      if (msg.tool_calls !== undefined && msg.tool_calls !== null) {
        out.tool_calls = requireArray(msg.tool_calls, `${where}.tool_calls`).map((tc, j): ToolCall => {
          const w = `${where}.tool_calls[${j}]`;
          const call = requireObject(tc, w);
          const fn = requireObject(call.function, `${w}.function`);
          const name = optString(fn.name, `${w}.function.name`);
          if (!name) throw badRequest(`${w}.function.name is required`, w);
          const args = fn.arguments;
          if (args !== undefined && typeof args !== 'string' && !isObject(args)) throw badRequest(`${w}.function.arguments must be a JSON string`, w);
          const id = optString(call.id, `${w}.id`);
          return { type: 'function', ...(id !== undefined ? { id } : {}), function: { name, arguments: (args ?? '{}') as string } };
        });
      }
      return out;
    }
    throw badRequest(`${where}.role must be 'system', 'developer', 'user', 'assistant' or 'tool', got ${JSON.stringify(role)}`, `${where}.role`);
  });
}

/**
 * tools + tool_choice → the tool list the model sees. tool_choice 'none' hides them; a named tool
 * leaves only it (and parseChat makes the call required).
 */
function openAiTools(b: Record<string, unknown>, limits: RequestLimits): ToolDefinition[] {
  if (b.tools === undefined || b.tools === null) return [];
  const tools = requireArray(b.tools, 'tools').map((t, i): ToolDefinition => {
    const where = `tools[${i}]`;
    const tool = requireObject(t, where);
    if (tool.type !== 'function') throw badRequest(`${where}.type must be "function", got ${JSON.stringify(tool.type)}`, where);
    const fn = requireObject(tool.function, `${where}.function`);
    const name = checkToolName(fn.name, `${where}.function.name`);
    const description = optString(fn.description, `${where}.function.description`);
    const parameters = fn.parameters === undefined ? { type: 'object', properties: {} } : checkToolSchema(fn.parameters, `${where}.function.parameters`);
    return { type: 'function', function: { name, ...(description !== undefined ? { description } : {}), parameters: parameters as ToolDefinition['function']['parameters'] } };
  });
  checkToolsSize(tools, limits, 'tools');
  const choice = b.tool_choice;
  if (choice === undefined || choice === null || choice === 'auto' || choice === 'required') return tools;
  if (choice === 'none') return [];
  if (isObject(choice) && choice.type === 'function' && isObject(choice.function) && typeof choice.function.name === 'string') {
    const name = choice.function.name;
    const only = tools.filter((t) => t.function.name === name);
    if (only.length === 0) throw badRequest(`tool_choice names ${JSON.stringify(name)}, which is not in tools`, 'tool_choice');
    return only;
  }
  throw badRequest('tool_choice must be "none", "auto", "required" or {type: "function", function: {name}}', 'tool_choice');
}

function usageOf(r: TextGenerateResult): Record<string, unknown> {
  return {
    prompt_tokens: r.usage.promptTokens,
    completion_tokens: r.usage.completionTokens,
    total_tokens: r.usage.totalTokens,
    prompt_tokens_details: { cached_tokens: r.usage.cachedTokens },
  };
}

function finishOf(r: TextGenerateResult): string {
  if (r.finishReason === 'length') return 'length';
  return r.toolCalls.length > 0 ? 'tool_calls' : 'stop';
}

function logprobsOf(tokenizer: Tokenizer, lps: TokenLogprob[] | undefined): Record<string, unknown> | null {
  if (!lps) return null;
  const entry = (token: number, logprob: number) => {
    const bytes = Array.from(tokenizer.tokenBytes(token));
    return { token: Buffer.from(bytes).toString('utf8'), logprob, bytes };
  };
  return { content: lps.map((lp) => ({ ...entry(lp.token, lp.logprob), top_logprobs: lp.top.map((t) => entry(t.token, t.logprob)) })) };
}

interface ParsedChat {
  messages: ChatMessage[];
  options: Omit<TextGenerateOptions, 'signal' | 'onChunk'>;
  maxTokens: number | undefined;
  stream: boolean;
  includeUsage: boolean;
  model: string;
}

function parseChat(body: unknown, ctx: ServerContext, limits: RequestLimits): ParsedChat {
  const b = requireObject(body, 'body');
  const responseFormat = responseFormatOf(b.response_format);
  const messages = openAiMessages(b.messages, limits);
  const maxTokens = checkMaxTokens(b.max_completion_tokens ?? b.max_tokens, b.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens', limits, false);
  const options: ParsedChat['options'] = samplingOf(b);
  const tools = openAiTools(b, limits);
  if (tools.length > 0) options.tools = tools;
  if (responseFormat) options.responseFormat = responseFormat;
  // A named tool is the only one left in `tools`; 'required' and a name force a call (constrained).
  if (tools.length > 0 && (b.tool_choice === 'required' || isObject(b.tool_choice))) options.toolChoice = 'required';
  const kwargs = b.chat_template_kwargs === undefined || b.chat_template_kwargs === null ? {} : requireObject(b.chat_template_kwargs, 'chat_template_kwargs');
  const thinking = optBool(kwargs.enable_thinking, 'chat_template_kwargs.enable_thinking');
  if (thinking !== undefined) options.thinking = thinking;
  const logprobs = optBool(b.logprobs, 'logprobs');
  const top = optInteger(b.top_logprobs, 'top_logprobs', 0, 20);
  if (logprobs === true) options.logprobs = top ?? true;
  else if (top !== undefined) throw badRequest('top_logprobs needs logprobs: true', 'top_logprobs');
  const stream = optBool(b.stream, 'stream') === true;
  const so = b.stream_options === undefined || b.stream_options === null ? {} : requireObject(b.stream_options, 'stream_options');
  const includeUsage = optBool(so.include_usage, 'stream_options.include_usage') === true;
  const model = optString(b.model, 'model') || ctx.modelName;
  return { messages, options, maxTokens, stream, includeUsage, model };
}

export async function chatCompletions(ctx: ServerContext, settings: RouteSettings, req: FastifyRequest, reply: FastifyReply, receivedAt: number): Promise<unknown> {
  const p = parseChat(req.body, ctx, settings.limits);
  const id = `chatcmpl-${hex(12)}`;
  const created = Math.floor(Date.now() / 1000);
  const run = Run.start(ctx, reply.raw, receivedAt, p.messages, p.options, p.maxTokens);
  const callIds = new Map<number, string>();
  const callId = (i: number) => {
    let v = callIds.get(i);
    if (!v) callIds.set(i, (v = `call_${hex(8)}`));
    return v;
  };
  const toolCallsOf = (r: TextGenerateResult) => r.toolCalls.map((c, i) => ({
    id: callId(i), type: 'function', function: { name: c.name, arguments: JSON.stringify(c.arguments) },
  }));
  const tokenizer = ctx.model.tokenizer!;

  if (!p.stream) {
    const r = await run.result();
    const message: Record<string, unknown> = { role: 'assistant', content: r.toolCalls.length > 0 && r.text === '' ? null : r.text };
    if (r.reasoning) { message.reasoning_content = r.reasoning; message.reasoning = r.reasoning; }
    if (r.toolCalls.length > 0) message.tool_calls = toolCallsOf(r);
    return {
      id, object: 'chat.completion', created, model: p.model,
      choices: [{ index: 0, message, logprobs: logprobsOf(tokenizer, r.logprobs), finish_reason: finishOf(r) }],
      usage: usageOf(r),
    };
  }

  const sse = new SseWriter(reply.raw, () => ctx.metrics.backpressure());
  let toolIndex = 0;
  const frame = (delta: Record<string, unknown>, finish: string | null = null, extra: Record<string, unknown> = {}) => JSON.stringify({
    id, object: 'chat.completion.chunk', created, model: p.model,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish, ...extra }],
    ...(p.includeUsage ? { usage: null } : {}),
  });
  await pumpStream(run, sse, {
    commit: async () => {
      reply.hijack();
      sse.commit(responseHeaders(reply));
      await sse.send(frame({ role: 'assistant', content: '' }));
    },
    chunk: async (c: Exclude<StreamChunk, { type: 'done' }>) => {
      if (c.type === 'text') await sse.send(frame({ content: c.text }));
      else if (c.type === 'reasoning') await sse.send(frame({ reasoning_content: c.text, reasoning: c.text }));
      else {
        const i = toolIndex++;
        await sse.send(frame({ tool_calls: [{ index: i, id: callId(i), type: 'function',
          function: { name: c.toolCall.name, arguments: JSON.stringify(c.toolCall.arguments) } }] }));
      }
    },
    done: async (r) => {
      await sse.send(frame({}, finishOf(r), { logprobs: logprobsOf(tokenizer, r.logprobs) }));
      if (p.includeUsage) {
        await sse.send(JSON.stringify({ id, object: 'chat.completion.chunk', created, model: p.model, choices: [], usage: usageOf(r) }));
      }
      await sse.send('[DONE]');
    },
    ping: () => sse.comment('ping'),
    error: async (e: HttpError) => {
      await sse.send(JSON.stringify(errorBody(e, 'openai', req.id)));
      await sse.send('[DONE]');
    },
  }, settings);
  return reply;
}

export async function completions(ctx: ServerContext, settings: RouteSettings, req: FastifyRequest, reply: FastifyReply, receivedAt: number): Promise<unknown> {
  const b = requireObject(req.body, 'body');
  let prompt = b.prompt;
  if (Array.isArray(prompt)) {
    if (prompt.length !== 1) throw badRequest('prompt must be a string or an array of exactly one string (batches are not supported)', 'prompt');
    prompt = prompt[0];
  }
  if (typeof prompt !== 'string' || prompt.length === 0) throw badRequest('prompt must be a non-empty string', 'prompt');
  if (b.suffix !== undefined && b.suffix !== null) throw badRequest('suffix is not supported', 'suffix');
  if (optBool(b.echo, 'echo') === true) throw badRequest('echo is not supported', 'echo');
  const options: Omit<TextGenerateOptions, 'signal' | 'onChunk'> = samplingOf(b);
  if (b.logprobs !== undefined && b.logprobs !== null) {
    throw badRequest('logprobs is not supported on /v1/completions; /v1/chat/completions has them', 'logprobs');
  }
  // OpenAI's default for this endpoint is 16 tokens.
  const maxTokens = checkMaxTokens(b.max_tokens, 'max_tokens', settings.limits, false) ?? 16;
  const stream = optBool(b.stream, 'stream') === true;
  const so = b.stream_options === undefined || b.stream_options === null ? {} : requireObject(b.stream_options, 'stream_options');
  const includeUsage = optBool(so.include_usage, 'stream_options.include_usage') === true;
  const model = optString(b.model, 'model') || ctx.modelName;
  const id = `cmpl-${hex(12)}`;
  const created = Math.floor(Date.now() / 1000);
  const run = Run.start(ctx, reply.raw, receivedAt, prompt, options, maxTokens);
  // Reasoning, if the model writes any on a raw prompt, is part of a plain completion's text.
  const textOf = (r: TextGenerateResult) => r.reasoning ? `${r.reasoning}${r.text}` : r.text;
  if (!stream) {
    const r = await run.result();
    return {
      id, object: 'text_completion', created, model,
      choices: [{ index: 0, text: textOf(r), logprobs: null, finish_reason: r.finishReason === 'length' ? 'length' : 'stop' }],
      usage: usageOf(r),
    };
  }
  const sse = new SseWriter(reply.raw, () => ctx.metrics.backpressure());
  const frame = (text: string, finish: string | null = null) => JSON.stringify({
    id, object: 'text_completion', created, model, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }],
    ...(includeUsage ? { usage: null } : {}),
  });
  await pumpStream(run, sse, {
    commit: async () => {
      reply.hijack();
      sse.commit(responseHeaders(reply));
    },
    chunk: async (c) => {
      if (c.type === 'text' || c.type === 'reasoning') await sse.send(frame(c.text));
    },
    done: async (r) => {
      await sse.send(frame('', r.finishReason === 'length' ? 'length' : 'stop'));
      if (includeUsage) await sse.send(JSON.stringify({ id, object: 'text_completion', created, model, choices: [], usage: usageOf(r) }));
      await sse.send('[DONE]');
    },
    ping: () => sse.comment('ping'),
    error: async (e) => {
      await sse.send(JSON.stringify(errorBody(e, 'openai', req.id)));
      await sse.send('[DONE]');
    },
  }, settings);
  return reply;
}

/** Headers set on the reply so far (request id, CORS): a hijacked stream writes them itself. */
export function responseHeaders(reply: FastifyReply): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(reply.getHeaders())) if (typeof v === 'string' || typeof v === 'number') out[k] = String(v);
  return out;
}
