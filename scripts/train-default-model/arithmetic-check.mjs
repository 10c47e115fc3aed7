#!/usr/bin/env node
// Held-out arithmetic on more problems than the evaluation set's 50 per cell, to tell a real change
// between two models from the noise of 50 items. Problems are drawn by a fixed generator and kept
// only when isHeldOutProblem says training never saw them; answers are greedy, thinking on.
//   node scripts/train-default-model/arithmetic-check.mjs <model-dir>... [--per-kind N]
// Prints, per model, right / asked for 3-digit addition, 2- and 3-digit subtraction, with the
// subtractions whose result is negative counted apart.
import { parseArgs } from 'node:util';
import { Model } from '../../dist/lib/index.js';
import { isHeldOutProblem, randomOperand } from './arithmetic.mjs';
import { Rng } from './rng.mjs';

const { positionals: dirs, values } = parseArgs({ allowPositionals: true, options: { 'per-kind': { type: 'string', default: '100' } } });
if (dirs.length === 0) throw new Error('usage: arithmetic-check.mjs <model-dir>... [--per-kind N]');
const perKind = Number(values['per-kind']);

// The corpus's seeded generator: the same problems on every machine and for every model.
const rng = new Rng(777);
const problems = [];
for (const [op, digits] of [['+', 3], ['-', 2], ['-', 3]]) {
  for (let found = 0; found < perKind;) {
    let a = randomOperand(rng, digits);
    let b = rng.int(1, 10 ** digits - 1);
    if (op === '-' && a < b && found % 2 === 0) [a, b] = [b, a];  // about a fifth of subtractions stay negative
    if (!isHeldOutProblem(a, op, b)) continue;
    problems.push({ a, op, b, kind: `${op === '+' ? 'add' : 'subtract'} ${digits} digits${op === '-' && a < b ? ', negative' : ''}` });
    found++;
  }
}

for (const dir of dirs) {
  const model = await Model.load(dir, { threads: 2 });
  const tally = new Map();
  for (const p of problems) {
    const r = await model.generate([{ role: 'user', content: `What is ${p.a} ${p.op} ${p.b}?` }], { temperature: 0, maxTokens: 300 });
    const want = p.op === '+' ? p.a + p.b : p.a - p.b;
    const got = Number((r.text.match(/-?\d+/g) ?? []).at(-1));
    const t = tally.get(p.kind) ?? { right: 0, asked: 0 };
    t.asked++;
    if (got === want) t.right++;
    tally.set(p.kind, t);
  }
  await model.dispose();
  console.log(dir);
  for (const [kind, t] of tally) console.log(`  ${kind.padEnd(30)} ${t.right} / ${t.asked} (${(100 * t.right / t.asked).toFixed(1)}%)`);
}
