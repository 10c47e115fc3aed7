#!/usr/bin/env node
// Writes the synthetic training corpus and the held-out evaluation sets.
//   node scripts/train-default-model/corpus.mjs <out-dir> [--conversations N] [--seed S]
// <out-dir>/train.jsonl: one document per line, [[text, trained], ...] (see render.mjs).
// <out-dir>/eval.jsonl:  one held-out conversation per line (evaluate.mjs runs them through the engine).
// Training uses the `train` word lists and non-held-out arithmetic; eval uses the other halves, a
// different seed and, for tools, also tools never seen in training.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { toDocuments, withMode } from './render.mjs';
import { Rng } from './rng.mjs';
import {
  arithmeticConversation, chatConversation, factsConversation, HELD_OUT_TOOL_NAMES, IN_FACTS_DISTRACTORS, maybeSystem,
  setSyntheticNames, setSyntheticTools, stringConversation, toolConversation, TRAIN_TOOL_NAMES,
} from './tasks.mjs';

/** Share of training conversations per family (by count, not tokens). */
export const MIXTURE = { arithmetic: 44, tool: 16, facts: 10, string: 16, chat: 14 };
/** Thinking modes: reasoning on, enable_thinking=false, and /nothink typed by the user. */
export const MODES = { on: 6, off: 3, nothink: 1 };

const GENERATORS = {
  arithmetic: arithmeticConversation, tool: toolConversation, facts: factsConversation, string: stringConversation, chat: chatConversation,
};

export function trainingConversations(seed, count, mixture = MIXTURE) {
  const rng = new Rng(seed);
  const out = [];
  for (let i = 0; i < count; i++) {
    const family = rng.weighted(mixture);
    const conv = maybeSystem(rng, GENERATORS[family](rng, 'train'));
    out.push({ conv, mode: rng.weighted(MODES) });
  }
  return out;
}

/** Held-out sets: per family and thinking mode, a fixed number of conversations from `seed`. */
export function evalConversations(seed, perCell) {
  const rng = new Rng(seed);
  const items = [];
  const add = (name, mode, make) => {
    for (let i = 0; i < perCell; i++) items.push({ name, mode, conv: make() });
  };
  for (const mode of ['on', 'off']) {
    for (const op of ['+', '-']) {
      for (const d of [2, 3]) {
        add(`${op === '+' ? 'add' : 'sub'}${d}`, mode, () => {
          const other = rng.int(1, d);
          // 2-digit + 1-digit sums only as 1-digit + 2-digit: the other order is the distractors' form.
          const digits = op === '+' && d === 2 && other === 1 ? [1, 2] : rng.chance(0.5) ? [d, other] : [other, d];
          return arithmeticConversation(rng, 'heldOut', { op, digits, exclude: IN_FACTS_DISTRACTORS });
        });
      }
    }
    add('reverse', mode, () => pickFamily(rng, stringConversation, 'reverse'));
    add('count', mode, () => pickFamily(rng, stringConversation, 'count'));
    add('length', mode, () => pickFamily(rng, stringConversation, 'length'));
    add('sort', mode, () => pickFamily(rng, stringConversation, 'sort'));
    add('facts', mode, () => factsConversation(rng, 'heldOut'));
    add('identity', mode, () => pickFamily(rng, chatConversation, 'identity'));
    add('greeting', mode, () => pickFamily(rng, chatConversation, 'greeting'));
    add('tool_seen', mode, () => toolConversation(rng, 'heldOut', { toolNames: TRAIN_TOOL_NAMES, noToolNeeded: false }));
    add('tool_unseen', mode, () => toolConversation(rng, 'heldOut', { toolNames: HELD_OUT_TOOL_NAMES, noToolNeeded: false }));
    add('tool_none', mode, () => toolConversation(rng, 'heldOut', { noToolNeeded: true }));
  }
  return items;
}

function pickFamily(rng, gen, family) {
  for (;;) {
    const c = gen(rng, 'heldOut');
    if (c.family === family) return c;
  }
}

async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      'eval-only': { type: 'boolean', default: false },
      conversations: { type: 'string', default: '30000' }, seed: { type: 'string', default: '1' },
      // e.g. --mixture arithmetic=45,tool=25,facts=10,string=12,chat=8 (default: MIXTURE)
      mixture: { type: 'string' },
      // share of training names, cities, pets and words replaced by made-up ones (see tasks.mjs)
      'synthetic-names': { type: 'string', default: '0' },
      // 'syllables' (phase 3) or 'mixed' (phase 4: also spliced and clustered names)
      'synthetic-style': { type: 'string', default: 'syllables' },
      // share of tool requests for a made-up city attribute tool (phase 4)
      'synthetic-tools': { type: 'string', default: '0' },
      'eval-seed': { type: 'string', default: '1001' }, 'eval-per-cell': { type: 'string', default: '50' },
    },
  });
  const out = positionals[0];
  if (!out) throw new Error('usage: corpus.mjs <out-dir> [--conversations N] [--seed S]');
  mkdirSync(out, { recursive: true });
  const mixture = values.mixture
    ? Object.fromEntries(values.mixture.split(',').map((kv) => { const [k, v] = kv.split('='); if (!(k in GENERATORS)) throw new Error(`unknown family ${k}`); return [k, Number(v)]; }))
    : MIXTURE;
  const lines = [];
  const counts = {};
  if (!values['eval-only']) {
    setSyntheticNames(Number(values['synthetic-names']), values['synthetic-style']);
    setSyntheticTools(Number(values['synthetic-tools']));
    for (const { conv, mode } of trainingConversations(Number(values.seed), Number(values.conversations), mixture)) {
      counts[conv.family] = (counts[conv.family] ?? 0) + 1;
      for (const doc of toDocuments(conv, mode)) lines.push(JSON.stringify(doc));
    }
    writeFileSync(path.join(out, 'train.jsonl'), lines.join('\n') + '\n');
    setSyntheticNames(0);
    setSyntheticTools(0);
    console.log(`${lines.length} training documents from ${values.conversations} conversations`, counts);
  }
  const evalLines = evalConversations(Number(values['eval-seed']), Number(values['eval-per-cell'])).map(({ name, mode, conv }, i) => {
    const c = withMode(conv, mode === 'off' ? 'off' : 'on');
    return JSON.stringify({ id: i, name, mode, family: conv.family, tools: conv.tools, messages: c.messages, evaluation: conv.evaluation });
  });
  writeFileSync(path.join(out, 'eval.jsonl'), evalLines.join('\n') + '\n');
  console.log(`${evalLines.length} held-out conversations`);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
