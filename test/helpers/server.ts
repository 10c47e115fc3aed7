// Shared by the server tests: the default model behind createServer on a loopback port, and the
// in-process facts the HTTP answers are checked against (token counts by the tokenizer and chat
// template, results of model.generate with the same seed).
import path from 'node:path';
import { Model, createServer, renderChatTokens, type ChatMessage, type GlmServer, type ServerOptions, type ToolDefinition } from '../../lib/index.js';
import { REPO_ROOT } from '../fixtures/variants.js';
import { sseEvents, type SseEvent } from '../../bench/sse-frames.js';

export const DEFAULT_MODEL = path.join(REPO_ROOT, 'models', 'tiny-default');

export interface Served { model: Model; server: GlmServer; url: string }

export async function serve(options: ServerOptions = {}, load: Parameters<typeof Model.load>[1] = {}): Promise<Served> {
  const model = await Model.load(DEFAULT_MODEL, { backend: 'cpu', threads: 2, ...load });
  const server = createServer(model, options);
  const url = await server.listen({ port: 0 });
  return { model, server, url };
}

export async function stop(s: Served | undefined): Promise<void> {
  if (!s) return;
  await s.server.close();
  await s.model.dispose();
}

/** Prompt tokens of a chat as the tokenizer and the checkpoint's chat template count them. */
export function chatTokenCount(model: Model, messages: ChatMessage[], opts: { tools?: ToolDefinition[]; thinking: boolean }): number {
  const tok = model.tokenizer!;
  return renderChatTokens(tok, tok.chatTemplate!, messages, {
    ...(opts.tools ? { tools: opts.tools } : {}), addGenerationPrompt: true, enableThinking: opts.thinking,
  }).tokens.length;
}

/** The tool the default model was trained to call (see test/default-model-behaviour.test.ts). */
export const WEATHER_TOOL: ToolDefinition = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Get the current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string', description: 'City name' } }, required: ['city'] },
  },
};

/** Server-sent events of a raw response body, in order: [event name or undefined, data]. */
export async function readSse(res: Response): Promise<SseEvent[]> {
  const out: SseEvent[] = [];
  for await (const e of sseEvents(res.body!)) out.push(e);
  return out;
}

export const postJson = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: typeof body === 'string' ? body : JSON.stringify(body) });
