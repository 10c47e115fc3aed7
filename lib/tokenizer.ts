// Byte-level BPE tokenizer read from a checkpoint's tokenizer.json / tokenizer_config.json (spec §6.1).
//
// Division of labour with @huggingface/tokenizers: the library parses the tokenizer.json components
// and runs normalisation and pre-tokenisation (the split regex, translated from Oniguruma to JS, and
// the ByteLevel byte→character mapping). The BPE merge loop, added-token splitting and decoding are
// done here, because:
//  - the library's BPE keys its pair table by JSON.stringify per lookup and copies nodes per merge:
//    measured ~7 µs per byte on long mergeable words (1 MB of spaces: 6.9 s), against ~0.4 µs here
//    with integer pair keys and a typed-array heap. The long-word case is what a hostile prompt hits
//    (RELIABILITY C6).
//  - the library always splits added tokens out of the text; user content must be tokenized as plain
//    text (C7), so the special/plain choice has to be ours.
//  - decode must work on raw bytes: `tokenBytes` feeds the streaming decoder, and `decode` is exactly
//    the UTF-8 decoding of the concatenated bytes (the library's decode also throws on an empty list
//    and applies clean_up_tokenization_spaces by default).
// test/tokenizer.test.ts checks that encode (special: true) and decode agree with the library's own.

