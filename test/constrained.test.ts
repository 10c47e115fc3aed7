// Constrained decoding end to end on the trained default model: outputs under a GBNF grammar match an
// independent regex, outputs under random JSON Schemas parse and validate with ajv (1,000 schemas,
// sampled at temperature 1), forced tool calls parse and validate, speculative decoding and batching
// keep the grammar, and bad grammars / schemas / options are clear errors that leave the model usable.
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Model } from '../lib/index.js';
import { validateConstrainedOutput } from '../lib/constrained/validate.js';
import { resolveConstraint } from '../lib/constrained/options.js';
import { renameRule } from '../lib/constrained/gbnf.js';
import type { ToolDefinition } from '../lib/text/tool-calls.js';

// ajv-formats is CommonJS with a default export; under NodeNext it arrives as the module object.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as (ajv: Ajv) => Ajv;

const MODEL_DIR = new URL('../models/tiny-default', import.meta.url).pathname;
let model: Model;

beforeAll(async () => {
  model = await Model.load(MODEL_DIR);
}, 60_000);
afterAll(async () => {
  await model?.dispose();
});

const ask = (content: string) => [{ role: 'user' as const, content }];

describe('GBNF grammars', () => {
  it('sampled outputs (temperature 1, thinking on and off) always match the grammar; reasoning stays free', async () => {
    const grammar = 'root ::= ("yes" | "no") ", " [a-z]{1,6} "."';
    const re = /^(yes|no), [a-z]{1,6}\.$/;
    const runs = await Promise.all(Array.from({ length: 24 }, (_, i) =>
      model.generate(ask('Is the sky blue?'), { grammar, temperature: 1, seed: i, maxTokens: 300, thinking: i % 2 === 0 })));
    for (const r of runs) {
      expect(r.text).toMatch(re);
      expect(r.finishReason).toBe('stop');
      expect(r.stop).toBeUndefined();  // the grammar ended it, not a stop token
    }
    expect(runs.filter((_, i) => i % 2 === 0).some((r) => r.reasoning.length > 0)).toBe(true);
  }, 120_000);

  it('raw prompts are constrained from the first token; a stop string cuts the output without an error', async () => {
    const r = await model.generate('Count:', { grammar: 'root ::= "1 2 3 " [0-9]+', temperature: 0, maxTokens: 12 });
    expect(r.text).toMatch(/^1 2 3 [0-9]+$/);
    const s = await model.generate('Count:', { grammar: 'root ::= "1 2 3 4"', temperature: 0, stop: ' 3' });
    expect(s.text).toBe('1 2');
    expect(s.stop).toEqual({ string: ' 3' });
  }, 60_000);

  it('speculative decoding keeps the grammar and the exact greedy / seeded output', async () => {
    // A fresh model: the adaptive policy of the shared one may have stopped drafting for its traffic.
    const fresh = await Model.load(MODEL_DIR);
    try {
      const grammar = 'root ::= "The answer is " [0-9]+ "." " " [A-Za-z ]{0,40} "."';
      for (const temperature of [0, 1]) {
        const a = await fresh.generate(ask('What is 12+7?'), { grammar, temperature, seed: 5, thinking: true, speculative: false, maxTokens: 300 });
        const b = await fresh.generate(ask('What is 12+7?'), { grammar, temperature, seed: 5, thinking: true, speculative: { draftTokens: 2 }, maxTokens: 300 });
        expect(b.tokens).toEqual(a.tokens);
        expect(b.text).toMatch(/^The answer is [0-9]+\. [A-Za-z ]{0,40}\.$/);
        expect(b.usage.draftTokens).toBeGreaterThan(0);
      }
      // A grammar that ends on the bonus token of an accepted draft keeps that token (it once ended one
      // token early: the end was judged on the matcher's state after the whole round).
      // (Prompts for which the MTP layer's draft of the second digit is accepted: the model writes an
      // arithmetic answer's first digits here, and its drafts follow them.)
      const session = fresh.createSession({ contextLength: 2048 });
      const messages = [...ask('What is 3 + 4?')];
      const t1 = await session.generate(messages, { grammar: 'root ::= [1-9]', thinking: false, temperature: 0 });
      messages.push({ role: 'assistant', content: t1.text } as never, ...ask('What is 25 + 17?'));
      const t2 = await session.generate(messages, { grammar: 'root ::= [1-9] [0-9]', thinking: false, temperature: 0 });
      expect(t2.text).toMatch(/^[1-9][0-9]$/);
      expect(t2.usage.acceptedDraftTokens).toBeGreaterThan(0);
      await session.dispose();
    } finally {
      await fresh.dispose();
    }
  }, 60_000);

  it('concurrent requests each keep their own grammar; sessions reuse their prefix', async () => {
    const grammars = ['root ::= "alpha" [0-9]', 'root ::= "beta" [a-c]', 'root ::= [xyz]{3}'];
    const res = [/^alpha[0-9]$/, /^beta[a-c]$/, /^[xyz]{3}$/];
    const runs = await Promise.all(grammars.flatMap((g, i) => [0, 1, 2].map((s) =>
      model.generate(ask('Say something.'), { grammar: g, temperature: 1, seed: s, thinking: false }).then((r) => ({ r, i })))));
    for (const { r, i } of runs) expect(r.text).toMatch(res[i]!);
    const session = model.createSession({ contextLength: 2048 });
    const messages = [...ask('Pick a number.')];
    const t1 = await session.generate(messages, { grammar: 'root ::= [1-9]', thinking: false, temperature: 0 });
    messages.push({ role: 'assistant', content: t1.text } as never, ...ask('Another one.'));
    const t2 = await session.generate(messages, { grammar: 'root ::= [1-9] [0-9]', thinking: false, temperature: 0 });
    expect(t1.text).toMatch(/^[1-9]$/);
    expect(t2.text).toMatch(/^[1-9][0-9]$/);
    expect(t2.usage.cachedTokens).toBeGreaterThan(0);
    await session.dispose();
  }, 60_000);
});

