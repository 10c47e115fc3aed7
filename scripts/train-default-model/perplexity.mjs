#!/usr/bin/env node
// Perplexity of one or more model folders (e.g. the BF16 export and its `glm-node quantize` copies)
// on the held-out conversations' assistant turns, through the engine (one prefill with all logits per
// conversation).
//   node scripts/train-default-model/perplexity.mjs <eval.jsonl> <model-dir>... [--limit N] [--json out.json]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Model } from '../../dist/lib/index.js';
import { heldOutDocuments } from './heldout-docs.mjs';

const { positionals, values } = parseArgs({ allowPositionals: true, options: { limit: { type: 'string', default: '300' }, json: { type: 'string' } } });
const [evalFile, ...dirs] = positionals;
if (!evalFile || dirs.length === 0) throw new Error('usage: perplexity.mjs <eval.jsonl> <model-dir>... [--limit N]');
const results = [];
let docs;
for (const dir of dirs) {
  const model = await Model.load(dir, { backend: 'cpu', threads: 2 });
  docs ??= heldOutDocuments(evalFile, model.tokenizer, Number(values.limit));
  const V = model.info.vocabSize;
  let nll = 0;
  let n = 0;
  let top1 = 0;
  for (const d of docs) {
    const s = model.createSession({ contextLength: d.ids.length });
    const logits = await s.evaluate(d.ids, { allLogits: true });
    await s.dispose();
    for (let t = 0; t + 1 < d.ids.length; t++) {
      if (!d.trained[t + 1]) continue;
      const row = logits.subarray(t * V, (t + 1) * V);
      let max = -Infinity;
      let arg = 0;
      for (let v = 0; v < V; v++) if (row[v] > max) { max = row[v]; arg = v; }
      let sum = 0;
      for (let v = 0; v < V; v++) sum += Math.exp(row[v] - max);
      nll += max + Math.log(sum) - row[d.ids[t + 1]];
      n++;
      if (arg === d.ids[t + 1]) top1++;
    }
  }
  const r = { model: dir, dtype: model.info.dtype, tokens: n, perplexity: Math.exp(nll / n), top1: top1 / n };
  results.push(r);
  console.log(`${dir}: perplexity ${r.perplexity.toFixed(4)} over ${n} assistant tokens of ${docs.length} conversations, next-token top-1 ${(100 * r.top1).toFixed(2)}%`);
  await model.dispose();
}
if (values.json) writeFileSync(values.json, JSON.stringify(results, null, 1) + '\n');
