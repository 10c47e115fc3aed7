#!/usr/bin/env node
// Trains the default model's byte-level BPE on the training corpus and writes tokenizer.json and
// tokenizer_config.json in the layout of a real GLM-4.5 checkpoint, scaled down: GLM's pre-tokenizer
// regex, 256 byte tokens, learned merges, and GLM's 32 added tokens at the top of the vocabulary
// (GLM id 151329 + k becomes vocab_size - 32 + k).
//   node scripts/train-default-model/bpe.mjs <corpus-dir> <out-dir> [--vocab 1024]
// One deliberate difference from GLM's merges: two digit symbols are never merged, so numbers are
// written one digit per token. GLM's regex still cuts digit runs into groups of three; with single-digit
// tokens a tiny model sees every column of a sum, which is what its arithmetic reasoning works on.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { BYTE_TO_CHAR, toByteLevel } from '../../dist/lib/byte-level.js';
import { GLM_ADDED_TOKENS, GLM_SPLIT_PATTERN, glmTokenizerFiles } from '../../dist/lib/synthetic/tokenizer.js';

const DIGIT_CHARS = new Set([...'0123456789']);
const isDigits = (sym) => [...sym].every((c) => DIGIT_CHARS.has(c));

/** Pre-tokenized word counts of `texts`, with the added tokens cut out first (they are never merged). */
export function wordCounts(texts) {
  const added = new RegExp(GLM_ADDED_TOKENS.map((t) => t.content.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')).join('|'), 'g');
  const split = new RegExp(GLM_SPLIT_PATTERN, 'gu');
  const counts = new Map();
  for (const text of texts) {
    for (const piece of text.split(added)) {
      for (const m of piece.matchAll(split)) counts.set(m[0], (counts.get(m[0]) ?? 0) + 1);
    }
  }
  return counts;
}

/**
 * Learns merges until 256 + merges = `maxTokens`. The most frequent pair wins; ties go to the smaller
 * "left right" string, so the result depends only on the corpus. Pair counts are updated only for the
 * words that contain the merged pair, which keeps a few thousand merges over ~10^4 words fast.
 */
export function learnMerges(counts, maxTokens) {
  const words = [...counts].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    .map(([w, n]) => ({ symbols: Array.from(toByteLevel(w)), n }));
  const pairs = new Map();     // "a b" -> count
  const where = new Map();     // "a b" -> Set of word indices containing it
  const addPairs = (wi, sign) => {
    const { symbols, n } = words[wi];
    for (let i = 0; i + 1 < symbols.length; i++) {
      if (isDigits(symbols[i]) && isDigits(symbols[i + 1])) continue;
      const key = symbols[i] + ' ' + symbols[i + 1]; // byte-level symbols never contain ' ' (it is 'Ġ')
      pairs.set(key, (pairs.get(key) ?? 0) + sign * n);
      if (sign > 0) {
        let s = where.get(key);
        if (!s) where.set(key, (s = new Set()));
        s.add(wi);
      }
    }
  };
  words.forEach((_, wi) => addPairs(wi, 1));
  const vocab = [...BYTE_TO_CHAR];
  const merges = [];
  while (vocab.length < maxTokens) {
    let best;
    let bestCount = 1; // a pair seen once teaches nothing
    for (const [key, n] of pairs) {
      if (n > bestCount || (n === bestCount && best !== undefined && key < best)) { best = key; bestCount = n; }
    }
    if (best === undefined) break;
    const [a, b] = best.split(' ');
    const merged = a + b;
    merges.push([a, b]);
    vocab.push(merged);
    for (const wi of where.get(best) ?? []) {
      addPairs(wi, -1);
      const s = words[wi].symbols;
      const out = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) { out.push(merged); i++; } else out.push(s[i]);
      }
      words[wi].symbols = out;
      addPairs(wi, 1);
    }
    for (const [k, n] of pairs) if (n === 0) pairs.delete(k);
  }
  return { vocab, merges };
}

export function tokenizerFiles(vocab, merges, vocabSize, modelMaxLength) {
  return glmTokenizerFiles(vocab, merges, vocabSize, modelMaxLength);
}

async function main() {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { vocab: { type: 'string', default: '1024' }, 'max-length': { type: 'string', default: '2048' } } });
  const [corpusDir, out] = positionals;
  if (!corpusDir || !out) throw new Error('usage: bpe.mjs <corpus-dir> <out-dir> [--vocab N]');
  const vocabSize = Number(values.vocab);
  const docs = readFileSync(path.join(corpusDir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const t0 = performance.now();
  const counts = wordCounts(docs.map((d) => d.map((s) => s[0]).join('')));
  const { vocab, merges } = learnMerges(counts, vocabSize - GLM_ADDED_TOKENS.length);
  const { tokenizerJson, tokenizerConfig } = tokenizerFiles(vocab, merges, vocabSize, Number(values['max-length']));
  mkdirSync(out, { recursive: true });
  writeFileSync(path.join(out, 'tokenizer.json'), JSON.stringify(tokenizerJson, null, 2) + '\n');
  writeFileSync(path.join(out, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2) + '\n');
  console.log(`${merges.length} merges from ${counts.size} distinct words in ${((performance.now() - t0) / 1000).toFixed(1)} s; vocab ${vocabSize}`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
