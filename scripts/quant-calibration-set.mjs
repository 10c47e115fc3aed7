#!/usr/bin/env node
// Writes models/calibration/tiny-default.jsonl: the calibration set of the embedded default model,
// drawn from its training distribution (scripts/train-default-model/corpus.mjs, training mixture and
// word lists) with a seed no training phase (1, 2, 3) or held-out set (1001) uses, so the accuracy
// report's held-out evaluation never sees calibration text.
//   node scripts/quant-calibration-set.mjs [--conversations 256] [--seed 16] [--out models/calibration/tiny-default.jsonl]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { conversations: { type: 'string', default: '256' }, seed: { type: 'string', default: '16' }, out: { type: 'string', default: 'models/calibration/tiny-default.jsonl' } } });
const dir = mkdtempSync(path.join(os.tmpdir(), 'glm-calib-'));
try {
  execFileSync(process.execPath, [path.join('scripts', 'train-default-model', 'corpus.mjs'), dir, '--conversations', values.conversations, '--seed', values.seed], { stdio: 'ignore' });
  // One document per line ([text, trained] segments, rendered with the model's chat template): the
  // calibration sample is its whole text, prompt and answer, as the model reads it.
  const lines = readFileSync(path.join(dir, 'train.jsonl'), 'utf8').trim().split('\n')
    .map((l) => JSON.stringify({ text: JSON.parse(l).map(([t]) => t).join('') }));
  writeFileSync(values.out, lines.join('\n') + '\n');
  console.log(`${values.out}: ${lines.length} samples from ${values.conversations} conversations (seed ${values.seed})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