// A seeded generator of JSON Schemas whose instances are bounded (every string, array and number has
// limits), so each sampled output must end inside maxTokens.
function schemaGenerator(seed: number) {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s ^ (s >>> 15), 2246822507) + 0x9e3779b9) >>> 0) / 2 ** 32);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const keys = ['a', 'name', 'na"me', 'k\\ey', 'émoji😀', 'id', 'x y', 'über', 'tab\t', 'n'];
  const gen = (depth: number): Record<string, unknown> => {
    const kind = pick(depth >= 2 ? ['string', 'integer', 'boolean', 'null', 'enum'] : ['string', 'integer', 'boolean', 'null', 'enum', 'object', 'array', 'anyOf', 'object']);
    switch (kind) {
      case 'string': return { type: 'string', maxLength: 1 + Math.floor(rnd() * 8) };
      case 'integer': { const lo = Math.floor(rnd() * 200) - 100; return { type: 'integer', minimum: lo, maximum: lo + Math.floor(rnd() * 1000) }; }
      case 'boolean': return { type: 'boolean' };
      case 'null': return { type: 'null' };
      case 'enum': return { enum: pick([['red', 'reddish', 'redder'], ['a', 'ab', 'abc', 1, null], ['x"y', 'x\\y', 'ü']]) };
      case 'anyOf': return { anyOf: [gen(depth + 1), gen(depth + 1)] };
      case 'array': return { type: 'array', items: gen(depth + 1), maxItems: Math.floor(rnd() * 4), ...(rnd() < 0.5 ? { minItems: 0 } : {}) };
      default: {
        const n = Math.floor(rnd() * 4);
        const props: Record<string, unknown> = {};
        for (let i = 0; i < n; i++) props[pick(keys)] = gen(depth + 1);
        const names = Object.keys(props);
        return { type: 'object', properties: props, required: names.filter(() => rnd() < 0.5), additionalProperties: false };
      }
    }
  };
  return () => gen(0);
}

