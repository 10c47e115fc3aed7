// Hostile and mistaken requests over a real socket: each gets a 4xx in its API's error shape with a
// message naming the problem, and the server answers the next good request. Also: API keys, a full
// queue (429 / 529 with Retry-After), a client that hangs up mid-request, graceful shutdown.
import Anthropic from '@anthropic-ai/sdk';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WEATHER_TOOL, postJson, readSse, serve, stop, type Served } from './helpers/server.js';

const KEY = 'sk-test-0123456789';
const LIMITS = { bodyBytes: 256 * 1024, messages: 50, maxTokens: 4096, toolSchemaBytes: 8 * 1024 };
let s: Served;
beforeAll(async () => {
  s = await serve({ apiKey: KEY, limits: LIMITS });
}, 60_000);
afterAll(async () => {
  await stop(s);
});

const auth = { authorization: `Bearer ${KEY}` };
const user = [{ role: 'user', content: 'What is 2 + 3?' }];

async function expectOpenAiError(body: unknown, status: number, message: RegExp, path = '/v1/chat/completions') {
  const res = await postJson(`${s.url}${path}`, body, auth);
  const json = await res.json() as { error: { message: string; type: string } };
  expect(res.status, JSON.stringify(json)).toBe(status);
  expect(json.error.message).toMatch(message);
  expect(json.error.type).toBe(status === 413 ? 'invalid_request_error' : 'invalid_request_error');
}

async function expectAnthropicError(body: unknown, status: number, message: RegExp, type = 'invalid_request_error') {
  const res = await postJson(`${s.url}/v1/messages`, body, { 'x-api-key': KEY, 'anthropic-version': '2023-06-01' });
  const json = await res.json() as { type: string; error: { type: string; message: string }; request_id: string };
  expect(res.status, JSON.stringify(json)).toBe(status);
  expect(json.type).toBe('error');
  expect(json.error.type).toBe(type);
  expect(json.error.message).toMatch(message);
  expect(json.request_id).toBe(res.headers.get('request-id'));
}

