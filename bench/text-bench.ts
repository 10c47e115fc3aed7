// Text-layer benchmark: tokenizer throughput, the JS cost per generated token (UTF-8 holding, stop
// strings, thinking/tool-call parsing) and what a streaming generation costs end to end compared
// with the engine's own decode time, all measured in one run on the embedded default model.
// Prints numbers; asserts nothing.
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Model } from '../lib/model.js';
import { TOKENIZER_CORPUS } from '../lib/synthetic/tokenizer-corpus.js';
import { GlmOutputParser } from '../lib/text/output-parser.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const modelDir = process.argv[2] ?? path.join(root, 'models', 'tiny-default');

function best<T>(runs: number, fn: () => T): { ms: number; value: T } {
  let ms = Infinity;
  let value!: T;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    value = fn();
    ms = Math.min(ms, performance.now() - t0);
  }
  return { ms, value };
}

const model = await Model.load(modelDir, { threads: 2 });
const tok = model.tokenizer!;
const text = TOKENIZER_CORPUS.join('\n').repeat(20);
const enc = best(5, () => tok.encode(text));
const dec = best(5, () => tok.decode(enc.value));

// The per-token JS work of a generation, isolated: the same parser the stream uses, fed real ids.
const ids = enc.value.slice(0, 100_000);
const parse = best(5, () => {
  const p = new GlmOutputParser(tok, { stop: ['never appears in the corpus \u2603\u2603'] });
  let n = 0;
  for (const id of ids) n += p.push(id).length;
  return n + p.finish().length;
});

// End to end on the tiny model: wall time of a streamed generation vs the engine's decode time.
const session = model.createSession({ contextLength: 4096 });
const prompt = [{ role: 'user' as const, content: 'Tell me a story.' }];
await session.generate(prompt, { maxTokens: 64, ignoreEos: true, temperature: 0 });  // warm-up
const steps = 2000;
const t0 = performance.now();
let chunks = 0;
const stream = session.stream(prompt, { maxTokens: steps, ignoreEos: true, temperature: 0 });
for await (const _ of stream) chunks++;
const wallMs = performance.now() - t0;
const r = await stream.result;
await session.dispose();
await model.dispose();

const f = (x: number, d = 1) => x.toFixed(d);
const rows: [string, string][] = [
  ['tokenizer encode', `${f(enc.value.length / enc.ms / 1e3, 2)} M tok/s (${f(text.length / 1e6 / (enc.ms / 1e3), 2)} M chars/s, ${enc.value.length} tokens)`],
  ['tokenizer decode', `${f(enc.value.length / dec.ms / 1e3, 2)} M tok/s`],
  ['output parser per token', `${f((parse.ms * 1e3) / ids.length, 3)} µs (UTF-8 hold + stop strings + think/tool parsing, ${ids.length} ids)`],
  ['engine decode (tiny model)', `${f(((r.tokens.length - 1) / r.timings.decodeMs) * 1e3, 0)} tok/s (${f((r.timings.decodeMs * 1e3) / (r.tokens.length - 1), 1)} µs/token)`],
  ['streamed wall time', `${f((wallMs * 1e3) / r.tokens.length, 1)} µs/token over ${r.tokens.length} tokens, ${chunks} chunks (prefill ${f(r.timings.prefillMs, 2)} ms)`],
  ['JS layer overhead', `${f(((wallMs - r.timings.decodeMs - r.timings.prefillMs) * 1e3) / r.tokens.length, 1)} µs/token beyond the engine's own time`],
];
const w = Math.max(...rows.map(([k]) => k.length));
process.stdout.write('\nglm-node text-layer benchmark (embedded tiny model, 2 threads)\n');
for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v}\n`);
