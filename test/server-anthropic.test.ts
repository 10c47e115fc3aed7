// The Anthropic Messages endpoints through the official @anthropic-ai/sdk and raw SSE, over a real
// loopback socket on the default model: answers equal in-process generations, usage equals the
// tokenizer's counts, the stream has Anthropic's exact event sequence, and a Claude-Code-shaped agent
// transcript replayed turn by turn hits the prefix cache on every turn after the first although its
// billing-header system line changes on every request.
import Anthropic from '@anthropic-ai/sdk';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage, ToolDefinition } from '../lib/index.js';
import { CITIES } from '../scripts/train-default-model/lists.mjs';
import { REPO_ROOT } from './fixtures/variants.js';
import { WEATHER_TOOL, chatTokenCount, postJson, readSse, serve, stop, type Served } from './helpers/server.js';

let s: Served;
let client: Anthropic;
beforeAll(async () => {
  s = await serve();
  client = new Anthropic({ baseURL: s.url, apiKey: 'unused', maxRetries: 0 });
}, 60_000);
afterAll(async () => {
  await stop(s);
});

const ANTHROPIC_WEATHER: Anthropic.Tool = {
  name: 'get_weather', description: WEATHER_TOOL.function.description!, input_schema: WEATHER_TOOL.function.parameters as Anthropic.Tool.InputSchema,
};

