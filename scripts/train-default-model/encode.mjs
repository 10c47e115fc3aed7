#!/usr/bin/env node
// Tokenizes the training corpus with the package's own Tokenizer (the one `model.tokenizer` uses at
// inference) and writes flat arrays for train.py:
//   tokens.u16  token ids (uint16), documents back to back
//   loss.u8     1 where the token is one the model must learn to write (assistant turns), else 0
//   docs.u32    start offset of each document, then the total length
//   node scripts/train-default-model/encode.mjs <corpus-dir> <tokenizer-dir>
// Segments are encoded one by one so each token knows its segment; that equals encoding the whole
// document because every segment boundary falls on an added token (checked on every document).
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Tokenizer } from '../../dist/lib/tokenizer.js';

const [corpusDir, tokDir] = process.argv.slice(2);
if (!corpusDir || !tokDir) throw new Error('usage: encode.mjs <corpus-dir> <tokenizer-dir>');
const tok = await Tokenizer.fromDir(tokDir);
const docs = readFileSync(path.join(corpusDir, 'train.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const ids = [];
const loss = [];
const starts = [];
let chars = 0;
for (const doc of docs) {
  starts.push(ids.length);
  const whole = [];
  for (const [text, trained] of doc) {
    const t = tok.encode(text, { special: true });
    for (const id of t) { ids.push(id); loss.push(trained ? 1 : 0); whole.push(id); }
    chars += text.length;
  }
  const direct = tok.encode(doc.map((s) => s[0]).join(''), { special: true });
  if (direct.length !== whole.length || direct.some((x, i) => x !== whole[i])) throw new Error(`segment-wise encoding differs on ${JSON.stringify(doc).slice(0, 200)}`);
}
starts.push(ids.length);
writeFileSync(path.join(corpusDir, 'tokens.u16'), Buffer.from(Uint16Array.from(ids).buffer));
writeFileSync(path.join(corpusDir, 'loss.u8'), Buffer.from(Uint8Array.from(loss).buffer));
writeFileSync(path.join(corpusDir, 'docs.u32'), Buffer.from(Uint32Array.from(starts).buffer));
const lengths = starts.slice(1).map((s, i) => s - starts[i]).sort((a, b) => a - b);
console.log(`${docs.length} documents, ${ids.length} tokens (${(chars / ids.length).toFixed(2)} chars/token), ` +
  `${loss.reduce((a, b) => a + b, 0)} trained; length median ${lengths[lengths.length >> 1]}, max ${lengths.at(-1)}`);
