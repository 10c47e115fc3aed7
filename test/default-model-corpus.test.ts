// The default model's training corpus (scripts/train-default-model): the made-up names and tools of
// the copying phase must be consistent conversations, or the model learns to invent arguments instead
// of copying them. Checked on generated conversations against rules written here, independently of
// the generator: the call names a declared tool, its arguments fit that tool's schema, every string
// argument is copied verbatim from the user's request, and the final answer quotes every number of
// the tool's result.
import { describe, expect, it } from 'vitest';
import { trainingConversations, evalConversations } from '../scripts/train-default-model/corpus.mjs';
import { CITIES, CITY_ATTRIBUTES } from '../scripts/train-default-model/lists.mjs';
import { setSyntheticNames, setSyntheticTools, TRAIN_TOOL_NAMES } from '../scripts/train-default-model/tasks.mjs';

type Schema = { properties: Record<string, { type: string; enum?: string[] }>; required: string[] };
type Tool = { function: { name: string; parameters: Schema } };
type Message = { role: string; content: string; tool_calls?: { function: { name: string; arguments: Record<string, unknown> } }[] };
type Conversation = { family: string; tools?: Tool[]; messages: Message[]; evaluation: { kind: string; results?: Record<string, unknown>[] } };

function generate(seed: number, count: number, names: number, style: string, tools: number): Conversation[] {
  setSyntheticNames(names, style);
  setSyntheticTools(tools);
  try {
    return trainingConversations(seed, count, { tool: 1 }).map((c: { conv: Conversation }) => c.conv);
  } finally {
    setSyntheticNames(0);
    setSyntheticTools(0);
  }
}

const userRequest = (c: Conversation) => c.messages.find((m) => m.role === 'user')!.content;
const callsOf = (c: Conversation) => c.messages.flatMap((m) => m.tool_calls ?? []).map((t) => t.function);

function toolProblems(conv: Conversation): string[] {
  const problems: string[] = [];
  const request = userRequest(conv);
  const declared = new Map((conv.tools ?? []).map((t) => [t.function.name, t.function.parameters]));
  const calls = callsOf(conv);
  if (calls.length === 0) problems.push('no call');
  for (const call of calls) {
    const schema = declared.get(call.name);
    if (!schema) { problems.push(`${call.name} is not declared`); continue; }
    for (const r of schema.required) if (!(r in call.arguments)) problems.push(`${call.name}: missing ${r}`);
    for (const [k, v] of Object.entries(call.arguments)) {
      const p = schema.properties[k];
      if (!p) problems.push(`${call.name}: unknown argument ${k}`);
      else if (p.type === 'string' && typeof v !== 'string') problems.push(`${call.name}.${k} is not a string`);
      else if (p.type === 'integer' && !Number.isInteger(v)) problems.push(`${call.name}.${k} is not an integer`);
      else if (p.enum && !p.enum.includes(v as string)) problems.push(`${call.name}.${k} not in its enum`);
      else if (p.type === 'string' && !p.enum && !request.includes(v as string)) problems.push(`${call.name}.${k}=${String(v)} is not in the request`);
    }
  }
  const answer = conv.messages.at(-1)!;
  if (answer.role !== 'assistant' || answer.tool_calls) problems.push('does not end with an answer');
  const resultNumbers = conv.messages.filter((m) => m.role === 'tool').flatMap((m) => m.content.match(/-?\d+(\.\d+)?/g) ?? []);
  for (const n of resultNumbers) if (!answer.content.includes(n)) problems.push(`the answer does not quote ${n}`);
  return problems;
}

describe('copying-phase corpus (made-up names and tools)', () => {
  const convs = generate(4, 600, 0.7, 'mixed', 0.35).filter((c) => c.family === 'tool');

  it('every tool conversation calls a declared tool with arguments copied from the request', () => {
    expect(convs.length).toBeGreaterThan(400);
    const bad = convs.map((c) => [userRequest(c), toolProblems(c)] as const).filter(([, p]) => p.length > 0);
    expect(bad).toEqual([]);
  });

  it('a third of the requests ask for made-up attribute tools, named after the noun the user used', () => {
    const known = new Set([...TRAIN_TOOL_NAMES, ...CITY_ATTRIBUTES.heldOut.map((a: { key: string }) => `get_${a.key}`)]);
    const madeUp = convs.map((c) => callsOf(c)[0]!.name).filter((n) => !known.has(n));
    expect(madeUp.length / convs.length).toBeGreaterThan(0.25);
    expect(madeUp.length / convs.length).toBeLessThan(0.45);
    // "get_pollen_level" for "pollen level", and also "get_timezone" for "time zone".
    const squeeze = (x: string) => x.toLowerCase().replace(/[ _]/g, '');
    for (const c of convs) {
      const name = callsOf(c)[0]!.name;
      if (!known.has(name)) expect(squeeze(userRequest(c))).toContain(squeeze(name.slice('get_'.length)));
    }
  });

  it('made-up cities are never the real ones kept for evaluation, and include cluster and syllable shapes', () => {
    const cities = convs.flatMap((c) => callsOf(c).map((t) => t.arguments['city'])).filter((x): x is string => typeof x === 'string');
    const real = new Set<string>(CITIES.train);
    const madeUp = cities.filter((x) => !real.has(x));
    for (const x of madeUp) expect(CITIES.heldOut).not.toContain(x);
    expect(madeUp.length / cities.length).toBeGreaterThan(0.6);
    expect(madeUp.some((x) => /[bcdfghjklmnprstvz]{2}/i.test(x))).toBe(true);  // clusters ("Strandel")
    expect(madeUp.some((x) => /^([bcdfghjklmnprstvz][aeiouyáéíóúäöüå])+[bcdfghjklmnprstvz]?$/i.test(x))).toBe(true);  // syllables
  });

  it('the options are off unless set, and evaluation sets never draw made-up names', () => {
    const plain = JSON.stringify(trainingConversations(3, 200));
    generate(9, 50, 0.7, 'mixed', 0.35);  // sets the options, then resets them
    expect(JSON.stringify(trainingConversations(3, 200))).toBe(plain);
    const heldOut = JSON.stringify(evalConversations(1001, 3));
    setSyntheticNames(0.7, 'mixed');
    setSyntheticTools(0.35);
    try {
      expect(JSON.stringify(evalConversations(1001, 3))).toBe(heldOut);
    } finally {
      setSyntheticNames(0);
      setSyntheticTools(0);
    }
  });
});
