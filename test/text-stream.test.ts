// Streaming text pieces: UTF-8 holding, stop strings, tool-call bodies and the GLM output parser.
// The parser is driven by a small hand-written vocabulary whose ids and bytes are stated here, so every
// expectation below is derived by hand from spec §6.
import { describe, expect, it } from 'vitest';
import { StopStringMatcher } from '../lib/text/stop-strings.js';
import { Utf8StreamDecoder } from '../lib/text/utf8-stream.js';
import { parseToolCall, type ToolDefinition } from '../lib/text/tool-calls.js';
import { GlmOutputParser, type OutputEvent, type TokenText } from '../lib/text/output-parser.js';

describe('Utf8StreamDecoder', () => {
  it('holds a character split across pushes and never emits a broken one', () => {
    const bytes = new TextEncoder().encode('a€😀b');  // 1 + 3 + 4 + 1 bytes
    const d = new Utf8StreamDecoder();
    const out: string[] = [];
    for (const b of bytes) out.push(d.push(Uint8Array.of(b)));
    out.push(d.flush());
    expect(out.join('')).toBe('a€😀b');
    expect(out.filter((s) => s.length > 0)).toEqual(['a', '€', '😀', 'b']);
  });

  it('turns dead bytes into U+FFFD and flushes an incomplete tail', () => {
    const d = new Utf8StreamDecoder();
    expect(d.push(Uint8Array.of(0x61, 0xff, 0x62))).toBe('a\uFFFDb');
    expect(d.push(Uint8Array.of(0xe2, 0x82))).toBe('');
    expect(d.flush()).toBe('\uFFFD');
  });
});

describe('StopStringMatcher', () => {
  it('never leaks a partial stop string and cuts at the earliest match', () => {
    const m = new StopStringMatcher(['END', 'stop here']);
    expect(m.push('Hello E')).toBe('Hello ');
    expect(m.push('N')).toBe('');
    expect(m.push('X')).toBe('ENX');  // not a stop after all: released
    expect(m.push(' and sto')).toBe(' and ');
    expect(m.push('p hereafter')).toBe('');
    expect(m.matched).toBe('stop here');
    expect(m.push('more')).toBe('');
    expect(m.flush()).toBe('');
  });

  it('matches a stop string inside one chunk and at the very first character', () => {
    const m = new StopStringMatcher(['\n\n']);
    expect(m.push('\n\nrest')).toBe('');
    expect(m.matched).toBe('\n\n');
    const n = new StopStringMatcher(['ab']);
    expect(n.push('xa')).toBe('x');
    expect(n.flush()).toBe('a');
  });
});

describe('parseToolCall', () => {
  const tools: ToolDefinition[] = [{
    type: 'function',
    function: {
      name: 'search',
      parameters: { type: 'object', properties: { query: { type: 'string' }, limit: { type: 'integer' }, filters: { type: 'object' } } },
    },
  }];

  it('types values by the schema: strings raw, others JSON', () => {
    const body = 'search\n<arg_key>query</arg_key>\n<arg_value>"quoted" {not json}</arg_value>\n'
      + '<arg_key>limit</arg_key>\n<arg_value>3</arg_value>\n<arg_key>filters</arg_key>\n<arg_value>{"tags": ["a"]}</arg_value>\n';
    const call = parseToolCall(body, 0, tools, true);
    expect(call).toMatchObject({ id: 'call_0', name: 'search', errors: [] });
    expect(call.arguments).toEqual({ query: '"quoted" {not json}', limit: 3, filters: { tags: ['a'] } });
  });

  it('reports malformed calls instead of dropping them', () => {
    const bad = parseToolCall('search\n<arg_key>limit</arg_key><arg_value>three</arg_value>', 1, tools, false);
    expect(bad.arguments).toEqual({ limit: 'three' });
    expect(bad.errors).toEqual([
      'the model stopped inside this tool call (no </tool_call>)',
      'argument "limit" should be "integer" but is not valid JSON',
    ]);
    expect(parseToolCall('nosuch\n', 2, tools, true).errors).toEqual(['unknown tool "nosuch"']);
    const proto = parseToolCall('x<arg_key>__proto__</arg_key><arg_value>{"a":1}</arg_value>', 3, [], true);
    expect(Object.getPrototypeOf(proto.arguments)).toBe(Object.prototype);
    expect(Object.keys(proto.arguments)).toEqual(['__proto__']);
  });
});

