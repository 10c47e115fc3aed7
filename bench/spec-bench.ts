// Speculative decoding benchmark (`npm run bench:spec`): decode tokens/s without speculation and with
// k = 1, 2, 3 MTP drafts per round, at 1, 4 and 16 concurrent generations, on the trained default model
// (real acceptance) and on the BENCH_SPEC checkpoint (random weights: useless drafts, where the adaptive
// policy must keep the loss small; also shown without the policy). Configurations run interleaved in
// one process, side by side, so their ratios share the machine's load. Prints numbers only.
import { Command, InvalidArgumentError } from 'commander';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Model, type GenerateResult } from '../lib/model.js';
import type { SpeculativeLoadOptions } from '../lib/speculative.js';
import { BENCH_SPEC } from '../lib/synthetic/checkpoint.js';
import { benchCheckpointDir, benchPrompt, ensureCheckpoint } from './bench.js';

const DEFAULT_MODEL = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'models', 'tiny-default');

interface Config {
  name: string;
  speculative: SpeculativeLoadOptions;
}

const CONFIGS: Config[] = [
  { name: 'off', speculative: false },
  { name: 'k=1', speculative: { draftTokens: 1 } },
  { name: 'k=2', speculative: { draftTokens: 2 } },
  { name: 'k=3', speculative: { draftTokens: 3 } },
  { name: 'k=1 no policy', speculative: { draftTokens: 1, minAcceptance: 0, maxBatch: 65536 } },
];

interface Row {
  model: string;
  config: string;
  batch: number;
  tokens: number;
  seconds: number;
  tokensPerSecond: number;
  speedup: number;
  acceptance: number;
  tokensPerRound: number;
  trunkStepsPerToken: number;
  weightBytesPerToken: number;
}