async function stillServes() {
  const res = await postJson(`${s.url}/v1/chat/completions`, { messages: user, max_tokens: 4, temperature: 0 }, auth);
  expect(res.status).toBe(200);
  expect((await res.json() as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
}

describe('bad input: a clear 4xx, then the next request is served', () => {
  it('OpenAI dialect', async () => {
    await expectOpenAiError('{"messages": [', 400, /JSON/i);
    await expectOpenAiError({ messages: 'hi' }, 400, /messages must be an array/);
    await expectOpenAiError({ messages: [] }, 400, /messages must not be empty/);
    await expectOpenAiError({ messages: [{ role: 'wizard', content: 'x' }] }, 400, /role must be/);
    await expectOpenAiError({ messages: [{ role: 'user', content: 42 }] }, 400, /content must be an array/);
    await expectOpenAiError({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }, 400, /image_url.*not supported/);
    await expectOpenAiError({ messages: user, max_tokens: '10' }, 400, /max_tokens must be a number/);
    await expectOpenAiError({ messages: user, max_tokens: 0 }, 400, /max_tokens must be in \[1, 4096\]/);
    await expectOpenAiError({ messages: user, max_tokens: 100_000 }, 400, /max_tokens must be in \[1, 4096\]/);
    await expectOpenAiError({ messages: user, temperature: 5 }, 400, /temperature must be in \[0, 2\]/);
    await expectOpenAiError({ messages: user, top_p: 0 }, 400, /top_p/);
    await expectOpenAiError({ messages: user, n: 3 }, 400, /n must be in \[1, 1\]/);
    await expectOpenAiError({ messages: user, stop: [1, 2] }, 400, /stop must be/);
    await expectOpenAiError({ messages: user, response_format: { type: 'yaml' } }, 400, /response_format.type must be/);
    await expectOpenAiError({ messages: user, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', patternProperties: {} } } } }, 400, /patternProperties/);
    await expectOpenAiError({ messages: user, tools: [{ type: 'function', function: { name: 'bad name!' } }] }, 400, /tools\[0\].function.name/);
    await expectOpenAiError({ messages: user, tools: [{ type: 'function', function: { name: 'f', parameters: 'object' } }] }, 400, /parameters must be a JSON schema object/);
    await expectOpenAiError({ messages: user, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'strng' } } }] }, 400, /parameters.type must be one of/);
    await expectOpenAiError({ messages: user, tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { a: { type: 'string', description: 'x'.repeat(10_000) } } } } }] },
      400, /tools take \d+ bytes of JSON; this server's limit is 8192/);
    await expectOpenAiError({ messages: user, tools: [WEATHER_TOOL], tool_choice: { type: 'function', function: { name: 'nope' } } }, 400, /tool_choice names "nope"/);
    await expectOpenAiError({ messages: Array.from({ length: 51 }, () => user[0]) }, 400, /51 messages; this server's limit is 50/);
    await expectOpenAiError({ messages: [{ role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{oops' } }] }, ...user] }, 400, /arguments is not valid JSON/);
    await expectOpenAiError({ messages: [{ role: 'user', content: 'x'.repeat(300 * 1024) }] }, 413, /body/i);
    // A prompt longer than the model's 2048-token context.
    await expectOpenAiError({ messages: [{ role: 'user', content: 'word '.repeat(4000) }] }, 400, /context/);
    await expectOpenAiError({ prompt: 7 }, 400, /prompt must be a non-empty string/, '/v1/completions');
    // Nesting deep enough to overflow a recursive walk (JSON.stringify of the tools) is refused first.
    const deep = `{"type":"object","properties":{"a":${'{"type":"array","items":'.repeat(9_000)}{}${'}'.repeat(9_000)}}}`;
    await expectOpenAiError(`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":${deep}}}]}`,
      400, /nested deeper than 64 levels/);
    const text = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: 'hi' });
    expect(text.status).toBe(400);
    expect(await text.json()).toMatchObject({ error: { message: 'body must be an object, got a string' } });
    const xml = await fetch(`${s.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth, 'content-type': 'application/xml' }, body: '<a/>' });
    expect(xml.status).toBe(415);
    await stillServes();
  });

  it('Anthropic dialect (errors in Anthropic\'s shape)', async () => {
    await expectAnthropicError('{"messages": [', 400, /JSON/i);
    await expectAnthropicError({ messages: user }, 400, /max_tokens is required/);
    await expectAnthropicError({ max_tokens: 10, messages: [{ role: 'system', content: 'x' }] }, 400, /role must be 'user' or 'assistant'/);
    await expectAnthropicError({ max_tokens: 10, messages: [] }, 400, /messages must not be empty/);
    await expectAnthropicError({ max_tokens: 10, messages: [{ role: 'user', content: [{ type: 'image', source: {} }] }] }, 400, /"image" are not supported/);
    await expectAnthropicError({ max_tokens: 10, messages: user, temperature: 1.5 }, 400, /temperature must be in \[0, 1\]/);
    await expectAnthropicError({ max_tokens: 10, messages: user, thinking: { type: 'enabled', budget_tokens: 50 } }, 400, /budget_tokens \(50\) must be less than max_tokens/);
    await expectAnthropicError({ max_tokens: 10, messages: user, tools: [{ name: 'f', input_schema: [] }] }, 400, /input_schema must be a JSON schema object/);
    await expectAnthropicError({ max_tokens: 10, messages: user, tools: [{ name: 'f', input_schema: { type: 'object', properties: { a: 3 } } }] }, 400, /properties.a must be a schema object/);
    await expectAnthropicError({ max_tokens: 10, messages: user, tools: [{ name: 'f' }] }, 400, /input_schema is required/);
    await expectAnthropicError({ max_tokens: 10, messages: user, system: [{ type: 'image' }] }, 400, /system\[0\] must be a text block/);
    await expectAnthropicError({ max_tokens: 10, messages: [{ role: 'user', content: 'x'.repeat(300 * 1024) }] }, 413, /body/i, 'request_too_large');
    // The SDK surfaces these as typed errors.
    const client = new Anthropic({ baseURL: s.url, apiKey: KEY, maxRetries: 0 });
    await expect(client.messages.create({ model: 'c', max_tokens: 10, messages: [] })).rejects.toBeInstanceOf(Anthropic.BadRequestError);
    await stillServes();
  });

  it('unknown routes are 404 in the caller\'s dialect; HEAD / and ?beta=true are answered', async () => {
    const r404 = await fetch(`${s.url}/v2/nothing`, { headers: auth });
    expect(r404.status).toBe(404);
    expect((await r404.json() as { error: { type: string } }).error.type).toBe('not_found_error');
    const head = await fetch(`${s.url}/`, { method: 'HEAD', headers: auth });
    expect(head.status).toBe(200);
    const beta = await postJson(`${s.url}/v1/messages?beta=true`, { model: 'claude-opus-4-1', max_tokens: 3, messages: user }, { 'x-api-key': KEY });
    expect(beta.status).toBe(200);
  });
});

describe('API key', () => {
  it('every endpoint but /health needs it (x-api-key or Bearer); a missing or wrong key is 401 in the dialect\'s shape', async () => {
    expect((await fetch(`${s.url}/health`)).status).toBe(200);
    for (const path of ['/v1/models', '/metrics', '/']) expect((await fetch(`${s.url}${path}`)).status, path).toBe(401);
    const missing = await postJson(`${s.url}/v1/chat/completions`, { messages: user });
    expect(missing.status).toBe(401);
    expect(((await missing.json()) as { error: { message: string; type: string } }).error).toMatchObject({ type: 'authentication_error', message: expect.stringMatching(/missing API key/) });
    const wrong = await postJson(`${s.url}/v1/messages`, { max_tokens: 3, messages: user }, { 'x-api-key': `${KEY}x` });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error', message: 'invalid API key' } });
    const openai = new OpenAI({ baseURL: `${s.url}/v1`, apiKey: 'wrong', maxRetries: 0 });
    await expect(openai.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect((await fetch(`${s.url}/v1/models`, { headers: { 'x-api-key': KEY } })).status).toBe(200);
    expect((await fetch(`${s.url}/v1/models`, { headers: auth })).status).toBe(200);
  });
});

describe('a client that hangs up', () => {
  it('aborts its generation at once: KV pages return, the disconnect is counted', async () => {
    const pages = () => s.model.stats().kvCache.pagesUsed;
    const base = pages();
    const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(await (await fetch(`${s.url}/metrics`, { headers: auth })).text())![1]);
    const before = await metric('glm_http_client_disconnects_total');
    const failedBefore = s.model.stats().requestsFailed;
    const ac = new AbortController();
    // Non-streamed and long: it would run for seconds if nothing stopped it.
    // A companion request that completes beside the aborted one.
    const req = postJson(`${s.url}/v1/chat/completions`, { messages: user, max_tokens: 400, ignore_eos: true, temperature: 0 }, auth);
    void req.catch(() => undefined);
    const r = fetch(`${s.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal, headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: user, max_tokens: 2000, ignore_eos: true, temperature: 0 }) });
    void r.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 150));
    ac.abort();
    const t0 = performance.now();
    while (await metric('glm_http_client_disconnects_total') === before && performance.now() - t0 < 5000) await new Promise((x) => setTimeout(x, 20));
    expect(await metric('glm_http_client_disconnects_total')).toBe(before + 1);
    while (s.model.stats().requestsFailed === failedBefore && performance.now() - t0 < 5000) await new Promise((x) => setTimeout(x, 20));
    expect(s.model.stats().requestsFailed).toBe(failedBefore + 1);  // aborted, not finished
    expect((await (await req).json() as { usage: { completion_tokens: number } }).usage.completion_tokens).toBe(400);
    // The companion's temporary session is freed just after its answer is sent.
    while (pages() !== base && performance.now() - t0 < 5000) await new Promise((x) => setTimeout(x, 20));
    expect(pages()).toBe(base);
  });
});