// A hand-made vocabulary: ordinary tokens are their UTF-8 text; the markers have the GLM spellings.
const VOCAB = [
  '<|endoftext|>', '<|user|>', '<|observation|>', '<think>', '</think>', '<tool_call>', '</tool_call>',
  '<arg_key>', '</arg_key>', '<arg_value>', '</arg_value>',
  '\n', 'Hello', ' world', 'Let me', ' think', '.', 'get_weather', 'city', 'Zürich', 'temp', '20', 'STOP', 'ST', 'OP',
];
const SPECIAL = new Set(['<|endoftext|>', '<|user|>', '<|observation|>']);
const vocab: TokenText & { ids: (...t: string[]) => number[] } = {
  vocabSize: VOCAB.length,
  tokenBytes: (id) => new TextEncoder().encode(VOCAB[id]!),
  tokenToId: (t) => (VOCAB.includes(t) ? VOCAB.indexOf(t) : undefined),
  isSpecial: (id) => SPECIAL.has(VOCAB[id]!),
  ids: (...t) => t.map((x) => { const i = VOCAB.indexOf(x); if (i < 0) throw new Error(x); return i; }),
};

function run(tokens: number[], opts: ConstructorParameters<typeof GlmOutputParser>[1] = {}): { events: OutputEvent[]; parser: GlmOutputParser } {
  const parser = new GlmOutputParser(vocab, opts);
  const events: OutputEvent[] = [];
  for (const t of tokens) events.push(...parser.push(t));
  events.push(...parser.finish());
  return { events, parser };
}

const joined = (events: OutputEvent[], type: 'text' | 'reasoning') =>
  events.filter((e) => e.type === type).map((e) => (e as { text: string }).text).join('');

describe('GlmOutputParser', () => {
  it('splits reasoning from the answer and trims segment edges like the template', () => {
    const { events } = run(vocab.ids('\n', '<think>', 'Let me', ' think', '.', '\n', '</think>', '\n', 'Hello', ' world', '<|user|>'));
    expect(joined(events, 'reasoning')).toBe('Let me think.');
    expect(joined(events, 'text')).toBe('Hello world');
  });

  it('parses a tool call and ignores the <|observation|> stop token', () => {
    const { events } = run(vocab.ids(
      '<think>', '</think>', '\n', '<tool_call>', 'get_weather', '\n', '<arg_key>', 'city', '</arg_key>', '\n',
      '<arg_value>', 'Zürich', '</arg_value>', '\n', '</tool_call>', '<|observation|>'));
    const calls = events.filter((e) => e.type === 'tool_call');
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ call: { name: 'get_weather', arguments: { city: 'Zürich' }, errors: [] } });
    expect(joined(events, 'text')).toBe('');
  });

  it('reports an unterminated tool call at the end', () => {
    const { events } = run(vocab.ids('<tool_call>', 'get_weather', '\n', '<arg_key>', 'city'));
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'tool_call', call: { name: 'get_weather' } });
    expect((events[0] as { call: { errors: string[] } }).call.errors[0]).toContain('no </tool_call>');
  });

  it('stops at a stop string spanning tokens without leaking any of it', () => {
    const { events, parser } = run(vocab.ids('Hello', ' world', 'ST', 'OP', 'Hello'), { stop: ['STOP'] });
    expect(joined(events, 'text')).toBe('Hello world');
    expect(parser.stopMatched).toBe('STOP');
    expect(parser.done).toBe(true);
  });

  it('does not treat marker text written as ordinary characters as a channel switch', () => {
    // "<think>" spelled with ordinary tokens would arrive as bytes, not as the marker id.
    const parser = new GlmOutputParser({ ...vocab, tokenBytes: (id) => new TextEncoder().encode(id === 0 ? '<think>' : VOCAB[id]!), isSpecial: () => false });
    const events = [...parser.push(0), ...parser.push(vocab.ids('Hello')[0]!), ...parser.finish()];
    expect(joined(events, 'text')).toBe('<think>Hello');
  });
});
