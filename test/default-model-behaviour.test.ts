// What the trained default model (models/tiny-default) can do, through the public API: held-out
// arithmetic answered correctly (greedy) with thinking on and off, its reasoning arriving as
// `reasoning` chunks, and a tool-call round trip through session.stream. Expected answers come from
// JavaScript arithmetic and the tool result the test itself returns, never from the model.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model, type ChatMessage, type StreamChunk, type ToolDefinition } from '../lib/index.js';
import { REPO_ROOT } from './fixtures/variants.js';
// The training pipeline's own rule for which problems were kept out of training.
import { isHeldOutProblem } from '../scripts/train-default-model/arithmetic.mjs';
import { CITIES } from '../scripts/train-default-model/lists.mjs';
import { IN_FACTS_DISTRACTORS } from '../scripts/train-default-model/tasks.mjs';

let model: Model;
beforeAll(async () => {
  model = await Model.load(path.join(REPO_ROOT, 'models', 'tiny-default'), { backend: 'cpu', threads: 2 });
}, 60_000);
afterAll(async () => {
  await model?.dispose();
});

async function collect(stream: AsyncIterable<StreamChunk>): Promise<{ text: string; reasoning: string; chunks: StreamChunk[] }> {
  const chunks: StreamChunk[] = [];
  for await (const c of stream) chunks.push(c);
  const join = (type: string) => chunks.filter((c) => c.type === type).map((c) => (c as { text: string }).text).join('');
  return { text: join('text'), reasoning: join('reasoning'), chunks };
}

/** A fixed sample of held-out problems: a small LCG walks operands; only held-out pairs are kept, and
 * not the 2-digit + 1-digit sums that training's facts conversations use as small talk. Results are
 * non-negative: the model was measured not to handle negative differences (see below). */
function heldOutSample(perKind: number): { a: number; op: '+' | '-'; b: number }[] {
  let x = 12345;
  const next = (lo: number, hi: number) => { x = (x * 1103515245 + 12345) % 2147483648; return lo + (x % (hi - lo + 1)); };
  const out: { a: number; op: '+' | '-'; b: number }[] = [];
  for (const [op, digits] of [['+', 2], ['+', 3], ['-', 2], ['-', 3]] as const) {
    let found = 0;
    while (found < perKind) {
      let a = next(10 ** (digits - 1), 10 ** digits - 1);
      let b = next(1, 10 ** digits - 1);
      if (op === '-' && a < b) [a, b] = [b, a];
      if (!isHeldOutProblem(a, op, b) || IN_FACTS_DISTRACTORS(a, op, b)) continue;
      out.push({ a, op, b });
      found++;
    }
  }
  return out;
}

function lastInteger(text: string): number | undefined {
  const m = text.match(/-?\d+/g);
  return m ? Number(m.at(-1)) : undefined;
}

// Measured on the committed model (greedy, these 24 held-out problems): 24/24 with thinking, 11/24 without.
// The floors sit a few problems under the measurement, so a retrained model that got worse fails here.
const MIN_RIGHT_THINKING = 22, MIN_RIGHT_DIRECT = 7;

describe('held-out arithmetic (greedy)', () => {
  const problems = heldOutSample(6);

  it('the sample really is held out and mixes carries and borrows', () => {
    expect(problems).toHaveLength(24);
    for (const p of problems) expect(isHeldOutProblem(p.a, p.op, p.b) && !IN_FACTS_DISTRACTORS(p.a, p.op, p.b)).toBe(true);
    expect(problems.some((p) => p.op === '-' && p.a % 10 < p.b % 10)).toBe(true);
    expect(problems.some((p) => p.op === '+' && p.a % 10 + p.b % 10 >= 10)).toBe(true);
  });

  it('with thinking: column-by-column reasoning as reasoning chunks, then the answer as text', async () => {
    const session = model.createSession({ contextLength: 1024 });
    let right = 0;
    const wrong: string[] = [];
    for (const { a, op, b } of problems) {
      const messages: ChatMessage[] = [{ role: 'user', content: `What is ${a} ${op} ${b}?` }];
      const { text, reasoning, chunks } = await collect(session.stream(messages, { temperature: 0, maxTokens: 300 }));
      const expected = op === '+' ? a + b : a - b;
      if (lastInteger(text) === expected) right++;
      else wrong.push(`${a} ${op} ${b} -> ${JSON.stringify(text)}`);
      expect(chunks.findIndex((c) => c.type === 'reasoning')).toBeGreaterThanOrEqual(0);
      expect(chunks.findIndex((c) => c.type === 'reasoning')).toBeLessThan(chunks.findIndex((c) => c.type === 'text'));
      expect(reasoning).toMatch(/Ones: /);        // the column-by-column reasoning it was trained to write
      expect(text).not.toMatch(/Ones: /);         // ... which stays out of the answer
    }
    console.log(`held-out arithmetic with thinking: ${right}/${problems.length} right; wrong: ${wrong.join('; ')}`);
    expect(right).toBeGreaterThanOrEqual(MIN_RIGHT_THINKING);
    await session.dispose();
  }, 240_000);

  it('without thinking: no reasoning chunks, an answer directly (less often right: no scratch space)', async () => {
    const session = model.createSession({ contextLength: 1024 });
    let right = 0;
    for (const { a, op, b } of problems) {
      const messages: ChatMessage[] = [{ role: 'user', content: `What is ${a} ${op} ${b}?` }];
      const { text, chunks } = await collect(session.stream(messages, { temperature: 0, maxTokens: 40, thinking: false }));
      expect(chunks.some((c) => c.type === 'reasoning')).toBe(false);
      expect(lastInteger(text)).toBeDefined();
      if (lastInteger(text) === (op === '+' ? a + b : a - b)) right++;
    }
    console.log(`held-out arithmetic without thinking: ${right}/${problems.length} right`);
    expect(right).toBeGreaterThanOrEqual(MIN_RIGHT_DIRECT);
    await session.dispose();
  }, 120_000);
});

