// Deterministic synthetic GLM-style tokenizer for synthetic checkpoints: a byte-level BPE
// tokenizer.json with GLM's pre-tokenizer regex (spec §6.1), merges learned from a small embedded
// multilingual corpus, and GLM's 32 added tokens (spec §6.2) at the top of the vocabulary, plus a
// tokenizer_config.json carrying the GLM-4.5 chat template. Same layout as the real checkpoint, scaled
// down: GLM id 151329+k becomes vocab_size-32+k.

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BYTE_TO_CHAR, toByteLevel } from '../byte-level.js';
import { GLM45_CHAT_TEMPLATE } from './glm45-chat-template.js';
import { TOKENIZER_CORPUS } from './tokenizer-corpus.js';

/** GLM-4.5's pre-tokenizer split regex (spec §6.1; llama.cpp's CHATGLM4 form, valid as a JS /u regex). */
export const GLM_SPLIT_PATTERN =
  "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/**
 * GLM's added tokens in id order (spec §6.2: GLM id 151329 + index). `special` follows the spec:
 * 151350-151360 (think, tool-call markup, /nothink) are added with special: false so they survive
 * skip-special decoding and the reasoning/tool parsers see them; the rest, 151329-151349, are special
 * (stated for the role tokens 151335-151338 and assumed for the others, spec marks it UNCONFIRMED).
 */
export const GLM_ADDED_TOKENS: readonly { readonly content: string; readonly special: boolean }[] = Object.freeze([
  '<|endoftext|>', '[MASK]', '[gMASK]', '[sMASK]', '<sop>', '<eop>',
  '<|system|>', '<|user|>', '<|assistant|>', '<|observation|>',
  '<|begin_of_image|>', '<|end_of_image|>', '<|begin_of_video|>', '<|end_of_video|>',
  '<|begin_of_audio|>', '<|end_of_audio|>', '<|begin_of_transcription|>', '<|end_of_transcription|>',
  '<|code_prefix|>', '<|code_middle|>', '<|code_suffix|>',
  '<think>', '</think>', '<tool_call>', '</tool_call>', '<tool_response>', '</tool_response>',
  '<arg_key>', '</arg_key>', '<arg_value>', '</arg_value>', '/nothink',
].map((content, k) => Object.freeze({ content, special: k < 21 })));

/** Ids below the added tokens hold 256 byte tokens plus learned merges; vocab must leave room for them. */
export const MIN_SYNTHETIC_TOKENIZER_VOCAB = 256 + GLM_ADDED_TOKENS.length;

/**
 * Learns byte-level BPE merges from `corpus` until the vocabulary holds `maxTokens` entries (256 byte
 * tokens + merged tokens) or no pair occurs twice. Deterministic: the most frequent pair wins, ties go
 * to the smaller "left right" string by code unit order.
 */
export function learnMerges(corpus: readonly string[], maxTokens: number): { vocab: string[]; merges: [string, string][] } {
  const split = new RegExp(GLM_SPLIT_PATTERN, 'gu');
  const counts = new Map<string, number>();
  for (const text of corpus) {
    for (const m of text.matchAll(split)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
  }
  // Sorted so the word order (and so nothing downstream) depends on Map insertion details.
  const words = [...counts].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([w, n]) => ({ symbols: Array.from(toByteLevel(w)), n }));
  const vocab = [...BYTE_TO_CHAR];
  const known = new Set(vocab);
  const merges: [string, string][] = [];
  while (vocab.length < maxTokens) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = symbols[i] + ' ' + symbols[i + 1]; // byte-level symbols never contain ' ' (it is 'Ġ')
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best: string | undefined;
    let bestCount = 1; // a pair seen once teaches nothing; stop when none occurs twice
    for (const [key, n] of pairs) {
      if (n > bestCount || (n === bestCount && best !== undefined && key < best)) { best = key; bestCount = n; }
    }
    if (best === undefined) break;
    const [a, b] = best.split(' ') as [string, string];
    merges.push([a, b]);
    const merged = a + b;
    if (!known.has(merged)) { known.add(merged); vocab.push(merged); }
    for (const w of words) {
      const s = w.symbols;
      const out: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(merged); i++; } else out.push(s[i]!);
      }
      w.symbols = out;
    }
  }
  return { vocab, merges };
}

