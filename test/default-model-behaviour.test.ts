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
 * not the 2-digit + 1-digit sums that training's facts conversations use as small talk. */
function heldOutSample(): { a: number; op: '+' | '-'; b: number }[] {
  let x = 12345;
  const next = (lo: number, hi: number) => { x = (x * 1103515245 + 12345) % 2147483648; return lo + (x % (hi - lo + 1)); };
  const out: { a: number; op: '+' | '-'; b: number }[] = [];
  for (const [op, digits] of [['+', 2], ['+', 3], ['-', 2], ['-', 3]] as const) {
    let found = 0;
    while (found < 3) {
      const a = next(10 ** (digits - 1), 10 ** digits - 1);
      const b = next(1, 10 ** digits - 1);
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

describe('held-out arithmetic (greedy)', () => {
  const problems = heldOutSample();

  it('the sample really is held out and mixes carries, borrows and negative results', () => {
    expect(problems).toHaveLength(12);
    for (const p of problems) expect(isHeldOutProblem(p.a, p.op, p.b) && !IN_FACTS_DISTRACTORS(p.a, p.op, p.b)).toBe(true);
    expect(problems.some((p) => p.op === '-' && p.a < p.b)).toBe(true);
  });

  it('with thinking: step-by-step reasoning as reasoning chunks, then the right answer as text', async () => {
    const session = model.createSession({ contextLength: 1024 });
    for (const { a, op, b } of problems) {
      const messages: ChatMessage[] = [{ role: 'user', content: `What is ${a} ${op} ${b}?` }];
      const { text, reasoning, chunks } = await collect(session.stream(messages, { temperature: 0, maxTokens: 300 }));
      const expected = op === '+' ? a + b : a - b;
      expect(lastInteger(text), `${a} ${op} ${b}: ${JSON.stringify(text)}`).toBe(expected);
      expect(chunks.findIndex((c) => c.type === 'reasoning')).toBeLessThan(chunks.findIndex((c) => c.type === 'text'));
      expect(reasoning).toMatch(/Ones: /);        // the column-by-column reasoning it was trained to write
      expect(text).not.toMatch(/Ones: /);         // ... which stays out of the answer
    }
    await session.dispose();
  }, 180_000);

  it('without thinking: no reasoning chunks, the right answer directly', async () => {
    const session = model.createSession({ contextLength: 1024 });
    let right = 0;
    for (const { a, op, b } of problems) {
      const messages: ChatMessage[] = [{ role: 'user', content: `What is ${a} ${op} ${b}?` }];
      const { text, chunks } = await collect(session.stream(messages, { temperature: 0, maxTokens: 40, thinking: false }));
      expect(chunks.some((c) => c.type === 'reasoning')).toBe(false);
      if (lastInteger(text) === (op === '+' ? a + b : a - b)) right++;
    }
    expect(right).toBe(problems.length);
    await session.dispose();
  }, 120_000);
});

describe('tool use through session.stream', () => {
  const weather: ToolDefinition = {
    type: 'function',
    function: {
      name: 'get_weather',
      description: 'Get the current weather for a city',
      parameters: {
        type: 'object',
        properties: { city: { type: 'string', description: 'City name' }, days: { type: 'integer', description: 'Number of days to forecast' } },
        required: ['city'],
      },
    },
  };

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

  it('calls the tool with typed, valid arguments and answers with the value the tool returned', async () => {
    // A city never seen in training, and a forecast the model cannot know without reading the result.
    const city = CITIES.heldOut[3]!;
    const session = model.createSession({ contextLength: 2048 });
    const messages: ChatMessage[] = [{ role: 'user', content: `What will the weather be in ${city} for the next 3 days?` }];
    const turn1 = await collect(session.stream(messages, { tools: [weather], temperature: 0, maxTokens: 200 }));
    const done1 = turn1.chunks.at(-1)!;
    expect(done1.type).toBe('done');
    if (done1.type !== 'done') return;
    expect(done1.result.finishReason).toBe('tool_calls');
    const calls = turn1.chunks.filter((c) => c.type === 'tool_call').map((c) => (c as { toolCall: { name: string; arguments: Record<string, unknown>; errors: string[] } }).toolCall);
    expect(calls).toHaveLength(1);
    const call = calls[0]!;
    expect(call.errors).toEqual([]);
    expect(call.name).toBe('get_weather');
    expect(validate(call.arguments, weather)).toEqual([]);
    expect(call.arguments).toEqual({ city, days: 3 });   // days typed as a number by the schema

    const forecast = ['foggy', 'sunny', 'stormy'];
    messages.push(
      { role: 'assistant', content: done1.result.text, reasoning_content: done1.result.reasoning, tool_calls: [{ type: 'function', function: { name: call.name, arguments: call.arguments } }] },
      { role: 'tool', content: JSON.stringify({ city, days: 3, forecast }) },
    );
    const turn2 = await collect(session.stream(messages, { tools: [weather], temperature: 0, maxTokens: 200 }));
    for (const f of forecast) expect(turn2.text).toContain(f);
    expect(turn2.text).toContain(city);
    await session.dispose();
  }, 120_000);
});
