#!/usr/bin/env node
// Export check: the engine's logits on an exported folder against our PyTorch model's on the same BF16
// weights, at every position of several conversations (chat, arithmetic with thinking, a tool round
// trip with its system prompt, a multi-turn chat without thinking). The engine runs each conversation
// twice: one prefill returning all logits, and one token at a time through the KV cache.
//   node scripts/train-default-model/check-export.mjs <model-dir> [--out result.json]
// Needs /usr/bin/python3 with torch (see README.md here). The result JSON also records, per position,
// PyTorch's top-5 logits; test/default-model.test.ts re-runs the engine against those without Python.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Model } from '../../dist/lib/index.js';
import { toDocuments } from './render.mjs';
import { Rng } from './rng.mjs';
import { arithmeticConversation, chatConversation, factsConversation, IDENTITY_ANSWER, toolConversation } from './tasks.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The check's conversations: fixed seed, held-out lists, each rendered with its answer turns. */
export function checkConversations() {
  const rng = new Rng(4242);
  const texts = [];
  const pick = (conv, mode) => texts.push(toDocuments(conv, mode).at(-1).map((s) => s[0]).join(''));
  pick({ family: 'identity', messages: [{ role: 'user', content: 'Hello! Who are you?' }, { role: 'assistant', content: IDENTITY_ANSWER, reasoning_content: 'The user wants to know who I am.' }] }, 'on');
  pick(arithmeticConversation(rng, 'heldOut', { op: '-', digits: [3, 2] }), 'on');
  pick(toolConversation(rng, 'heldOut', { noToolNeeded: false }), 'on');
  pick(factsConversation(rng, 'heldOut'), 'off');
  pick(chatConversation(rng, 'heldOut'), 'nothink');
  return texts;
}

export function sha256(file) {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

async function main() {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { out: { type: 'string' } } });
  const [modelDir] = positionals;
  if (!modelDir) throw new Error('usage: check-export.mjs <model-dir> [--out result.json]');
  // f32 KV: this checks the engine's math against PyTorch, not the KV format's rounding.
  const model = await Model.load(modelDir, { backend: 'cpu', threads: 2, kvCacheType: 'f32' });
  const tok = model.tokenizer;
  const seqs = checkConversations().map((t) => tok.encode(t, { special: true }));
  const V = model.info.vocabSize;
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'glm-export-check-'));
  try {
    writeFileSync(path.join(tmp, 'ids.json'), JSON.stringify(seqs));
    execFileSync('/usr/bin/python3', [path.join(here, 'torch_logits.py'), modelDir, path.join(tmp, 'ids.json'), path.join(tmp, 'out.bin')], { stdio: 'inherit' });
    const buf = readFileSync(path.join(tmp, 'out.bin'));
    const all = new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4);
    let offset = 0;
    let maxDiff = 0;
    let maxAbs = 0;
    let positions = 0;
    let top1Same = 0;
    const recorded = [];
    for (const ids of seqs) {
      const ref = all.subarray(offset, offset + ids.length * V);
      offset += ids.length * V;
      const prefill = model.createSession({ contextLength: ids.length });
      const full = await prefill.evaluate(ids, { allLogits: true });
      const stepwise = model.createSession({ contextLength: ids.length });
      const rows = [];
      for (let t = 0; t < ids.length; t++) {
        const one = await stepwise.evaluate([ids[t]]);
        const r = ref.subarray(t * V, (t + 1) * V);
        let argE = 0;
        let argR = 0;
        for (let v = 0; v < V; v++) {
          maxDiff = Math.max(maxDiff, Math.abs(one[v] - r[v]), Math.abs(full[t * V + v] - r[v]));
          maxAbs = Math.max(maxAbs, Math.abs(r[v]));
          if (one[v] > one[argE]) argE = v;
          if (r[v] > r[argR]) argR = v;
        }
        positions++;
        if (argE === argR) top1Same++;
        const top = [...r.keys()].sort((a, b) => r[b] - r[a]).slice(0, 5);
        rows.push(top.map((v) => [v, Number(r[v].toFixed(5))]));
      }
      recorded.push({ ids, top5: rows });
      await prefill.dispose();
      await stepwise.dispose();
    }
    const result = {
      command: `node scripts/train-default-model/check-export.mjs ${path.relative(path.resolve(here, '../..'), path.resolve(modelDir))}`,
      modelSha256: sha256(path.join(modelDir, 'model.safetensors')),
      conversations: seqs.length, positions, maxAbsLogitDiff: maxDiff, maxAbsLogit: maxAbs,
      top1Agreement: top1Same / positions, sequences: recorded,
    };
    console.log(`engine vs PyTorch over ${positions} positions of ${seqs.length} conversations (prefill and token by token): ` +
      `max |logit diff| ${maxDiff.toExponential(2)} (logits up to ${maxAbs.toFixed(1)}), top-1 agreement ${(100 * top1Same / positions).toFixed(2)}%`);
    if (values.out) writeFileSync(values.out, JSON.stringify(result) + '\n');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    await model.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