export interface SyntheticTokenizerFiles {
  /** tokenizer.json contents (HF tokenizers format). */
  tokenizerJson: Record<string, unknown>;
  /** tokenizer_config.json contents (transformers format). */
  tokenizerConfig: Record<string, unknown>;
}

/**
 * Builds tokenizer.json and tokenizer_config.json for a vocabulary of `vocabSize` embedding rows:
 * added tokens at vocabSize-32 .. vocabSize-1, BPE tokens from 0 up. If the corpus runs out of merges
 * before the BPE range is full (large vocabularies), the ids in between have no token, like the
 * padding rows of GLM's embedding (151361..151551).
 */
export function buildSyntheticTokenizer(vocabSize: number, modelMaxLength: number): SyntheticTokenizerFiles {
  if (!Number.isInteger(vocabSize) || vocabSize < MIN_SYNTHETIC_TOKENIZER_VOCAB) {
    throw new Error(`a synthetic tokenizer needs vocab_size >= ${MIN_SYNTHETIC_TOKENIZER_VOCAB}, got ${vocabSize}`);
  }
  const { vocab, merges } = learnMerges(TOKENIZER_CORPUS, vocabSize - GLM_ADDED_TOKENS.length);
  return glmTokenizerFiles(vocab, merges, vocabSize, modelMaxLength);
}

/**
 * tokenizer.json and tokenizer_config.json in GLM-4.5's layout for a byte-level BPE (`vocab` in id
 * order, `merges` as pairs): GLM's pre-tokenizer and byte-level decoding, its 32 added tokens at
 * vocabSize-32 .. vocabSize-1, and the GLM-4.5 chat template. Also used by
 * scripts/train-default-model/bpe.mjs for the trained default model's tokenizer.
 */
export function glmTokenizerFiles(vocab: readonly string[], merges: readonly (readonly [string, string])[], vocabSize: number,
  modelMaxLength: number): SyntheticTokenizerFiles {
  const firstAdded = vocabSize - GLM_ADDED_TOKENS.length;
  if (vocab.length > firstAdded) throw new Error('vocabulary overflows into the added-token ids');
  const vocabObj: Record<string, number> = {};
  vocab.forEach((t, id) => { vocabObj[t] = id; });
  const added = GLM_ADDED_TOKENS.map(({ content, special }, k) => ({
    id: firstAdded + k, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special,
  }));
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: {
      type: 'Sequence',
      pretokenizers: [
        { type: 'Split', pattern: { Regex: GLM_SPLIT_PATTERN }, behavior: 'Isolated', invert: false },
        { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
      ],
    },
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false,
      vocab: vocabObj,
      // "left right" strings: the classic merges format, which every tokenizers version reads.
      merges: merges.map(([a, b]) => `${a} ${b}`),
    },
  };
  const addedDecoder: Record<string, unknown> = {};
  for (const t of added) {
    addedDecoder[String(t.id)] = { content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: t.special };
  }
  const tokenizerConfig = {
    added_tokens_decoder: addedDecoder,
    additional_special_tokens: added.filter((t) => t.special && t.content !== '<|endoftext|>').map((t) => t.content),
    chat_template: GLM45_CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    do_lower_case: false,
    eos_token: '<|endoftext|>',
    extra_special_tokens: {},
    model_max_length: modelMaxLength,
    pad_token: '<|endoftext|>',
    padding_side: 'left',
    remove_space: false,
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  return { tokenizerJson, tokenizerConfig };
}

/** Writes tokenizer.json and tokenizer_config.json into `dir` (which must exist). */
export async function writeSyntheticTokenizer(dir: string, vocabSize: number, modelMaxLength: number): Promise<void> {
  const { tokenizerJson, tokenizerConfig } = buildSyntheticTokenizer(vocabSize, modelMaxLength);
  await writeFile(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson, null, 2) + '\n');
  await writeFile(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
}
