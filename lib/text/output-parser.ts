// Streams GLM-4.5 output tokens into typed events: `<think>…</think>` becomes reasoning, the rest text,
// `<tool_call>…</tool_call>` parsed tool calls (spec §6.3). Markers are recognised by token id, never by
// text, so a model that writes the characters "<think>" as ordinary text cannot switch channels.
// Text passes through the UTF-8 stream decoder and the stop-string matcher; each text or reasoning
// segment is trimmed at its edges like the chat template trims stored turns.
import { StopStringMatcher } from './stop-strings.js';
import { parseToolCall, type ParsedToolCall, type ToolDefinition } from './tool-calls.js';
import { Utf8StreamDecoder } from './utf8-stream.js';

/** What the parser needs from a tokenizer. */
export interface TokenText {
  /** Ids at or above this (embedding padding rows a model can still sample) have no text. */
  readonly vocabSize: number;
  tokenBytes(id: number): Uint8Array;
  tokenToId(token: string): number | undefined;
  isSpecial(id: number): boolean;
}

export type OutputEvent =
  | { type: 'text'; text: string }
  | { type: 'reasoning'; text: string }
  | { type: 'tool_call'; call: ParsedToolCall };

type Channel = 'text' | 'reasoning' | 'tool';

// Drops whitespace at the start and end of a segment, releasing inner whitespace only once more text
// follows it.
class EdgeTrimmer {
  #started = false;
  #pendingSpace = '';

  push(text: string): string {
    if (!this.#started) {
      text = text.replace(/^\s+/u, '');
      if (!text) return '';
      this.#started = true;
    }
    const combined = this.#pendingSpace + text;
    const trailing = /\s+$/u.exec(combined);
    this.#pendingSpace = trailing ? trailing[0] : '';
    return trailing ? combined.slice(0, trailing.index) : combined;
  }

  end(): void {
    this.#started = false;
    this.#pendingSpace = '';
  }
}

export interface OutputParserOptions {
  stop?: readonly string[];
  tools?: readonly ToolDefinition[];
}

export class GlmOutputParser {
  readonly #tok: TokenText;
  readonly #tools: readonly ToolDefinition[];
  readonly #markers: Map<number, string>;
  readonly #ids: { thinkStart?: number; thinkEnd?: number; toolStart?: number; toolEnd?: number };
  #channel: Channel = 'text';
  #utf8 = new Utf8StreamDecoder();
  #stop: StopStringMatcher;
  #trim = new EdgeTrimmer();
  #toolBody = '';
  #toolCount = 0;
  #done = false;

  constructor(tokenizer: TokenText, options: OutputParserOptions = {}) {
    this.#tok = tokenizer;
    this.#tools = options.tools ?? [];
    this.#stop = new StopStringMatcher(options.stop ?? []);
    const id = (t: string) => tokenizer.tokenToId(t);
    this.#ids = { thinkStart: id('<think>'), thinkEnd: id('</think>'), toolStart: id('<tool_call>'), toolEnd: id('</tool_call>') };
    // Argument markers are kept as text inside a tool call body (the body parser reads them).
    this.#markers = new Map();
    for (const m of ['<arg_key>', '</arg_key>', '<arg_value>', '</arg_value>']) {
      const i = id(m);
      if (i !== undefined) this.#markers.set(i, m);
    }
  }

  /** The stop string that ended the output, if one matched. */
  get stopMatched(): string | undefined {
    return this.#stop.matched;
  }

  /** True once a stop string matched: later tokens are ignored. */
  get done(): boolean {
    return this.#done;
  }

  push(id: number): OutputEvent[] {
    if (this.#done) return [];
    const events: OutputEvent[] = [];
    const ids = this.#ids;
    if (id === ids.thinkStart || id === ids.thinkEnd || id === ids.toolStart || id === ids.toolEnd) {
      this.#endSegment(events);
      if (id === ids.thinkStart) this.#channel = 'reasoning';
      else if (id === ids.thinkEnd) this.#channel = 'text';
      else if (id === ids.toolStart) {
        this.#channel = 'tool';
        this.#toolBody = '';
      } else if (this.#channel === 'tool') {
        events.push({ type: 'tool_call', call: parseToolCall(this.#toolBody, this.#toolCount++, this.#tools, true) });
        this.#channel = 'text';
      }
      return events;
    }
    const marker = this.#markers.get(id);
    if (marker !== undefined && this.#channel === 'tool') {
      this.#toolBody += this.#utf8.flush() + marker;
      return events;
    }
    if (id < 0 || id >= this.#tok.vocabSize) return events;  // a padding row: no text
    if (this.#tok.isSpecial(id) && marker === undefined) {
      // Control tokens (<|user|>, <|observation|>, <|endoftext|>, …) end a segment and are not text.
      this.#endSegment(events);
      return events;
    }
    const text = this.#utf8.push(this.#tok.tokenBytes(id));
    this.#emit(text, events);
    return events;
  }

  /** Ends the output: releases held text; an unterminated tool call is reported as such. */
  finish(): OutputEvent[] {
    const events: OutputEvent[] = [];
    this.#endSegment(events);
    if (this.#channel === 'tool' && !this.#done) {
      events.push({ type: 'tool_call', call: parseToolCall(this.#toolBody, this.#toolCount++, this.#tools, false) });
    }
    this.#channel = 'text';
    this.#done = true;
    return events;
  }

  #emit(text: string, events: OutputEvent[]): void {
    if (!text) return;
    if (this.#channel === 'tool') {
      this.#toolBody += text;
      return;
    }
    const safe = this.#stop.push(text);
    this.#append(safe, events);
    if (this.#stop.matched !== undefined) {
      this.#trim.end();
      this.#done = true;
    }
  }

  #append(text: string, events: OutputEvent[]): void {
    const out = this.#trim.push(text);
    if (!out) return;
    const type = this.#channel === 'reasoning' ? 'reasoning' : 'text';
    const last = events[events.length - 1];
    if (last && last.type === type) last.text += out;
    else events.push({ type, text: out });
  }

  // A special token ends the current piece of text: flush the UTF-8 tail (dead bytes become U+FFFD)
  // and any text held for a possible stop string, then forget edge whitespace.
  #endSegment(events: OutputEvent[]): void {
    if (this.#done) return;
    const tail = this.#utf8.flush();
    if (this.#channel === 'tool') {
      this.#toolBody += tail;
      return;
    }
    if (tail) this.#emit(tail, events);
    if (this.#done) return;
    this.#append(this.#stop.flush(), events);
    this.#trim.end();
  }
}