describe('@anthropic-ai/sdk: messages', () => {
  const question = 'What is 47 + 38?';
  const chat: ChatMessage[] = [{ role: 'user', content: question }];

  it('non-streamed, thinking off (Anthropic default): the in-process answer; usage splits prompt tokens into input and cache reads', async () => {
    const ref = await s.model.generate(chat, { temperature: 0, maxTokens: 80, thinking: false });
    const m = await client.messages.create({ model: 'claude-sonnet-4-5', max_tokens: 80, temperature: 0, messages: [{ role: 'user', content: question }] });
    expect(m.type).toBe('message');
    expect(m.role).toBe('assistant');
    expect(m.model).toBe('claude-sonnet-4-5');
    expect(m.content).toEqual([{ type: 'text', text: ref.text }]);
    expect(m.stop_reason).toBe(ref.finishReason === 'length' ? 'max_tokens' : 'end_turn');
    expect(m.usage.input_tokens + (m.usage.cache_read_input_tokens ?? 0)).toBe(chatTokenCount(s.model, chat, { thinking: false }));
    expect(m.usage.output_tokens).toBe(ref.tokens.length);
  });

  it('streamed with thinking: Anthropic\'s exact event sequence, and the SDK assembles the non-streamed message', async () => {
    const body = { model: 'claude-x', max_tokens: 200, temperature: 0, thinking: { type: 'enabled', budget_tokens: 100 }, messages: [{ role: 'user', content: question }] };
    const whole = await client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming);
    expect(whole.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    const ref = await s.model.generate(chat, { temperature: 0, maxTokens: 200, thinking: true });
    expect(whole.content[0]).toMatchObject({ type: 'thinking', thinking: ref.reasoning });
    expect(whole.content[1]).toEqual({ type: 'text', text: ref.text });

    const res = await postJson(`${s.url}/v1/messages`, { ...body, stream: true }, { 'anthropic-version': '2023-06-01' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('request-id')).toMatch(/^req_/);
    const events = (await readSse(res)).map((e) => ({ name: e.event, data: JSON.parse(e.data) as Record<string, any> }));
    for (const e of events) expect(e.data.type).toBe(e.name);  // event: line and JSON type agree
    const names = events.map((e) => e.name).filter((n) => n !== 'ping');
    expect(names[0]).toBe('message_start');
    expect(names.slice(-2)).toEqual(['message_delta', 'message_stop']);
    // Blocks: start, ≥1 delta, stop, with indexes 0, 1, ... in order; thinking first, its signature last.
    const blocks: { type: string; deltas: string[] }[] = [];
    for (const e of events.slice(1, -2)) {
      if (e.name === 'ping') continue;
      if (e.name === 'content_block_start') {
        expect(e.data.index).toBe(blocks.length);
        blocks.push({ type: e.data.content_block.type, deltas: [] });
      } else if (e.name === 'content_block_delta') {
        expect(e.data.index).toBe(blocks.length - 1);
        blocks.at(-1)!.deltas.push(e.data.delta.type);
      } else {
        expect(e.name).toBe('content_block_stop');
        expect(e.data.index).toBe(blocks.length - 1);
      }
    }
    expect(blocks.map((b) => b.type)).toEqual(['thinking', 'text']);
    expect(new Set(blocks[0]!.deltas.slice(0, -1))).toEqual(new Set(['thinking_delta']));
    expect(blocks[0]!.deltas.at(-1)).toBe('signature_delta');
    expect(new Set(blocks[1]!.deltas)).toEqual(new Set(['text_delta']));
    const start = events[0]!.data.message;
    expect(start.content).toEqual([]);
    expect(start.usage.input_tokens).toBe(chatTokenCount(s.model, chat, { thinking: true }));
    const delta = events.find((e) => e.name === 'message_delta')!.data;
    expect(delta.delta.stop_reason).toBe(whole.stop_reason);
    expect(delta.usage.output_tokens).toBe(whole.usage.output_tokens);

    const final = await client.messages.stream(body as Anthropic.MessageCreateParamsStreaming).finalMessage();
    expect(final.content.map((b) => b.type)).toEqual(['thinking', 'text']);
    expect((final.content[0] as Anthropic.ThinkingBlock).thinking).toBe(ref.reasoning);
    expect((final.content[0] as Anthropic.ThinkingBlock).signature.length).toBeGreaterThan(10);
    expect((final.content[1] as Anthropic.TextBlock).text).toBe(ref.text);
    expect(final.usage.output_tokens).toBe(whole.usage.output_tokens);
  });

  it('sampled with a seed (this server\'s extension field): streamed equals non-streamed equals in process', async () => {
    const ref = await s.model.generate(chat, { temperature: 0.9, seed: 42, maxTokens: 120, thinking: true });
    const body = { model: 'c', max_tokens: 120, temperature: 0.9, seed: 42, thinking: { type: 'enabled', budget_tokens: 60 }, messages: [{ role: 'user', content: question }] };
    const whole = await client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming);
    const streamed = await client.messages.stream(body as Anthropic.MessageCreateParamsStreaming).finalMessage();
    const texts = (m: Anthropic.Message) => m.content.map((b) => (b.type === 'thinking' ? b.thinking : b.type === 'text' ? b.text : ''));
    expect(texts(whole)).toEqual([ref.reasoning, ...(ref.text ? [ref.text] : [])]);
    expect(texts(streamed)).toEqual(texts(whole));
    expect(streamed.usage.output_tokens).toBe(ref.tokens.length);
  });

  it('a tool round trip: tool_use with parsed input, then an answer quoting the tool_result; signatures sent back are accepted', async () => {
    const city = CITIES.train[2]!;
    const user: Anthropic.MessageParam = { role: 'user', content: `What is the weather in ${city}?` };
    const first = await client.messages.create({ model: 'c', max_tokens: 300, temperature: 0, thinking: { type: 'enabled', budget_tokens: 200 }, tools: [ANTHROPIC_WEATHER], messages: [user] });
    expect(first.stop_reason).toBe('tool_use');
    const use = first.content.find((b): b is Anthropic.ToolUseBlock => b.type === 'tool_use')!;
    expect(use.name).toBe('get_weather');
    expect(use.input).toEqual({ city });
    expect(use.id).toMatch(/^toolu_/);
    const temperature = 23;
    const result = JSON.stringify({ city, temperature_c: temperature, conditions: 'windy' });
    const second = await client.messages.create({
      model: 'c', max_tokens: 300, temperature: 0, thinking: { type: 'enabled', budget_tokens: 200 }, tools: [ANTHROPIC_WEATHER],
      messages: [user, { role: 'assistant', content: first.content }, { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: result }] }],
    });
    expect(second.stop_reason).toBe('end_turn');
    const text = second.content.find((b): b is Anthropic.TextBlock => b.type === 'text')!.text;
    expect(text).toContain(String(temperature));
    // The same conversation in process (the test's own mapping of the blocks).
    const thinking = first.content.find((b): b is Anthropic.ThinkingBlock => b.type === 'thinking')!.thinking;
    const ref = await s.model.generate([
      { role: 'user', content: `What is the weather in ${city}?` },
      { role: 'assistant', content: '', reasoning_content: thinking, tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city } } }] },
      { role: 'tool', content: result },
    ], { tools: [WEATHER_TOOL], temperature: 0, maxTokens: 300, thinking: true });
    expect(text).toBe(ref.text);
  });

  it('stop_sequences: stop_reason stop_sequence naming the string; text as in process', async () => {
    const full = await s.model.generate(chat, { temperature: 0, maxTokens: 100, thinking: false });
    const stopAt = full.text.split(' ').slice(2, 3).join(' ');
    expect(stopAt.length).toBeGreaterThan(0);
    const ref = await s.model.generate(chat, { temperature: 0, maxTokens: 100, thinking: false, stop: [stopAt] });
    const m = await client.messages.create({ model: 'c', max_tokens: 100, temperature: 0, stop_sequences: [stopAt], messages: [{ role: 'user', content: question }] });
    expect(m.stop_reason).toBe('stop_sequence');
    expect(m.stop_sequence).toBe(stopAt);
    expect(m.content).toEqual(ref.text ? [{ type: 'text', text: ref.text }] : []);
    expect(full.text.startsWith(ref.text)).toBe(true);
  });

  it('count_tokens: the tokenizer\'s count of the rendered prompt (with tools and system)', async () => {
    const r = await client.messages.countTokens({
      model: 'c', system: 'Be brief.', tools: [ANTHROPIC_WEATHER], messages: [{ role: 'user', content: 'Weather in Oslo?' }],
    });
    expect(r.input_tokens).toBe(chatTokenCount(s.model, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Weather in Oslo?' }],
      { tools: [WEATHER_TOOL], thinking: false }));
    // Claude Code's form of the URL.
    const res = await postJson(`${s.url}/v1/messages/count_tokens?beta=true`, { model: 'c', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ input_tokens: chatTokenCount(s.model, [{ role: 'user', content: 'hi' }], { thinking: false }) });
  });
});

