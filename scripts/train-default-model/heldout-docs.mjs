// Held-out conversations (eval.jsonl) as token sequences with their answer turns, for the measurements
// that read a whole conversation rather than generate one: MTP agreement and perplexity. `trained[t]`
// marks the tokens the model writes itself (assistant turns), where both are measured.
import { readFileSync } from 'node:fs';
import { toDocuments } from './render.mjs';

export function heldOutDocuments(evalFile, tokenizer, limit = Infinity) {
  const items = readFileSync(evalFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const docs = [];
  // Interleave families so a limit still covers all of them.
  const byName = new Map();
  for (const it of items) byName.set(`${it.name}/${it.mode}`, [...(byName.get(`${it.name}/${it.mode}`) ?? []), it]);
  const queues = [...byName.values()];
  for (let i = 0; docs.length < limit && queues.some((q) => i < q.length); i++) {
    for (const q of queues) {
      if (i >= q.length || docs.length >= limit) continue;
      const it = q[i];
      for (const doc of toDocuments({ messages: it.messages, tools: it.tools }, it.mode === 'off' ? 'off' : 'on')) {
        const ids = [];
        const trained = [];
        for (const [text, isTrained] of doc) {
          for (const id of tokenizer.encode(text, { special: true })) { ids.push(id); trained.push(isTrained); }
        }
        docs.push({ name: it.name, mode: it.mode, ids, trained });
      }
    }
  }
  return docs;
}