describe('a full queue', () => {
  let q: Served;
  beforeAll(async () => {
    // One request computing, none waiting: the second is refused at once.
    q = await serve({}, { maxConcurrentRequests: 1, maxQueuedRequests: 0 });
  }, 60_000);
  afterAll(async () => {
    await stop(q);
  });

  it('is 429 (OpenAI) / 529 overloaded (Anthropic) with Retry-After, streamed or not; the server then serves again', async () => {
    const long = postJson(`${q.url}/v1/chat/completions`, { messages: user, max_tokens: 1500, ignore_eos: true, stream: true }, {});
    const first = await long;
    expect(first.status).toBe(200);
    const openai = await postJson(`${q.url}/v1/chat/completions`, { messages: user, max_tokens: 5 });
    expect(openai.status).toBe(429);
    expect(openai.headers.get('retry-after')).toBe('1');
    expect((await openai.json() as { error: { type: string } }).error.type).toBe('rate_limit_error');
    const openaiStream = await postJson(`${q.url}/v1/chat/completions`, { messages: user, max_tokens: 5, stream: true });
    expect(openaiStream.status).toBe(429);
    await openaiStream.body?.cancel();
    const anthropic = await postJson(`${q.url}/v1/messages`, { max_tokens: 5, messages: user, stream: true });
    expect(anthropic.status).toBe(529);
    expect(anthropic.headers.get('retry-after')).toBe('1');
    expect(await anthropic.json()).toMatchObject({ type: 'error', error: { type: 'overloaded_error' } });
    const events = await readSse(first);
    expect(events.at(-1)!.data).toBe('[DONE]');
    const ok = await postJson(`${q.url}/v1/messages`, { max_tokens: 5, messages: user });
    expect(ok.status).toBe(200);
    expect(await (await fetch(`${q.url}/metrics`)).text()).toMatch(/^glm_http_queue_full_total 3$/m);
  });
});

