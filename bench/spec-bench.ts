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
    .option('--repeats <n>', 'rounds over the configurations (best kept)', (v) => Number(v), 2)
    .option('--models <list>', 'default,bench', (v) => v.split(','), ['default', 'bench'])
    .option('--json <file>', 'also write the rows as JSON');
  program.parse(process.argv);
  const o = program.opts<{ threads: number; batches: number[]; output: number; repeats: number; models: string[]; json?: string }>();
  const rows: Row[] = [];
  process.stdout.write(`glm-node speculative decoding (CPU, ${o.threads} threads, ${o.output} tokens per generation, ` +
    `load average ${os.loadavg()[0]!.toFixed(2)} at start)\n`);
  for (const which of o.models) {
    const dir = which === 'bench' ? benchCheckpointDir(BENCH_SPEC) : DEFAULT_MODEL;
    if (which === 'bench') await ensureCheckpoint(dir);
    const configs = which === 'bench' ? CONFIGS.filter((c) => c.name !== 'k=2' && c.name !== 'k=3') : CONFIGS.filter((c) => c.name !== 'k=1 no policy');
    for (const batch of o.batches) {
      const best = new Map<string, Row>();
      for (let rep = 0; rep < o.repeats; rep++) {
        for (const c of configs) {
          // A fresh model per measurement: the adaptive policy starts from scratch each time.
          const model = await Model.load(dir, { threads: o.threads, speculative: c.speculative });
          try {
            const row = await measure(model, which, c, batch, o.output);
            const prev = best.get(c.name);
            if (!prev || row.tokensPerSecond > prev.tokensPerSecond) best.set(c.name, row);
          } finally {
            await model.dispose();
          }
        }
      }
      const base = best.get('off')!.tokensPerSecond;
      for (const c of configs) {
        const r = best.get(c.name)!;
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

async function measure(model: Model, which: string, c: Config, batch: number, output: number): Promise<Row> {
  const info = model.info;
  const prompts = which === 'bench'
    ? Array.from({ length: batch }, (_, i) => ({ tokens: benchPrompt(32, info.vocabSize, 7 + i) }))
    : Array.from({ length: batch }, (_, i) => ({ chat: [{ role: 'user' as const, content: `What is ${123 + 37 * i} + ${456 + 11 * i}?` }] }));
  const before = model.stats();
  const t0 = performance.now();
  const results: Array<{ tokens: number[] }> = await Promise.all(prompts.map((p) => 'tokens' in p
    ? model.generate({ tokens: p.tokens, maxTokens: output, stopTokens: [] }) as Promise<GenerateResult>
    : model.generate(p.chat, { temperature: 0, maxTokens: output, ignoreEos: true })));
  const seconds = (performance.now() - t0) / 1000;
  const after = model.stats();
  const tokens = results.reduce((n, r) => n + r.tokens.length, 0);
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
