#!/usr/bin/env node
// Held-out evaluation of an exported model through the package's own engine (greedy model.generate),
// per task family and thinking mode.
//   node scripts/train-default-model/evaluate.mjs <model-dir> <eval.jsonl> [--per-cell N] [--json out.json]
// Scores:
//   number     the last integer in the answer text equals the expected one
//   contains   the answer text contains the expected string
//   words      identity/greeting answers contain one word of each required group and no forbidden word
//   tool       turn 1: calls well-formed (parsed, no errors) and correct (same names and typed arguments);
//              turn 2 (given the expected tool results): the answer contains the results' values
//   no_tool_call  tools offered but not needed: the model calls none
// In thinking mode a scored answer must also have come with non-empty reasoning; with thinking off,
// with none.
import { readFileSync, writeFileSync } from 'node:fs';
import { isDeepStrictEqual, parseArgs } from 'node:util';
import { Model } from '../../dist/lib/index.js';

const MAX_TOKENS = 320;

function lastInteger(text) {
  const m = text.match(/-?\d+/g);
  return m ? Number(m.at(-1)) : undefined;
}

function promptMessages(messages) {
  let lastUser = -1;
  messages.forEach((m, i) => { if (m.role === 'user') lastUser = i; });
  return messages.slice(0, lastUser + 1);
}

function wordsOk(text, { required, forbidden }) {
  return required.every((group) => group.some((w) => text.includes(w))) && !forbidden.some((w) => text.includes(w));
}

/** Scores one held-out conversation; returns { ok, wellFormed?, argsOk?, usesResult?, output }. */
export async function scoreItem(model, item) {
  const thinking = item.mode !== 'off';
  const opts = { temperature: 0, maxTokens: MAX_TOKENS, thinking, ...(item.tools ? { tools: item.tools } : {}) };
  const messages = promptMessages(item.messages);
  const r = await model.generate(messages, opts);
  const reasoningOk = thinking ? r.reasoning.trim().length > 0 : r.reasoning === '';
  const ev = item.evaluation;
  if (ev.kind === 'number') return { ok: reasoningOk && lastInteger(r.text) === ev.answer, output: r.text };
  if (ev.kind === 'contains') return { ok: reasoningOk && r.text.includes(ev.answer), output: r.text };
  if (ev.kind === 'words') return { ok: reasoningOk && wordsOk(r.text, ev), output: r.text };
  if (ev.kind === 'no_tool_call') return { ok: r.toolCalls.length === 0, output: r.text };
  // tool
  const wellFormed = r.toolCalls.length > 0 && r.toolCalls.every((c) => c.errors.length === 0);
  const argsOk = wellFormed && r.toolCalls.length === ev.calls.length &&
    r.toolCalls.every((c, i) => c.name === ev.calls[i].name && isDeepStrictEqual(c.arguments, ev.calls[i].arguments));
  // Turn 2 always gets the expected calls and results, so it measures using a result on its own.
  const turn2 = [...messages,
    { role: 'assistant', content: '', reasoning_content: thinking ? r.reasoning : '', tool_calls: ev.calls.map((c) => ({ type: 'function', function: c })) },
    ...ev.results.map((res) => ({ role: 'tool', content: JSON.stringify(res) }))];
  const r2 = await model.generate(turn2, opts);
  const usesResult = r2.toolCalls.length === 0 && ev.mustContain.every((v) => r2.text.includes(String(v)));
  return { ok: argsOk && usesResult, wellFormed, argsOk, usesResult, output: `${r.toolCalls.map((c) => c.raw).join(' | ')} => ${r2.text}` };
}

const LABELS = {
  add2: 'add, 2 digits', add3: 'add, 3 digits', sub2: 'subtract, 2 digits', sub3: 'subtract, 3 digits',
  reverse: 'reverse a word', count: 'count a letter', length: 'word length', sort: 'sort words',
  facts: 'recall a fact from earlier turns', identity: 'who are you (word list)', greeting: 'greeting (word list)',
  tool_seen: 'tool call, tools seen in training', tool_unseen: 'tool call, unseen tools', tool_none: 'tools offered, none needed: no call',
};

/** One row per task, thinking on / off side by side; tool rows give well-formed / correct args / uses result. */
export function markdownTable(rows) {
  const pct = (a, n) => `${((100 * a) / n).toFixed(0)}%`;
  const cell = (c) => {
    if (!c) return '';
    if (c.name === 'tool_seen' || c.name === 'tool_unseen') return `${pct(c.wellFormed, c.n)} / ${pct(c.argsOk, c.n)} / ${pct(c.usesResult, c.n)}`;
    return pct(c.ok, c.n);
  };
  const lines = ['| held-out task (n per cell) | thinking on | thinking off |', '|---|---|---|'];
  for (const name of Object.keys(LABELS)) {
    const on = rows.find((r) => r.name === name && r.mode === 'on');
    const off = rows.find((r) => r.name === name && r.mode === 'off');
    if (!on && !off) continue;
    const note = name.startsWith('tool_') && name !== 'tool_none' ? ': well-formed / correct arguments / answer uses result' : '';
    lines.push(`| ${LABELS[name]}${note} (${(on ?? off).n}) | ${cell(on)} | ${cell(off)} |`);
  }
  return lines.join('\n');
}

async function main() {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { 'per-cell': { type: 'string' }, json: { type: 'string' }, threads: { type: 'string', default: '2' } } });
  const [modelDir, evalFile] = positionals;
  if (!modelDir || !evalFile) throw new Error('usage: evaluate.mjs <model-dir> <eval.jsonl> [--per-cell N] [--json out.json]');
  const items = readFileSync(evalFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const perCell = values['per-cell'] ? Number(values['per-cell']) : Infinity;
  const seen = {};
  const chosen = items.filter((it) => ((seen[`${it.name}/${it.mode}`] = (seen[`${it.name}/${it.mode}`] ?? 0) + 1) <= perCell));
  const model = await Model.load(modelDir, { backend: 'cpu', threads: Number(values.threads) });
  const cells = {};
  const t0 = performance.now();
  for (const item of chosen) {
    const s = await scoreItem(model, item);
    const key = `${item.name}/${item.mode}`;
    const c = (cells[key] ??= { name: item.name, mode: item.mode, n: 0, ok: 0, wellFormed: 0, argsOk: 0, usesResult: 0, failures: [] });
    c.n++;
    if (s.ok) c.ok++;
    if (s.wellFormed) c.wellFormed++;
    if (s.argsOk) c.argsOk++;
    if (s.usesResult) c.usesResult++;
    if (!s.ok && c.failures.length < 3) c.failures.push({ question: promptMessages(item.messages).at(-1).content, output: s.output });
  }
  await model.dispose();
  const rows = Object.values(cells);
  console.log(markdownTable(rows));
  console.error(`evaluated ${chosen.length} conversations in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  for (const c of rows) for (const f of c.failures) console.error(`FAIL ${c.name}/${c.mode}: ${JSON.stringify(f.question)} -> ${JSON.stringify(f.output).slice(0, 300)}`);
  if (values.json) writeFileSync(values.json, JSON.stringify({ model: modelDir, evalFile, cells: rows }, null, 1) + '\n');
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
