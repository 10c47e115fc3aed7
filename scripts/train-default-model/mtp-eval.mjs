#!/usr/bin/env node
// MTP draft quality on held-out conversations, computed with our PyTorch model on the exported BF16
// weights: independent of the engine, which test/speculative.test.ts checks against it.
//   node scripts/train-default-model/mtp-eval.mjs <model-dir> <eval.jsonl> [--limit N] [--json out.json]
// Row t of the MTP layer reads the trunk's hidden state at t and token t+1 and drafts token t+2; with
// greedy decoding the draft is accepted when it equals the trunk's own argmax at t+1. Reported over
// the positions where token t+2 is written by the model (assistant turns), and over all positions;
// also against the reference token. Also prints the expert load histogram of these conversations.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Tokenizer } from '../../dist/lib/tokenizer.js';
import { heldOutDocuments } from './heldout-docs.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

function argmax(a) {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

const { positionals, values } = parseArgs({ allowPositionals: true, options: { limit: { type: 'string', default: '300' }, json: { type: 'string' } } });
const [modelDir, evalFile] = positionals;
if (!modelDir || !evalFile) throw new Error('usage: mtp-eval.mjs <model-dir> <eval.jsonl> [--limit N] [--json out.json]');
const tok = await Tokenizer.fromDir(modelDir);
const V = JSON.parse(readFileSync(path.join(modelDir, 'config.json'), 'utf8')).vocab_size;
const docs = heldOutDocuments(evalFile, tok, Number(values.limit));
const tmp = mkdtempSync(path.join(os.tmpdir(), 'glm-mtp-eval-'));
try {
  writeFileSync(path.join(tmp, 'ids.json'), JSON.stringify(docs.map((d) => d.ids)));
  execFileSync('/usr/bin/python3', [path.join(here, 'torch_logits.py'), modelDir, path.join(tmp, 'ids.json'), path.join(tmp, 'out.bin'), '--mtp'], { stdio: 'inherit' });
  const buf = readFileSync(path.join(tmp, 'out.bin'));
  const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
  const loads = JSON.parse(readFileSync(path.join(tmp, 'out.bin.loads.json'), 'utf8'));
  const c = { answer: { n: 0, agree: 0, ref: 0 }, all: { n: 0, agree: 0, ref: 0 } };
  let off = 0;
  for (const d of docs) {
    const T = d.ids.length;
    const trunk = all.subarray(off, off + T * V);
    const mtp = all.subarray(off + T * V, off + (2 * T - 1) * V);
    off += (2 * T - 1) * V;
    for (let t = 0; t + 2 < T; t++) {
      const draft = argmax(mtp.subarray(t * V, (t + 1) * V));
      const greedy = argmax(trunk.subarray((t + 1) * V, (t + 2) * V));
      for (const key of d.trained[t + 2] ? ['answer', 'all'] : ['all']) {
        c[key].n++;
        if (draft === greedy) c[key].agree++;
        if (draft === d.ids[t + 2]) c[key].ref++;
      }
    }
  }
  const pct = (a, n) => `${((100 * a) / n).toFixed(1)}%`;
  console.log(`MTP draft == trunk greedy token: ${pct(c.answer.agree, c.answer.n)} on ${c.answer.n} assistant-turn positions ` +
    `(${pct(c.all.agree, c.all.n)} on all ${c.all.n}); draft == reference token: ${pct(c.answer.ref, c.answer.n)} (assistant turns)`);
  const shares = loads.map((l) => l.map((x) => x / l.reduce((a, b) => a + b, 0)));
  shares.forEach((s, i) => console.log(`expert load, MoE layer ${i === shares.length - 1 ? 'MTP' : i + 1}: ${s.map((x) => (100 * x).toFixed(1) + '%').join(' ')}`));
  if (values.json) {
    writeFileSync(values.json, JSON.stringify({ conversations: docs.length, mtpAgreement: c, expertLoads: loads, expertShares: shares }, null, 1) + '\n');
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
