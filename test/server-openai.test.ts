// The OpenAI-compatible endpoints through the official `openai` client and the AI SDK
// (`ai` + `@ai-sdk/openai-compatible`), over a real loopback socket on the default model. Every
// expectation is an independent computation: model.generate in process with the same seed (the CPU
// backend gives a request the same tokens whatever else runs), token counts from the tokenizer and
// the chat template, a tool result the test itself returns.
import OpenAI from 'openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';
import { generateText, jsonSchema, streamText, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChatMessage, TextGenerateResult } from '../lib/index.js';
import { CITIES } from '../scripts/train-default-model/lists.mjs';
import { WEATHER_TOOL, chatTokenCount, serve, stop, type Served } from './helpers/server.js';

let s: Served;
let client: OpenAI;
beforeAll(async () => {
  s = await serve({ modelName: 'tiny-default' });
  client = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'unused', maxRetries: 0 });
}, 60_000);
afterAll(async () => {
  await stop(s);
});

const ARITHMETIC: ChatMessage[] = [{ role: 'user', content: 'What is 47 + 38?' }];
const oaMessages = (m: ChatMessage[]) => m as OpenAI.ChatCompletionMessageParam[];

function reference(messages: ChatMessage[], opts: { seed: number; temperature: number; maxTokens: number; thinking: boolean; stop?: string[] }): Promise<TextGenerateResult> {
  return s.model.generate(messages, opts);
}