describe('JSON Schema response formats', () => {
  it('1,000 random schemas sampled at temperature 1: every output parses and validates with ajv', async () => {
    const next = schemaGenerator(20261205);
    const ajv = new Ajv({ strict: false });
    const schemas = Array.from({ length: 1000 }, next);
    let done = 0;
    for (let b = 0; b < schemas.length; b += 100) {
      const batch = schemas.slice(b, b + 100);
      const results = await Promise.all(batch.map((schema, i) => model.generate(ask('Reply in JSON.'), {
        responseFormat: { type: 'json_schema', schema }, temperature: 1, seed: b + i, thinking: false, maxTokens: 400,
      })));
      results.forEach((r, i) => {
        expect(r.finishReason, JSON.stringify(batch[i])).toBe('stop');
        const value = JSON.parse(r.text);
        expect(ajv.validate(batch[i]!, value), `${JSON.stringify(batch[i])} -> ${r.text}`).toBe(true);
        done++;
      });
    }
    expect(done).toBe(1000);
  }, 400_000);

  it('known-hard schemas: escaped keys, unicode, exponents, deep arrays, empty objects, shared enum prefixes', async () => {
    const cases: Record<string, unknown>[] = [
      { type: 'object', properties: { 'q"uote\\d': { type: 'boolean' }, 'ü\u0001': { type: 'null' } }, required: ['q"uote\\d', 'ü\u0001'], additionalProperties: false },
      { type: 'array', items: { type: 'array', items: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 }, maxItems: 2 }, maxItems: 2 }, minItems: 1, maxItems: 2 },
      { type: 'object', properties: {}, additionalProperties: false },
      { enum: ['abc', 'abcd', 'ab', '"}]', '",'] },
      { type: 'object', properties: { v: { type: 'string', pattern: '^[a-c]{2}-[0-9]$' } }, required: ['v'], additionalProperties: false },
      // Formats: the grammar must offer only strings the format accepts (a day the month lacks, 02-29 of
      // a common year or a leap second off 23:59 UTC would be an internal error).
      { type: 'object', properties: { d: { type: 'string', format: 'date' } }, required: ['d'], additionalProperties: false },
      { type: 'object', properties: { t: { type: 'string', format: 'date-time' } }, required: ['t'], additionalProperties: false },
    ];
    const ajv = addFormats(new Ajv({ strict: false, validateFormats: true }));
    for (const schema of cases) {
      for (const seed of [1, 2, 3]) {
        const r = await model.generate(ask('JSON please.'), { responseFormat: { type: 'json_schema', schema }, temperature: 1, seed, thinking: seed === 1, maxTokens: 400 });
        const value = JSON.parse(r.text);
        expect(ajv.validate(schema, value), `${JSON.stringify(schema)} -> ${r.text}`).toBe(true);
      }
    }
    const obj = await model.generate(ask('JSON please.'), { responseFormat: { type: 'json_object' }, temperature: 1, seed: 9, thinking: false, maxTokens: 400 });
    if (obj.finishReason === 'stop') expect(typeof JSON.parse(obj.text)).toBe('object');
  }, 120_000);

  it('a mismatch that slipped through would be raised, not returned (the ajv check itself)', () => {
    const c = resolveConstraint({ responseFormat: { type: 'json_schema', schema: { type: 'object', required: ['a'] } } }, []);
    expect(() => validateConstrainedOutput(c, [], '{"a": 1}', [], true)).not.toThrow();
    expect(() => validateConstrainedOutput(c, [], '{"b": 1}', [], true)).toThrow(/does not match its schema/);
    expect(() => validateConstrainedOutput(c, [], '{"b"', [], true)).toThrow(/not JSON/);
    expect(() => validateConstrainedOutput(c, [], '{"b"', [], false)).not.toThrow();  // cut by maxTokens: not checked
  });
});

const weather: ToolDefinition = {
  type: 'function',
  function: {
    name: 'get_weather', description: 'Get the current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1, maximum: 7 }, unit: { type: 'string', enum: ['c', 'f'] } }, required: ['city', 'days'] },
  },
};
const search: ToolDefinition = {
  type: 'function',
  function: { name: 'search_notes', description: 'Search notes', parameters: { type: 'object', properties: { tags: { type: 'array', items: { type: 'string', maxLength: 6 }, maxItems: 3 } }, required: ['tags'] } },
};