const parseList = (v: string) => v.split(',').map((x) => {
  const n = Number(x);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected positive integers, got ${v}`);
  return n;
});

async function main(): Promise<void> {
  const program = new Command('bench:spec')
    .option('--threads <n>', 'CPU threads', (v) => Number(v), Math.max(1, os.availableParallelism()))
    .option('--batches <list>', 'concurrent generations', parseList, [1, 4, 16])
    .option('--output <n>', 'tokens per generation', (v) => Number(v), 128)
    .option('--repeats <n>', 'rounds over the configurations', (v) => Number(v), 2)
    .option('--min-seconds <s>', 'each measurement repeats its batch of generations for at least this long', (v) => Number(v), 1)
    .option('--stat <best|median>', 'which round each row reports: the fastest, or the median (steadier for small ratios)', (v) => {
      if (v !== 'best' && v !== 'median') throw new InvalidArgumentError(`expected best or median, got ${v}`);
      return v;
    }, 'best')
    .option('--models <list>', 'default,bench', (v) => v.split(','), ['default', 'bench'])
    .option('--json <file>', 'also write the rows as JSON');
  program.parse(process.argv);
  const o = program.opts<{ threads: number; batches: number[]; output: number; repeats: number; minSeconds: number; stat: 'best' | 'median'; models: string[]; json?: string }>();
  const rows: Row[] = [];
  process.stdout.write(`glm-node speculative decoding (CPU, ${o.threads} threads, ${o.output} tokens per generation, ` +
    `${o.stat} of ${o.repeats} rounds, load average ${os.loadavg()[0]!.toFixed(2)} at start)\n`);
  for (const which of o.models) {
    const dir = which === 'bench' ? benchCheckpointDir(BENCH_SPEC) : DEFAULT_MODEL;
    if (which === 'bench') await ensureCheckpoint(dir);
    const configs = which === 'bench' ? CONFIGS.filter((c) => c.name !== 'k=2' && c.name !== 'k=3') : CONFIGS.filter((c) => c.name !== 'k=1 no policy');
    for (const batch of o.batches) {
      const measured = new Map<string, Row[]>();
      for (let rep = 0; rep < o.repeats; rep++) {
        for (const c of configs) {
          // A fresh model per measurement: the adaptive policy starts from scratch each time.
          const model = await Model.load(dir, { threads: o.threads, speculative: c.speculative });
          try {
            const row = await measure(model, which, c, batch, o.output, o.minSeconds);
            measured.set(c.name, [...(measured.get(c.name) ?? []), row]);
          } finally {
            await model.dispose();
          }
        }
      }
      const pick = (name: string): Row => {
        const rs = [...measured.get(name)!].sort((a, b) => a.tokensPerSecond - b.tokensPerSecond);
        return o.stat === 'best' ? rs[rs.length - 1]! : rs[(rs.length - 1) >> 1]!;
      };
      const base = pick('off').tokensPerSecond;
      for (const c of configs) {
        const r = pick(c.name);
        r.speedup = r.tokensPerSecond / base;
        rows.push(r);
        process.stdout.write(`${which.padEnd(8)} batch ${String(batch).padStart(2)}  ${c.name.padEnd(14)} ${r.tokensPerSecond.toFixed(1).padStart(8)} tok/s  ` +
          `x${r.speedup.toFixed(2)}  acceptance ${(100 * r.acceptance).toFixed(1).padStart(5)}%  tokens/round ${r.tokensPerRound.toFixed(2)}  ` +
          `trunk steps/token ${r.trunkStepsPerToken.toFixed(3)}  weight MB/token ${(r.weightBytesPerToken / 1e6).toFixed(2)}\n`);
      }
    }
  }
  if (o.json) await writeFile(o.json, JSON.stringify({ loadAverage: os.loadavg(), rows }, null, 1));
}

async function measure(model: Model, which: string, c: Config, batch: number, output: number, minSeconds: number): Promise<Row> {
  const info = model.info;
  const prompts = which === 'bench'
    ? Array.from({ length: batch }, (_, i) => ({ tokens: benchPrompt(32, info.vocabSize, 7 + i) }))
    : Array.from({ length: batch }, (_, i) => ({ chat: [{ role: 'user' as const, content: `What is ${123 + 37 * i} + ${456 + 11 * i}?` }] }));
  const before = model.stats();
  const t0 = performance.now();
  // The batch again until minSeconds have passed: one batch of the default model takes ~30 ms, where
  // a scheduling hiccup alone is 10%. (The same model throughout: the adaptive policy's state carries
  // over, so a useless-draft model pays its probe rounds once per measurement, as a server would.)
  let tokens = 0;
  do {
    const results: Array<{ tokens: number[] }> = await Promise.all(prompts.map((p) => 'tokens' in p
      ? model.generate({ tokens: p.tokens, maxTokens: output, stopTokens: [] }) as Promise<GenerateResult>
      : model.generate(p.chat, { temperature: 0, maxTokens: output, ignoreEos: true })));
    tokens += results.reduce((n, r) => n + r.tokens.length, 0);
  } while (performance.now() - t0 < minSeconds * 1000);
  const seconds = (performance.now() - t0) / 1000;
  const after = model.stats();
  const sp = after.speculative, sb = before.speculative;
  const rounds = sp.rounds - sb.rounds, drafts = sp.draftTokens - sb.draftTokens, accepted = sp.acceptedDraftTokens - sb.acceptedDraftTokens;
  const steps = after.steps - before.steps, mtpSteps = sp.mtpSteps - sb.mtpSteps;
  // Weights read: every trunk step reads the model's weights once at most (an upper bound at small
  // batch: only the routed experts in use are read), every MTP step the MTP layer's share.
  const layers = info.numLayers + (info.hasMtp ? 1 : 0);
  const trunkBytes = info.memory.weightsMappedBytes * (info.numLayers / layers);
  const mtpBytes = info.memory.weightsMappedBytes - trunkBytes;
  return {
    model: which, config: c.name, batch, tokens, seconds,
    tokensPerSecond: tokens / seconds, speedup: 1,
    acceptance: drafts > 0 ? accepted / drafts : 0,
    tokensPerRound: rounds > 0 ? 1 + accepted / rounds : 1,
    trunkStepsPerToken: steps / tokens,
    weightBytesPerToken: (steps * trunkBytes + mtpSteps * mtpBytes) / tokens,
  };
}

await main();