describe('tool use through session.stream', () => {
  /** Checks arguments against the tool's JSON schema (the subset used here: required, string, integer). */
  function validate(args: Record<string, unknown>, tool: ToolDefinition): string[] {
    const schema = tool.function.parameters as { properties: Record<string, { type: string }>; required: string[] };
    const errors: string[] = [];
    for (const r of schema.required) if (!(r in args)) errors.push(`missing ${r}`);
    for (const [k, v] of Object.entries(args)) {
      const type = schema.properties[k]?.type;
      if (!type) errors.push(`unknown argument ${k}`);
      else if (type === 'string' && typeof v !== 'string') errors.push(`${k} is not a string`);
      else if (type === 'integer' && !Number.isInteger(v)) errors.push(`${k} is not an integer`);
    }
    return errors;
  }

  // Measured: for cities of the training lists it copies the name exactly; of the 24 held-out ones it
  // copies 22 exactly and misspells 2 (Ottawa -> "Otawa", San José -> "Sanosé").
  // The tool has only the required string argument. It reads the numbers of the tool's result.
  const MIN_HELD_OUT_CITIES_EXACT = 19;
  const cityTool: ToolDefinition = {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Get the current weather for a city',
      parameters: { type: 'object', properties: { city: { type: 'string', description: 'City name' } }, required: ['city'] },
    },
  };

  it('calls the tool with valid arguments, then answers with the value the tool returned', async () => {
    const city = CITIES.train[0]!;
    const session = model.createSession({ contextLength: 2048 });
    const messages: ChatMessage[] = [{ role: 'user', content: `What is the weather in ${city}?` }];
    const turn1 = await collect(session.stream(messages, { tools: [cityTool], temperature: 0, maxTokens: 200 }));
    const done1 = turn1.chunks.at(-1)!;
    expect(done1.type).toBe('done');
    if (done1.type !== 'done') return;
    expect(done1.result.finishReason).toBe('tool_calls');
    const calls = turn1.chunks.filter((c) => c.type === 'tool_call').map((c) => (c as { toolCall: { name: string; arguments: Record<string, unknown>; errors: string[] } }).toolCall);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.errors).toEqual([]);
    expect(call.name).toBe('get_weather');
    expect(validate(call.arguments, cityTool)).toEqual([]);
    expect(call.arguments).toEqual({ city });

    // A temperature the model cannot know without reading the result.
    const temperature = 23;
    messages.push(
      { role: 'assistant', content: done1.result.text, reasoning_content: done1.result.reasoning, tool_calls: [{ type: 'function', function: { name: call.name, arguments: call.arguments } }] },
      { role: 'tool', content: JSON.stringify({ city, temperature_c: temperature, conditions: 'foggy' }) },
    );
    const turn2 = await collect(session.stream(messages, { tools: [cityTool], temperature: 0, maxTokens: 200 }));
    expect(turn2.text).toContain(String(temperature));
    expect(turn2.text).toContain(city);
    await session.dispose();
  }, 120_000);

  it('held-out cities: a well-formed get_weather call every time, the name copied exactly nearly always', async () => {
    let exact = 0;
    const misspelt: string[] = [];
    for (const city of CITIES.heldOut) {
      const session = model.createSession({ contextLength: 2048 });
      const turn = await collect(session.stream([{ role: 'user', content: `What is the weather in ${city}?` }], { tools: [cityTool], temperature: 0, maxTokens: 200 }));
      const calls = turn.chunks.filter((c) => c.type === 'tool_call').map((c) => (c as { toolCall: { name: string; arguments: Record<string, unknown>; errors: string[] } }).toolCall);
      expect(calls).toHaveLength(1);
      expect(calls[0]!.name).toBe('get_weather');
      expect(validate(calls[0]!.arguments, cityTool)).toEqual([]);
      if (calls[0]!.arguments['city'] === city) exact++;
      else misspelt.push(`${city} -> ${JSON.stringify(calls[0]!.arguments['city'])}`);
      await session.dispose();
    }
    console.log(`held-out cities copied exactly into the tool call: ${exact}/${CITIES.heldOut.length}; misspelt: ${misspelt.join(', ')}`);
    expect(CITIES.heldOut.length).toBe(24);
    expect(exact).toBeGreaterThanOrEqual(MIN_HELD_OUT_CITIES_EXACT);
  }, 120_000);
});