describe('openai client: chat completions', () => {
  it('non-streamed: text, reasoning, finish reason and usage equal the in-process generation with the same seed', async () => {
    const ref = await reference(ARITHMETIC, { seed: 11, temperature: 0.7, maxTokens: 160, thinking: true });
    const r = await client.chat.completions.create({ model: 'anything', messages: oaMessages(ARITHMETIC), seed: 11, temperature: 0.7, max_tokens: 160 });
    const msg = r.choices[0]!.message as OpenAI.ChatCompletionMessage & { reasoning_content?: string; reasoning?: string };
    expect(r.object).toBe('chat.completion');
    expect(r.model).toBe('anything');
    expect(msg.content).toBe(ref.text);
    expect(msg.reasoning_content).toBe(ref.reasoning);
    expect(msg.reasoning).toBe(ref.reasoning);
    expect(ref.reasoning.length).toBeGreaterThan(0);
    expect(r.choices[0]!.finish_reason).toBe(ref.finishReason);
    // usage: the prompt as the tokenizer counts it, the completion as many tokens as the library generated
    expect(r.usage!.prompt_tokens).toBe(chatTokenCount(s.model, ARITHMETIC, { thinking: true }));
    expect(r.usage!.completion_tokens).toBe(ref.tokens.length);
    expect(r.usage!.total_tokens).toBe(r.usage!.prompt_tokens + r.usage!.completion_tokens);
  });

  it('streamed: the deltas add up to the non-streamed answer for the same seed; include_usage adds a usage chunk', async () => {
    const params = { model: 'x', messages: oaMessages(ARITHMETIC), seed: 5, temperature: 0.8, max_tokens: 120 };
    const whole = await client.chat.completions.create(params);
    const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
    let text = '', reasoning = '', finish: string | null = null, chunks = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const c of stream) {
      chunks++;
      if (c.usage) usage = c.usage;
      const choice = c.choices[0];
      if (!choice) continue;
      const d = choice.delta as { content?: string | null; reasoning_content?: string };
      text += d.content ?? '';
      reasoning += d.reasoning_content ?? '';
      if (choice.finish_reason) finish = choice.finish_reason;
    }
    expect(chunks).toBeGreaterThan(5);
    expect(text).toBe(whole.choices[0]!.message.content);
    expect(reasoning).toBe((whole.choices[0]!.message as { reasoning_content?: string }).reasoning_content);
    expect(finish).toBe(whole.choices[0]!.finish_reason);
    expect(usage?.prompt_tokens).toBe(whole.usage!.prompt_tokens);
    expect(usage?.completion_tokens).toBe(whole.usage!.completion_tokens);
  });

  it('thinking off (chat_template_kwargs.enable_thinking: false): no reasoning, the answer of the in-process run without thinking', async () => {
    const ref = await reference(ARITHMETIC, { seed: 0, temperature: 0, maxTokens: 60, thinking: false });
    const r = await client.chat.completions.create({
      model: 'x', messages: oaMessages(ARITHMETIC), temperature: 0, max_tokens: 60,
      // @ts-expect-error vLLM's extension field
      chat_template_kwargs: { enable_thinking: false },
    });
    const msg = r.choices[0]!.message as { content: string; reasoning_content?: string };
    expect(msg.reasoning_content).toBeUndefined();
    expect(msg.content).toBe(ref.text);
    expect(ref.reasoning).toBe('');
    expect(r.usage!.prompt_tokens).toBe(chatTokenCount(s.model, ARITHMETIC, { thinking: false }));
  });

  it('a tool call round trip: tool_calls (also streamed as deltas), then an answer using the tool result', async () => {
    const city = CITIES.train[0]!;
    const messages: ChatMessage[] = [{ role: 'user', content: `What is the weather in ${city}?` }];
    const tools = [WEATHER_TOOL] as OpenAI.ChatCompletionTool[];
    const first = await client.chat.completions.create({ model: 'x', messages: oaMessages(messages), tools, temperature: 0, max_tokens: 200 });
    const choice = first.choices[0]!;
    expect(choice.finish_reason).toBe('tool_calls');
    const call = choice.message.tool_calls![0]! as OpenAI.ChatCompletionMessageFunctionToolCall;
    expect(call.type).toBe('function');
    expect(call.id).toMatch(/^call_/);
    expect(call.function.name).toBe('get_weather');
    expect(JSON.parse(call.function.arguments)).toEqual({ city });
    const ref1 = await s.model.generate(messages, { tools: [WEATHER_TOOL], temperature: 0, maxTokens: 200 });
    expect(ref1.toolCalls.map((c) => c.arguments)).toEqual([{ city }]);

    // The same call as stream deltas: one delta per call with id, name and the whole arguments.
    const stream = await client.chat.completions.create({ model: 'x', messages: oaMessages(messages), tools, temperature: 0, max_tokens: 200, stream: true });
    const deltas: OpenAI.ChatCompletionChunk.Choice.Delta.ToolCall[] = [];
    let finish: string | null = null;
    for await (const c of stream) {
      deltas.push(...(c.choices[0]?.delta.tool_calls ?? []));
      finish = c.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe('tool_calls');
    expect(deltas).toHaveLength(1);
    expect(deltas[0]).toMatchObject({ index: 0, type: 'function', function: { name: 'get_weather' } });
    expect(JSON.parse(deltas[0]!.function!.arguments!)).toEqual({ city });

    const temperature = 17;
    const result = JSON.stringify({ city, temperature_c: temperature, conditions: 'foggy' });
    const second = await client.chat.completions.create({
      model: 'x', tools, temperature: 0, max_tokens: 200,
      messages: [
        ...oaMessages(messages),
        { role: 'assistant', content: choice.message.content, tool_calls: [call],
          // @ts-expect-error reasoning sent back as the AI SDK and vLLM do
          reasoning_content: (choice.message as { reasoning_content?: string }).reasoning_content },
        { role: 'tool', tool_call_id: call.id, content: result },
      ],
    });
    expect(second.choices[0]!.finish_reason).toBe('stop');
    expect(second.choices[0]!.message.content).toContain(String(temperature));
    // ... and it is what the library answers to the same conversation.
    const ref2 = await s.model.generate([...messages,
      { role: 'assistant', content: ref1.text, reasoning_content: ref1.reasoning, tool_calls: [{ type: 'function', function: { name: 'get_weather', arguments: { city } } }] },
      { role: 'tool', content: result }], { tools: [WEATHER_TOOL], temperature: 0, maxTokens: 200 });
    expect(second.choices[0]!.message.content).toBe(ref2.text);
  });

  it('stop sequences end the answer before the stop string, as in process', async () => {
    const full = await reference(ARITHMETIC, { seed: 0, temperature: 0, maxTokens: 160, thinking: true });
    const words = full.reasoning.split(' ');
    const stopAt = words.slice(3, 5).join(' ');  // a string from the middle of the reasoning
    const ref = await reference(ARITHMETIC, { seed: 0, temperature: 0, maxTokens: 160, thinking: true, stop: [stopAt] });
    const r = await client.chat.completions.create({ model: 'x', messages: oaMessages(ARITHMETIC), temperature: 0, max_tokens: 160, stop: [stopAt] });
    const msg = r.choices[0]!.message as { content: string; reasoning_content?: string };
    expect(r.choices[0]!.finish_reason).toBe('stop');
    expect(msg.reasoning_content ?? '').toBe(ref.reasoning);
    expect(full.reasoning.startsWith(ref.reasoning)).toBe(true);
    expect(ref.reasoning).not.toContain(stopAt);
    expect(msg.content).toBe('');
    expect(r.usage!.completion_tokens).toBeLessThan(full.tokens.length);
  });

  it('logprobs: one entry per generated token with the in-process values', async () => {
    const ref = await s.model.generate(ARITHMETIC, { temperature: 0, maxTokens: 12, logprobs: 2, thinking: true });
    const r = await client.chat.completions.create({ model: 'x', messages: oaMessages(ARITHMETIC), temperature: 0, max_tokens: 12, logprobs: true, top_logprobs: 2 });
    const content = r.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(ref.tokens.length);
    content.forEach((c, i) => {
      expect(c.logprob).toBeCloseTo(ref.logprobs![i]!.logprob, 5);
      expect(c.top_logprobs).toHaveLength(2);
      expect(c.bytes).toEqual(Array.from(s.model.tokenizer!.tokenBytes(ref.tokens[i]!)));
    });
  });

  it('/v1/completions: a raw prompt, streamed and not, as in process', async () => {
    const prompt = 'The capital of';
    const ref = await s.model.generate(prompt, { temperature: 0, maxTokens: 20 });
    const r = await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 20 });
    expect(r.choices[0]!.text).toBe(ref.reasoning + ref.text);
    expect(r.usage!.prompt_tokens).toBe(s.model.tokenizer!.encode(prompt).length);
    expect(r.usage!.completion_tokens).toBe(ref.tokens.length);
    let streamed = '';
    for await (const c of await client.completions.create({ model: 'x', prompt, temperature: 0, max_tokens: 20, stream: true })) streamed += c.choices[0]?.text ?? '';
    expect(streamed).toBe(r.choices[0]!.text);
  });

  it('/v1/models lists the served model; any model name is answered by it', async () => {
    const list = await client.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny-default']);
    const r = await client.chat.completions.create({ model: 'gpt-4o', messages: oaMessages(ARITHMETIC), max_tokens: 2 });
    expect(r.model).toBe('gpt-4o');
  });
});