describe('Claude-Code-shaped agent transcript, replayed turn by turn', () => {
  interface Transcript { model: string; system: Anthropic.TextBlockParam[]; tools: Anthropic.Tool[]; messages: Anthropic.MessageParam[] }
  const transcript = JSON.parse(readFileSync(path.join(REPO_ROOT, 'test', 'fixtures', 'server', 'agent-transcript.json'), 'utf8')) as Transcript;
  const PAGE = 16;  // kvPageTokens default: cache hits come in whole pages

  /** The test's own reading of the transcript as library chat messages (billing header dropped). */
  function asChat(messages: Anthropic.MessageParam[]): ChatMessage[] {
    const out: ChatMessage[] = [{ role: 'system', content: transcript.system.slice(1).map((b) => b.text).join('\n\n') }];
    for (const m of messages) {
      const blocks = typeof m.content === 'string' ? [{ type: 'text' as const, text: m.content }] : m.content;
      if (m.role === 'user') {
        const texts: string[] = [];
        for (const b of blocks) {
          if (b.type === 'tool_result') out.push({ role: 'tool', content: typeof b.content === 'string' ? b.content : (b.content as { text: string }[]).map((c) => c.text).join('\n') });
          else if (b.type === 'text') texts.push(b.text);
        }
        if (texts.length > 0) out.push({ role: 'user', content: texts.join('\n') });
      } else {
        const thinking = blocks.filter((b) => b.type === 'thinking').map((b) => (b as Anthropic.ThinkingBlockParam).thinking).join('\n');
        const calls = blocks.filter((b) => b.type === 'tool_use').map((b) => ({ type: 'function' as const, function: { name: (b as Anthropic.ToolUseBlockParam).name, arguments: (b as Anthropic.ToolUseBlockParam).input as Record<string, string> } }));
        out.push({ role: 'assistant', content: blocks.filter((b) => b.type === 'text').map((b) => (b as Anthropic.TextBlockParam).text).join(''),
          ...(thinking ? { reasoning_content: thinking } : {}), ...(calls.length > 0 ? { tool_calls: calls } : {}) });
      }
    }
    return out;
  }

  it('every turn parses; from the second turn on the prefix cache serves at least the shared prefix', async () => {
    const tools: ToolDefinition[] = [WEATHER_TOOL];
    const metricValue = async (name: string) => {
      const text = await (await fetch(`${s.url}/metrics`)).text();
      return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)![1]);
    };
    const hitsBefore = await metricValue('glm_prefix_cache_hits_total');
    const turns = transcript.messages.flatMap((m, i) => (m.role === 'user' ? [i + 1] : []));
    expect(turns).toHaveLength(5);
    let first = 0, previous = 0;
    for (const [t, end] of turns.entries()) {
      const history = transcript.messages.slice(0, end);
      // A new billing nonce every request, as Claude Code sends.
      const system = transcript.system.map((b, i) => (i === 0 ? { ...b, text: b.text.replace('CCH', Math.random().toString(36).slice(2, 7)) } : b));
      const msg = await client.messages.stream({
        model: transcript.model, max_tokens: 32000, system, tools: transcript.tools, messages: history,
        thinking: { type: 'enabled', budget_tokens: 1024 }, temperature: 0, metadata: { user_id: 'user_abc_account_def_session_ghi' },
      }).finalMessage();
      expect(['end_turn', 'tool_use', 'max_tokens']).toContain(msg.stop_reason);
      expect(msg.content.length).toBeGreaterThan(0);
      for (const b of msg.content) expect(['thinking', 'text', 'tool_use']).toContain(b.type);
      const cached = msg.usage.cache_read_input_tokens ?? 0;
      const prompt = msg.usage.input_tokens + cached;
      // The server read the transcript as the test does: the billing line is gone, the rest is there.
      expect(prompt).toBe(chatTokenCount(s.model, asChat(history), { tools, thinking: true }));
      if (t === 0) {
        first = prompt;
      } else {
        // Tools, system prompt and first question are shared by every turn (whatever the nonce) ...
        expect(cached).toBeGreaterThanOrEqual(first - 2 * PAGE);
        // ... and a turn that only adds a tool result extends the previous prompt as it was.
        const onlyToolResult = (history.at(-1)!.content as Anthropic.ContentBlockParam[])[0]?.type === 'tool_result';
        if (onlyToolResult) expect(cached).toBeGreaterThanOrEqual(previous - 2 * PAGE);
      }
      previous = prompt;
    }
    expect(await metricValue('glm_prefix_cache_hits_total')).toBeGreaterThan(hitsBefore);
  });

  it('the billing line alone does not change the prompt: with and without it the token counts agree', async () => {
    const base = { model: 'c', tools: transcript.tools, messages: transcript.messages.slice(0, 1) };
    const withHeader = await client.messages.countTokens({ ...base, system: transcript.system.map((b) => ({ ...b, text: b.text.replace('CCH', 'abcde') })) });
    const without = await client.messages.countTokens({ ...base, system: transcript.system.slice(1) });
    // ... and as one string, the way some clients send the system prompt.
    const asString = await client.messages.countTokens({ ...base, system: `x-anthropic-billing-header: cch=zzz;\n${transcript.system[1]!.text}` });
    expect(withHeader.input_tokens).toBe(without.input_tokens);
    expect(asString.input_tokens).toBe(without.input_tokens);
  });
});