describe('tool choice', () => {
  it('required / named: every call parses and its arguments validate against the schema', async () => {
    const ajv = new Ajv({ strict: false });
    for (const [i, toolChoice] of (['required', { name: 'search_notes' }, 'required'] as const).entries()) {
      const r = await model.generate(ask(i === 1 ? 'Find my notes about cats.' : 'Tell me a joke.'), { tools: [weather, search], toolChoice, temperature: 1, seed: i, maxTokens: 300 });
      expect(r.toolCalls.length).toBeGreaterThan(0);
      for (const call of r.toolCalls) {
        expect(call.errors).toEqual([]);
        const tool = [weather, search].find((t) => t.function.name === call.name)!;
        expect(ajv.validate(tool.function.parameters!, call.arguments), JSON.stringify(call)).toBe(true);
        if (typeof toolChoice === 'object') expect(call.name).toBe('search_notes');
      }
    }
  }, 120_000);

  it("'none' never calls a tool, even when asked for the weather", async () => {
    const r = await model.generate(ask('What is the weather in Paris?'), { tools: [weather], toolChoice: 'none', temperature: 0, maxTokens: 200 });
    expect(r.toolCalls).toEqual([]);
    expect(r.finishReason).not.toBe('tool_calls');
  }, 60_000);
});

describe('bad grammars, schemas and options', () => {
  it('are InvalidParamError naming the problem, and the model stays usable', async () => {
    await expect(model.generate('x', { grammar: 'root ::= foo' })).rejects.toMatchObject({ code: 'INVALID_PARAM', message: /1:10: undefined rule 'foo'/ });
    await expect(model.generate('x', { grammar: 'root ::= "a' })).rejects.toMatchObject({ code: 'INVALID_PARAM', message: /unterminated/ });
    await expect(model.generate('x', { grammar: 'glm-x ::= "a"\nroot ::= glm-x' })).rejects.toMatchObject({ code: 'INVALID_PARAM', message: /reserved/ });
    await expect(model.generate('x', { responseFormat: { type: 'json_schema', schema: { type: 'object', patternProperties: {} } } })).rejects.toMatchObject({ code: 'INVALID_PARAM', message: /patternProperties/ });
    await expect(model.generate('x', { responseFormat: { type: 'json_schema', schema: { type: 'integer', multipleOf: 3 } } })).rejects.toMatchObject({ code: 'INVALID_PARAM', message: /multipleOf/ });
    await expect(model.generate('x', { responseFormat: { type: 'yaml' } as never })).rejects.toMatchObject({ code: 'INVALID_PARAM' });
    await expect(model.generate('x', { responseFormat: { type: 'json_object' }, grammar: 'root ::= "a"' })).rejects.toMatchObject({ code: 'INVALID_PARAM' });
    await expect(model.generate(ask('x'), { toolChoice: 'required' })).rejects.toMatchObject({ code: 'INVALID_PARAM', message: /needs tools/ });
    await expect(model.generate(ask('x'), { tools: [weather], toolChoice: { name: 'nope' } })).rejects.toMatchObject({ code: 'INVALID_PARAM', message: /nope/ });
    let deep: Record<string, unknown> = { type: 'integer' };
    for (let i = 0; i < 100; i++) deep = { type: 'array', items: deep };
    await expect(model.generate('x', { responseFormat: { type: 'json_schema', schema: deep } })).rejects.toMatchObject({ code: 'INVALID_PARAM' });
    const ok = await model.generate('x', { grammar: 'root ::= "ok"', temperature: 0 });
    expect(ok.text).toBe('ok');
  }, 60_000);

  it('renameRule renames only rule names, never literals, classes, comments or token references', () => {
    const g = 'root ::= "root" [root] <[1]> rooty # root\nrooty ::= root';
    expect(renameRule(g, 'root', 'glm-')).toBe('glm- ::= "root" [root] <[1]> rooty # root\nrooty ::= glm-');
  });
});