describe('AI SDK (@ai-sdk/openai-compatible)', () => {
  const provider = () => createOpenAICompatible({ name: 'glm', baseURL: `${s.url}/v1`, apiKey: 'unused', includeUsage: true });

  it('generateText and streamText give the in-process text and reasoning for the same seed, with usage', async () => {
    const ref = await reference(ARITHMETIC, { seed: 3, temperature: 0.6, maxTokens: 150, thinking: true });
    const r = await generateText({ model: provider()('tiny'), prompt: 'What is 47 + 38?', temperature: 0.6, seed: 3, maxOutputTokens: 150, maxRetries: 0 });
    expect(r.text).toBe(ref.text);
    expect(r.reasoningText).toBe(ref.reasoning);
    expect(r.usage.inputTokens).toBe(chatTokenCount(s.model, ARITHMETIC, { thinking: true }));
    expect(r.usage.outputTokens).toBe(ref.tokens.length);
    const st = streamText({ model: provider()('tiny'), prompt: 'What is 47 + 38?', temperature: 0.6, seed: 3, maxOutputTokens: 150, maxRetries: 0 });
    expect(await st.text).toBe(ref.text);
    expect(await st.reasoningText).toBe(ref.reasoning);
    expect((await st.usage).outputTokens).toBe(ref.tokens.length);
  });

  it('thinking off through providerOptions (chat_template_kwargs): no reasoning, the in-process answer without thinking', async () => {
    const ref = await reference(ARITHMETIC, { seed: 0, temperature: 0, maxTokens: 60, thinking: false });
    const r = await generateText({ model: provider()('tiny'), prompt: 'What is 47 + 38?', temperature: 0, maxOutputTokens: 60, maxRetries: 0,
      providerOptions: { glm: { chat_template_kwargs: { enable_thinking: false } } } });
    expect(r.reasoningText ?? '').toBe('');
    expect(r.text).toBe(ref.text);
  });

  it('a tool call comes back as a typed tool call with parsed input', async () => {
    const city = CITIES.train[1]!;
    const r = await generateText({
      model: provider()('tiny'), prompt: `What is the weather in ${city}?`, temperature: 0, maxOutputTokens: 200, maxRetries: 0,
      tools: { get_weather: tool({ description: WEATHER_TOOL.function.description!, inputSchema: jsonSchema(WEATHER_TOOL.function.parameters as never) }) },
    });
    expect(r.finishReason).toBe('tool-calls');
    expect(r.toolCalls).toHaveLength(1);
    expect(r.toolCalls[0]!.toolName).toBe('get_weather');
    expect(r.toolCalls[0]!.input).toEqual({ city });
  });
});