describe('graceful shutdown', () => {
  it('lets a running request finish, refuses new ones, stops listening and disposes the model when asked', async () => {
    const g = await serve({ disposeModelOnClose: true, shutdownGraceMs: 20_000 });
    const running = postJson(`${g.url}/v1/chat/completions`, { messages: user, max_tokens: 300, ignore_eos: true, stream: true });
    const res = await running;
    expect(res.status).toBe(200);
    const closed = g.server.close();
    await new Promise((r) => setTimeout(r, 50));
    const refused = await postJson(`${g.url}/v1/messages`, { max_tokens: 3, messages: user });
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(await refused.json()).toMatchObject({ type: 'error', error: { type: 'overloaded_error', message: 'the server is shutting down' } });
    const events = await readSse(res);
    expect(events.at(-1)!.data).toBe('[DONE]');
    const usage = JSON.parse(events.at(-2)!.data) as { choices: { finish_reason: string }[] };
    expect(usage.choices[0]!.finish_reason).toBe('length');
    await closed;
    expect(g.model.disposed).toBe(true);
    await expect(fetch(`${g.url}/health`)).rejects.toThrow();
  });

  it('aborts what is still running when the grace period ends', async () => {
    const g = await serve({ shutdownGraceMs: 100 });
    const res = await postJson(`${g.url}/v1/chat/completions`, { max_tokens: 2000, ignore_eos: true, messages: user, stream: true });
    expect(res.status).toBe(200);
    const t0 = performance.now();
    await g.server.close();
    expect(performance.now() - t0).toBeLessThan(5000);
    const events = await readSse(res);
    // The stream ends with an error event rather than hanging.
    expect(events.at(-1)!.data).toBe('[DONE]');
    expect(JSON.parse(events.at(-2)!.data)).toMatchObject({ error: { message: expect.stringMatching(/shutting down/) } });
    expect(g.model.disposed).toBe(false);
    await g.model.dispose();
  });
});