import { lstat, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import * as hfTokenizers from '@huggingface/tokenizers';
import { CHAR_TO_BYTE } from './byte-level.js';
import { InvalidParamError, InvalidTokenError, ModelFormatError, ModelLoadError, UnsupportedFormatError } from './errors.js';

/** Longest text `encode` accepts, in UTF-8 bytes. Bounds time (linear, ~1 s per MB worst case) and memory. */
export const MAX_ENCODE_BYTES = 16 * 1024 * 1024;
/** Largest tokenizer.json read (GLM-4.5's is ~20 MB). */
const MAX_TOKENIZER_JSON_BYTES = 256 * 1024 * 1024;
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;
/** Token ids must stay below this: pair keys are left·2^21 + right, exact in a double. */
const MAX_VOCAB = 1 << 21;
/** Words up to this many bytes are cached (repeated words are the common case in real text). */
const CACHE_MAX_WORD = 256;
const CACHE_MAX_ENTRIES = 65536;

export interface EncodeOptions {
  /**
   * Map added-token text (`<|user|>`, `<think>`, …) to its id. Default false: every character is
   * ordinary text, so user content cannot forge a role or a tool call (RELIABILITY C7). Use true only
   * for text the application produced, such as a rendered chat template.
   */
  special?: boolean;
}

export interface DecodeOptions {
  /** Leave out tokens flagged `special` in tokenizer.json (for GLM: role and control tokens, not `<think>` or tool markup). */
  skipSpecial?: boolean;
}

export interface AddedTokenInfo {
  readonly id: number;
  readonly content: string;
  readonly special: boolean;
}

interface AddedToken extends AddedTokenInfo {
  readonly lstrip: boolean;
  readonly rstrip: boolean;
}

// The package's .d.ts files use extension-less relative imports, which NodeNext resolution cannot
// follow, so its classes arrive untyped; these are the parts used here.
interface HfTokenizer {
  normalizer: ((text: string) => string) | null;
  pre_tokenizer: ((text: string) => string[]) | null;
}
const HfTokenizer = hfTokenizers.Tokenizer as unknown as new (tokenizerJson: object, config: object) => HfTokenizer;

/** Replaces lone surrogates with U+FFFD (String.prototype.toWellFormed, which ES2022 typings lack). */
function wellFormed(text: string): string {
  const s = text as string & { toWellFormed?: () => string };
  if (typeof s.toWellFormed === 'function') return s.toWellFormed();
  return text.replace(/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g, '\uFFFD');
}

function escapeRegExp(s: string): string {
  return s.replace(/[\^$\\.*+?()[\]{}|\/]/g, '\\$&'); // SyntaxCharacters and '/': the only identity escapes /u allows
}

/**
 * True if a regex source has a quantified group that itself contains a quantifier, like `(a+)+` — the
 * shape behind catastrophic backtracking in JS's backtracking engine (RELIABILITY B10). Conservative:
 * it may flag a harmless pattern, never misses this shape. Escapes and character classes are skipped.
 */
export function hasNestedQuantifier(source: string): boolean {
  const stack: boolean[] = []; // per open group: does its body contain a quantifier?
  let inClass = false;
  for (let i = 0; i < source.length; i++) {
    const c = source[i]!;
    if (c === '\\') { i++; continue; }
    if (inClass) { if (c === ']') inClass = false; continue; }
    if (c === '[') { inClass = true; continue; }
    if (c === '(') { stack.push(false); continue; }
    const isQuant = c === '*' || c === '+' || (c === '{' && /^\{\d*,?\d*\}/.test(source.slice(i, i + 12)));
    if (c === ')') {
      const inner = stack.pop() ?? false;
      const next = source[i + 1];
      const quantified = next === '*' || next === '+' || (next === '{' && /^\{\d*,\d*\}/.test(source.slice(i + 1, i + 13)));
      if (inner && quantified) return true;
      if (stack.length > 0 && (inner || quantified)) stack[stack.length - 1] = true;
      continue;
    }
    if (isQuant && stack.length > 0) stack[stack.length - 1] = true;
  }
  return false;
}

function collectRegexes(node: unknown, out: string[], depth = 0): void {
  if (depth > 32 || node === null || typeof node !== 'object') return;
  if (Array.isArray(node)) { for (const x of node) collectRegexes(x, out, depth + 1); return; }
  for (const [k, v] of Object.entries(node)) {
    if (k === 'Regex' && typeof v === 'string') out.push(v);
    else collectRegexes(v, out, depth + 1);
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function hasComponent(node: unknown, type: string): boolean {
  if (!isObject(node)) return false;
  if (node['type'] === type) return true;
  const list = node['pretokenizers'] ?? node['decoders'] ?? node['normalizers'];
  return Array.isArray(list) && list.some((x) => hasComponent(x, type));
}

/** A min-heap of (rank, position) keys packed into doubles: rank·2^26 + position, exact below 2^53. */
class MergeHeap {
  #a = new Float64Array(64);
  #n = 0;
  get size(): number { return this.#n; }
  clear(): void { this.#n = 0; }
  push(key: number): void {
    if (this.#n === this.#a.length) { const b = new Float64Array(this.#a.length * 2); b.set(this.#a); this.#a = b; }
    const a = this.#a;
    let i = this.#n++;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (a[p]! <= key) break;
      a[i] = a[p]!; i = p;
    }
    a[i] = key;
  }
  pop(): number {
    const a = this.#a;
    const top = a[0]!;
    const last = a[--this.#n]!;
    let i = 0;
    for (;;) {
      let c = 2 * i + 1;
      if (c >= this.#n) break;
      if (c + 1 < this.#n && a[c + 1]! < a[c]!) c++;
      if (a[c]! >= last) break;
      a[i] = a[c]!; i = c;
    }
    a[i] = last;
    return top;
  }
}

const POS_SCALE = 2 ** 26; // positions < 2^26 bytes (> MAX_ENCODE_BYTES); ranks < 2^21 → keys < 2^47

// Entries processed between two hand-backs to the event loop while a tokenizer is built (~2-4 ms).
const BUILD_SLICE = 4096;

interface TokenizerParts {
  hf: HfTokenizer;
  addedSplit: RegExp | undefined;
  tokens: (string | undefined)[];
  bytes: (Uint8Array | undefined)[];
  ids: Map<string, number>;
  special: Uint8Array;
  charId: Int32Array;
  ranks: Map<number, number>;
  mergedId: Int32Array;
  added: AddedToken[];
  addedByContent: Map<string, AddedToken>;
  chatTemplate: string | undefined;
  chatTemplateSource: ChatTemplateSource | undefined;
  hasConfig: boolean;
}

/** Where a checkpoint's chat template was read from. */
export type ChatTemplateSource = 'tokenizer_config.json' | 'chat_template.jinja';

export class Tokenizer {
  readonly #hf: HfTokenizer;
  /** Token string (byte-level form, or added-token content) by id; undefined for unused ids. */
  readonly #tokens: (string | undefined)[];
  readonly #bytes: (Uint8Array | undefined)[];
  readonly #ids: Map<string, number>;
  readonly #special: Uint8Array;
  /** Id of each single byte-level character, indexed by its code unit (< 0x144). */
  readonly #charId: Int32Array;
  /** (left·2^21 + right) → merge rank. */
  readonly #ranks: Map<number, number>;
  /** Merge rank → id of the merged token. */
  readonly #mergedId: Int32Array;
  readonly #added: AddedToken[];
  readonly #addedSplit: RegExp | undefined;
  readonly #addedByContent: Map<string, AddedToken>;
  readonly #cache = new Map<string, readonly number[]>();
  readonly #heap = new MergeHeap();
  readonly #vocabSize: number;
  /** The chat template from tokenizer_config.json (or chat_template.jinja beside it), if any. */
  readonly chatTemplate: string | undefined;
  /** The file `chatTemplate` came from; undefined when there is none (chat input is then refused). */
  readonly chatTemplateSource: ChatTemplateSource | undefined;
  /**
   * Whether tokenizer_config.json was found. Without it the tokenizer is tokenizer.json alone: encoding
   * and decoding are the same (glm-node reads nothing else from the config), only its chat template is
   * missing.
   */
  readonly hasConfig: boolean;

  private constructor(p: TokenizerParts) {
    this.#hf = p.hf;
    this.#addedSplit = p.addedSplit;
    this.#tokens = p.tokens;
    this.#bytes = p.bytes;
    this.#ids = p.ids;
    this.#special = p.special;
    this.#charId = p.charId;
    this.#ranks = p.ranks;
    this.#mergedId = p.mergedId;
    this.#added = p.added;
    this.#addedByContent = p.addedByContent;
    this.#vocabSize = p.tokens.length;
    // An empty template renders nothing: it counts as none (chat input is refused).
    this.chatTemplate = p.chatTemplate || undefined;
    this.chatTemplateSource = this.chatTemplate === undefined ? undefined : p.chatTemplateSource;
    this.hasConfig = p.hasConfig;
  }

  // Builds the tables from parsed JSON, yielding every few thousand entries so that fromDir can hand
  // the event loop back between slices (a GLM tokenizer has ~151k tokens and ~318k merges: about a
  // second of work that must not block the host's JS thread in one piece).
  static *#buildParts(
    tokenizerJson: Record<string, unknown>, config: Record<string, unknown>, chatTemplate: string | undefined,
    chatTemplateSource: ChatTemplateSource | undefined, hasConfig: boolean, source: string,
  ): Generator<void, TokenizerParts> {
    const bad = (msg: string) => new ModelFormatError(`${source}: ${msg}`);
    const model = tokenizerJson['model'];
    if (!isObject(model)) throw bad('"model" must be an object');
    if (model['type'] !== undefined && model['type'] !== 'BPE') {
      throw new UnsupportedFormatError(`${source}: model type ${JSON.stringify(model['type'])} is not supported (byte-level BPE only)`);
    }
    if (model['byte_fallback'] === true || (model['continuing_subword_prefix'] ?? null) !== null || (model['end_of_word_suffix'] ?? null) !== null) {
      throw new UnsupportedFormatError(`${source}: BPE with byte_fallback, continuing_subword_prefix or end_of_word_suffix is not supported`);
    }
    if (!hasComponent(tokenizerJson['pre_tokenizer'], 'ByteLevel') || !hasComponent(tokenizerJson['decoder'], 'ByteLevel')) {
      throw new UnsupportedFormatError(`${source}: only byte-level BPE is supported (pre_tokenizer and decoder must be ByteLevel)`);
    }
    const patterns: string[] = [];
    collectRegexes(tokenizerJson['pre_tokenizer'], patterns);
    collectRegexes(tokenizerJson['normalizer'], patterns);
    for (const p of patterns) {
      if (hasNestedQuantifier(p)) throw bad(`regex ${JSON.stringify(p.slice(0, 80))} has a nested quantifier (catastrophic backtracking risk)`);
    }

    // ---- vocabulary ----
    const vocab = model['vocab'];
    if (!isObject(vocab)) throw bad('"model.vocab" must be an object');
    const tokens: (string | undefined)[] = [];
    const ids = new Map<string, number>();
    const checkId = (id: unknown, what: string): number => {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= MAX_VOCAB) throw bad(`${what}: id ${String(id)} is not an integer in [0, ${MAX_VOCAB})`);
      return id;
    };
    let step = 0;
    for (const [tok, rawId] of Object.entries(vocab)) {
      if (++step % BUILD_SLICE === 0) yield;
      const id = checkId(rawId, `vocab entry ${JSON.stringify(tok)}`);
      if (tokens[id] !== undefined) throw bad(`vocab ids collide: ${JSON.stringify(tokens[id])} and ${JSON.stringify(tok)} both have id ${id}`);
      tokens[id] = tok;
      ids.set(tok, id);
    }
    const charId = new Int32Array(0x144).fill(-1);
    for (const [code, byte] of CHAR_TO_BYTE) {
      const id = ids.get(String.fromCharCode(code));
      if (id === undefined) throw bad(`byte-level vocab lacks the token for byte 0x${byte.toString(16).padStart(2, '0')}`);
      charId[code] = id;
    }

    // ---- added tokens ----
    const addedRaw = tokenizerJson['added_tokens'] ?? [];
    if (!Array.isArray(addedRaw)) throw bad('"added_tokens" must be an array');
    const added: AddedToken[] = [];
    const addedByContent = new Map<string, AddedToken>();
    for (const a of addedRaw) {
      if (!isObject(a) || typeof a['content'] !== 'string' || a['content'].length === 0) throw bad('an added token lacks a non-empty "content"');
      const content = a['content'];
      const id = checkId(a['id'], `added token ${JSON.stringify(content)}`);
      if (a['single_word'] === true) throw new UnsupportedFormatError(`${source}: added token ${JSON.stringify(content)} uses single_word, which is not supported`);
      if (tokens[id] !== undefined && tokens[id] !== content) throw bad(`added token ${JSON.stringify(content)} reuses id ${id} of ${JSON.stringify(tokens[id])}`);
      const t: AddedToken = { id, content, special: a['special'] === true, lstrip: a['lstrip'] === true, rstrip: a['rstrip'] === true };
      tokens[id] = content;
      ids.set(content, id);
      added.push(t);
      addedByContent.set(content, t);
    }

    // ---- merges ----
    const mergesRaw = model['merges'];
    if (!Array.isArray(mergesRaw)) throw bad('"model.merges" must be an array');
    const ranks = new Map<number, number>();
    const mergedId = new Int32Array(mergesRaw.length);
    for (let rank = 0; rank < mergesRaw.length; rank++) {
      if (rank % BUILD_SLICE === BUILD_SLICE - 1) yield;
      const m: unknown = mergesRaw[rank];
      let pair: unknown[] | undefined;
      if (typeof m === 'string') { const sp = m.indexOf(' '); pair = sp > 0 && m.indexOf(' ', sp + 1) < 0 ? [m.slice(0, sp), m.slice(sp + 1)] : undefined; }
      else if (Array.isArray(m) && m.length === 2) pair = m;
      const [l, r] = pair ?? [];
      if (typeof l !== 'string' || typeof r !== 'string') throw bad(`merge #${rank} is not a pair of tokens`);
      const li = ids.get(l), ri = ids.get(r), mi = ids.get(l + r);
      if (li === undefined || ri === undefined || mi === undefined) throw bad(`merge #${rank} (${JSON.stringify(l)}, ${JSON.stringify(r)}) uses a token missing from the vocab`);
      const key = li * MAX_VOCAB + ri;
      if (!ranks.has(key)) ranks.set(key, rank); // a repeated merge keeps its first (best) rank
      mergedId[rank] = mi;
    }

    // ---- bytes of every token (byte-level strings reversed; added tokens are their UTF-8 text) ----
    const bytes: (Uint8Array | undefined)[] = new Array(tokens.length);
    const utf8 = new TextEncoder();
    for (let id = 0; id < tokens.length; id++) {
      if (id % BUILD_SLICE === BUILD_SLICE - 1) yield;
      const t = tokens[id];
      if (t === undefined) continue;
      if (addedByContent.get(t)?.id === id) { bytes[id] = utf8.encode(t); continue; }
      const b = new Uint8Array(t.length);
      for (let i = 0; i < t.length; i++) {
        const v = CHAR_TO_BYTE.get(t.charCodeAt(i));
        if (v === undefined) throw bad(`vocab token ${JSON.stringify(t)} (id ${id}) is not in the byte-level alphabet`);
        b[i] = v;
      }
      bytes[id] = b;
    }

    // Pre-tokenisation comes from the library; its own BPE model is replaced by an empty stub so it does
    // not build a second copy of the merge table (318k entries for GLM).
    let hf: HfTokenizer;
    try {
      hf = new HfTokenizer({ ...tokenizerJson, added_tokens: [], model: { type: 'BPE', vocab: {}, merges: [] } }, config);
    } catch (e) {
      throw new ModelFormatError(`${source}: ${(e as Error).message}`, { cause: e });
    }

    const special = new Uint8Array(tokens.length);
    for (const a of added) if (a.special) special[a.id] = 1;
    // Longest content first, so a token that is a prefix of another never wins (leftmost-longest match).
    const alternatives = [...added].sort((a, b) => b.content.length - a.content.length || (a.content < b.content ? -1 : 1))
      .map((a) => escapeRegExp(a.content));
    const addedSplit = alternatives.length > 0 ? new RegExp(alternatives.join('|'), 'gu') : undefined;
    return { hf, addedSplit, tokens, bytes, ids, special, charId, ranks, mergedId, added, addedByContent, chatTemplate, chatTemplateSource, hasConfig };
  }

  /**
   * Reads `tokenizer.json` and, when present, `tokenizer_config.json` from a checkpoint folder. The chat
   * template comes from tokenizer_config.json's `chat_template`, or from `chat_template.jinja` when the
   * config has none. A checkpoint may lack tokenizer_config.json (conversions often drop it): the
   * tokenizer is then tokenizer.json alone, which defines every token, special flag and split rule, so
   * text encodes exactly as with the config; only the chat template can be missing, and glm-node does
   * not guess one (later releases and fine-tunes may ship their own; a wrong template degrades answers
   * silently).
   * Missing tokenizer.json or an unreadable file → ModelLoadError; a malformed one (either file) →
   * ModelFormatError; other tokenizer kinds (WordPiece, SentencePiece-style BPE) → UnsupportedFormatError.
   */
  static async fromDir(dir: string): Promise<Tokenizer> {
    // Optional files may be absent; one that is there but unreadable, or a dangling link (an HF cache
    // snapshot copied without its blobs), is a broken checkpoint and an error.
    const readText = async (name: string, maxBytes: number, optional: boolean): Promise<string | undefined> => {
      const file = path.join(dir, name);
      try {
        const st = await stat(file);
        if (!st.isFile()) throw new ModelLoadError(`${file} is not a regular file`);
        if (st.size > maxBytes) throw new ModelFormatError(`${file} is ${st.size} bytes, over the ${maxBytes}-byte limit`);
        return await readFile(file, 'utf8');
      } catch (e) {
        if (e instanceof ModelLoadError || e instanceof ModelFormatError) throw e;
        if (optional && (e as NodeJS.ErrnoException).code === 'ENOENT' && !(await lstat(file).then(() => true, () => false))) return undefined;
        throw new ModelLoadError(`cannot read ${file}: ${(e as Error).message}`, { cause: e });
      }
    };
    const readJson = async (name: string, maxBytes: number, optional: boolean): Promise<Record<string, unknown> | undefined> => {
      const text = await readText(name, maxBytes, optional);
      if (text === undefined) return undefined;
      const file = path.join(dir, name);
      let value: unknown;
      try { value = JSON.parse(text); } catch (e) {
        throw new ModelFormatError(`${file} is not valid JSON: ${(e as Error).message}`, { cause: e });
      }
      if (!isObject(value)) throw new ModelFormatError(`${file} must hold a JSON object`);
      return value;
    };
    const tokenizerJson = (await readJson('tokenizer.json', MAX_TOKENIZER_JSON_BYTES, false))!;
    const config = await readJson('tokenizer_config.json', MAX_CONFIG_BYTES, true);
    let template = config && templateFromConfig(config, path.join(dir, 'tokenizer_config.json'));
    let templateSource: ChatTemplateSource | undefined = 'tokenizer_config.json';
    if (template === undefined) {
      template = await readText('chat_template.jinja', MAX_CONFIG_BYTES, true);
      templateSource = 'chat_template.jinja';
    }
    const build = Tokenizer.#buildParts(tokenizerJson, config ?? {}, template, templateSource, config !== undefined, path.join(dir, 'tokenizer.json'));
    for (let r = build.next(); ; r = build.next()) {
      if (r.done) return new Tokenizer(r.value);
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  /**
   * fromDir, or undefined when the folder has no tokenizer.json at all (a checkpoint may ship without
   * one: it then takes token ids only). A tokenizer.json that is there but broken — unreadable, a
   * dangling link, malformed — is an error, not an absence.
   */
  static async fromDirIfPresent(dir: string): Promise<Tokenizer | undefined> {
    const present = await lstat(path.join(dir, 'tokenizer.json')).then(() => true, () => false);
    return present ? Tokenizer.fromDir(dir) : undefined;
  }

  /** Builds a tokenizer from already-parsed JSON (same validation as fromDir; the config is optional there too). */
  static fromJson(tokenizerJson: unknown, tokenizerConfig?: unknown): Tokenizer {
    if (!isObject(tokenizerJson)) throw new ModelFormatError('tokenizer.json must hold a JSON object');
    const config = tokenizerConfig === undefined ? {} : tokenizerConfig;
    if (!isObject(config)) throw new ModelFormatError('tokenizer_config.json must hold a JSON object');
    const template = templateFromConfig(config, 'tokenizer_config.json');
    const build = Tokenizer.#buildParts(tokenizerJson, config, template, 'tokenizer_config.json', tokenizerConfig !== undefined, 'tokenizer.json');
    for (let r = build.next(); ; r = build.next()) if (r.done) return new Tokenizer(r.value);
  }

  /** Number of token ids: one past the highest id of the vocabulary and the added tokens. Ids without a token decode to nothing. */
  get vocabSize(): number { return this.#vocabSize; }

  /** The added tokens (GLM: 151329 and up), in tokenizer.json order. */
  get addedTokens(): readonly AddedTokenInfo[] {
    return this.#added.map(({ id, content, special }) => ({ id, content, special }));
  }

  /**
   * Token ids of `text`. Lone surrogates become U+FFFD first (never a throw). No BOS/prefix is added:
   * GLM's template writes `[gMASK]<sop>` itself. Text over MAX_ENCODE_BYTES → InvalidParamError.
   */
  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new InvalidParamError(`encode expects a string, got ${typeof text}`);
    // UTF-8 is at most 3 bytes per UTF-16 unit, so short strings skip the byte count.
    if (text.length * 3 > MAX_ENCODE_BYTES && Buffer.byteLength(text, 'utf8') > MAX_ENCODE_BYTES) {
      throw new InvalidParamError(`text is ${Buffer.byteLength(text, 'utf8')} UTF-8 bytes, over the ${MAX_ENCODE_BYTES}-byte limit of encode`);
    }
    text = wellFormed(text);
    const out: number[] = [];
    if (!opts.special || this.#addedSplit === undefined) {
      this.#encodePlain(text, out);
      return out;
    }
    // Split out added tokens; honour their lstrip/rstrip (strip whitespace on that side of the token).
    const re = this.#addedSplit;
    re.lastIndex = 0;
    let pos = 0;
    let pendingRstrip = false;
    for (let m = re.exec(text); m !== null; m = re.exec(text)) {
      const tok = this.#addedByContent.get(m[0])!;
      let piece = text.slice(pos, m.index);
      if (pendingRstrip) piece = piece.trimStart();
      if (tok.lstrip) piece = piece.trimEnd();
      this.#encodePlain(piece, out);
      out.push(tok.id);
      pendingRstrip = tok.rstrip;
      pos = m.index + m[0].length;
    }
    let rest = text.slice(pos);
    if (pendingRstrip) rest = rest.trimStart();
    this.#encodePlain(rest, out);
    return out;
  }

  #encodePlain(text: string, out: number[]): void {
    if (text.length === 0) return;
    const normalized = this.#hf.normalizer ? this.#hf.normalizer(text) : text;
    const words = this.#hf.pre_tokenizer ? this.#hf.pre_tokenizer(normalized) : [normalized];
    for (const w of words) {
      if (w.length <= CACHE_MAX_WORD) {
        let ids = this.#cache.get(w);
        if (ids === undefined) {
          if (this.#cache.size >= CACHE_MAX_ENTRIES) this.#cache.clear();
          ids = this.#bpe(w);
          this.#cache.set(w, ids);
        }
        for (const id of ids) out.push(id);
      } else {
        for (const id of this.#bpe(w)) out.push(id);
      }
    }
  }

  /**
   * Applies the merges to one byte-level word, lowest rank first and leftmost first among equal ranks
   * (the order of HF's BPE). Linked list over typed arrays plus a heap with lazy deletion: a popped
   * entry is stale when its left symbol is gone or the pair at that position changed, which the rank
   * check catches because every pair has one rank. O(n log n) in the word length.
   */
  #bpe(word: string): number[] {
    const n = word.length;
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      const c = word.charCodeAt(i);
      const id = c < 0x144 ? this.#charId[c]! : -1;
      // The pre-tokenizer emits only byte-level characters; anything else is a library contract break.
      if (id < 0) throw new InvalidParamError(`pre-tokenizer produced a character outside the byte-level alphabet (U+${c.toString(16)})`);
      ids[i] = id;
    }
    if (n === 1) return [ids[0]!];
    const next = new Int32Array(n), prev = new Int32Array(n);
    for (let i = 0; i < n; i++) { next[i] = i + 1 < n ? i + 1 : -1; prev[i] = i - 1; }
    const ranks = this.#ranks;
    const heap = this.#heap;
    heap.clear();
    const rankAt = (i: number): number => {
      const j = next[i]!;
      if (j < 0) return -1;
      return ranks.get(ids[i]! * MAX_VOCAB + ids[j]!) ?? -1;
    };
    for (let i = 0; i + 1 < n; i++) {
      const r = rankAt(i);
      if (r >= 0) heap.push(r * POS_SCALE + i);
    }
    while (heap.size > 0) {
      const key = heap.pop();
      const r = Math.floor(key / POS_SCALE);
      const i = key - r * POS_SCALE;
      if (ids[i]! < 0 || rankAt(i) !== r) continue; // stale
      const j = next[i]!;
      ids[i] = this.#mergedId[r]!;
      ids[j] = -1;
      const k = next[j]!;
      next[i] = k;
      if (k >= 0) prev[k] = i;
      const p = prev[i]!;
      if (p >= 0) { const rp = rankAt(p); if (rp >= 0) heap.push(rp * POS_SCALE + p); }
      const rn = rankAt(i);
      if (rn >= 0) heap.push(rn * POS_SCALE + i);
    }
    const out: number[] = [];
    for (let i = 0; i >= 0; i = next[i]!) out.push(ids[i]!);
    return out;
  }

  #checkId(id: unknown): number {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= this.#vocabSize) {
      throw new InvalidTokenError(`token id ${String(id)} is outside the tokenizer's vocabulary [0, ${this.#vocabSize})`);
    }
    return id;
  }

  /**
   * Text of `ids`: the UTF-8 decoding of their concatenated bytes, with U+FFFD for invalid sequences
   * (a token sequence may end inside a character). A leading BOM is kept. Ids with no token (unused
   * rows) decode to nothing; ids outside [0, vocabSize) → InvalidTokenError.
   */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    if (!Array.isArray(ids)) throw new InvalidParamError('decode expects an array of token ids');
    const parts: Uint8Array[] = [];
    let total = 0;
    for (const raw of ids) {
      const id = this.#checkId(raw);
      if (opts.skipSpecial && this.#special[id] === 1) continue;
      const b = this.#bytes[id];
      if (b !== undefined) { parts.push(b); total += b.length; }
    }
    const all = new Uint8Array(total);
    let o = 0;
    for (const b of parts) { all.set(b, o); o += b.length; }
    return new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(all);
  }

  /** The exact bytes token `id` stands for (a copy; empty for an unused id). Added tokens are their UTF-8 text. */
  tokenBytes(id: number): Uint8Array {
    const b = this.#bytes[this.#checkId(id)];
    return b === undefined ? new Uint8Array(0) : b.slice();
  }

  /** Id of a vocabulary entry (byte-level form, e.g. 'Ġthe') or of an added token's text ('<think>'). */
  tokenToId(token: string): number | undefined {
    return this.#ids.get(token);
  }

  /** Vocabulary entry of `id` (byte-level form for BPE tokens), undefined for unused or out-of-range ids. */
  idToToken(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.#tokens[id] : undefined;
  }

  /** Whether `id` is an added token flagged `special` (skipped by decode's skipSpecial). */
  isSpecial(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && this.#special[id] === 1;
  }
}

/** `chat_template` of a tokenizer_config.json: a string, or HF's list of named templates (the "default" one). */
function templateFromConfig(config: Record<string, unknown>, file: string): string | undefined {
  const t = config['chat_template'];
  if (t === undefined || t === null) return undefined;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t.find((x) => isObject(x) && x['name'] === 'default');
    if (isObject(named) && typeof named['template'] === 'string') return named['template'];
    return undefined;
  }
  throw new ModelFormatError(`${file}: "chat_template" must be a string or a list of named templates`);
}
