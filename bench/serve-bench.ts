// Serving benchmark on the BENCH_SPEC checkpoint (`npm run bench:serve`): concurrent requests sharing
// forward steps, beside the same requests one after another; decode-heavy streams against the engine's
// own prefill rate at the same tokens per step; a shared-prefix workload with and without the prefix
// cache; a long context per KV cache type, with each type's accuracy against f32. Prints numbers only
// (no assertion on timings: the machines are shared and noisy). Each scenario runs in a child process,
// so its peak RSS is its own.
import { Command, InvalidArgumentError } from 'commander';
import { fork } from 'node:child_process';
import { realpathSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Model, type GenerateResult } from '../lib/model.js';
import type { KvCacheType, ServingStats } from '../lib/serving-options.js';
import { BENCH_SPEC } from '../lib/synthetic/checkpoint.js';
import { benchCheckpointDir, benchPrompt, ensureCheckpoint } from './bench.js';

const SCENARIO_ARG = '__serve-scenario';

interface Options {
  threads: number;
  streams: number[];
  promptMin: number;
  promptMax: number;
  output: number;
  sequential: number;
  decodeOutput: number;
  sharedUsers: number;
  sharedPrefix: number;
  long: number;
  kvTypes: KvCacheType[];
  skip: string[];
  json?: string;
}

// ---------------------------------------------------------------------------------------------
// Scenarios (run in a child process each)

type Scenario =
  | { kind: 'concurrent'; n: number; sequential: number; promptMin: number; promptMax: number; output: number; threads: number }
  | { kind: 'decode'; n: number; output: number; threads: number }
  | { kind: 'prefill16'; tokens: number; threads: number }
  | { kind: 'shared'; users: number; prefix: number; cache: boolean; threads: number }
  | { kind: 'long'; tokens: number; kvType: KvCacheType; threads: number };

function percentile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

const ttftOf = (r: GenerateResult) => r.timings.queueMs + r.timings.prefillMs;

async function load(opts: Parameters<typeof Model.load>[1]): Promise<Model> {
  const dir = benchCheckpointDir(BENCH_SPEC);
  await ensureCheckpoint(dir);
  return Model.load(dir, { prefetch: true, ...opts });
}

/** Samples stats() while `work` runs: the peak of KV pages in use. */
async function withKvPeak<T>(model: Model, work: Promise<T>): Promise<{ value: T; peakPages: number }> {
  let peak = 0;
  const timer = setInterval(() => { peak = Math.max(peak, model.stats().kvCache.pagesUsed); }, 20);
  try {
    const value = await work;
    peak = Math.max(peak, model.stats().kvCache.pagesUsed);
    return { value, peakPages: peak };
  } finally {
    clearInterval(timer);
  }
}

async function runScenario(s: Scenario): Promise<Record<string, unknown>> {
  const vocab = BENCH_SPEC.vocab_size;
  const greedy = (model: Model, tokens: number[], maxTokens: number) =>
    model.generate({ tokens, maxTokens, temperature: 0, stopTokens: [] });
  switch (s.kind) {
    case 'concurrent': {
      const model = await load({ threads: s.threads });
      try {
        let x = 1234 + s.n;
        const rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32);
        const prompts = Array.from({ length: s.n }, (_, i) =>
          benchPrompt(s.promptMin + Math.floor(rand() * (s.promptMax - s.promptMin + 1)), vocab, 7919 * (i + 1)));
        await greedy(model, benchPrompt(8, vocab, 1), 1);  // warm-up: buffers (no ITL sample)
        const t0 = performance.now();
        const { value: results, peakPages } = await withKvPeak(model, Promise.all(prompts.map((p) => greedy(model, p, s.output))));
        const wall = (performance.now() - t0) / 1000;
        const st: ServingStats = model.stats();
        const info = model.info;
        // The same requests one after another (the first `sequential` of them: a rate, so a subset measures it).
        const seqPrompts = prompts.slice(0, Math.min(s.sequential, prompts.length)).map((p) => p.map((t) => (t + 1) % (vocab - 32)));
        const t1 = performance.now();
        let seqTokens = 0;
        for (const p of seqPrompts) seqTokens += (await greedy(model, p, s.output)).tokens.length;
        const seqWall = (performance.now() - t1) / 1000;
        const outTokens = results.reduce((n, r) => n + r.tokens.length, 0);
        return {
          n: s.n,
          promptTokens: prompts.reduce((n, p) => n + p.length, 0),
          outputTokens: outTokens,
          wallS: wall,
          outputTokensPerS: outTokens / wall,
          ttftP50Ms: percentile(results.map(ttftOf), 0.5),
          ttftP99Ms: percentile(results.map(ttftOf), 0.99),
          itlP50Ms: st.interTokenLatencyMs.p50,
          itlP99Ms: st.interTokenLatencyMs.p99,
          kvPeakPages: peakPages,
          kvPeakBytes: peakPages * info.kvCache.pageBytes,
          steps: st.steps,
          sequentialRequests: seqPrompts.length,
          sequentialOutputTokensPerS: seqTokens / seqWall,
          weightsBytes: info.memory.weightsMappedBytes + info.memory.weightsOwnedBytes,
          kvPoolBytes: info.memory.kvPoolBytes,
          scratchBytes: info.memory.scratchBytes,
          peakRssBytes: process.resourceUsage().maxRSS * 1024,
        };
      } finally {
        await model.dispose();
      }
    }
    case 'decode': {
      // Decode-heavy: 16-token prompts, long outputs. The decode rate is measured from the first token
      // of the last request to start decoding, so every stream is decoding throughout.
      const model = await load({ threads: s.threads });
      try {
        await greedy(model, benchPrompt(8, vocab, 1), 1);
        const prompts = Array.from({ length: s.n }, (_, i) => benchPrompt(16, vocab, 31 * (i + 1)));
        const t0 = performance.now();
        const results = await Promise.all(prompts.map((p) => greedy(model, p, s.output)));
        const wall = (performance.now() - t0) / 1000;
        const decodeS = Math.min(...results.map((r) => r.timings.decodeMs)) / 1000;
        const decodeTokens = s.n * (s.output - 1);
        const st = model.stats();
        return {
          n: s.n,
          wallS: wall,
          aggregateDecodeTokensPerS: decodeTokens / Math.max(...results.map((r) => r.timings.decodeMs / 1000)),
          perStreamDecodeTokensPerS: (s.output - 1) / decodeS,
          itlP50Ms: st.interTokenLatencyMs.p50,
          itlP99Ms: st.interTokenLatencyMs.p99,
        };
      } finally {
        await model.dispose();
      }
    }
    case 'prefill16': {
      // The engine's own prefill at 16 tokens per step: the compute ceiling a 16-stream decode step
      // can be compared with (a decode step of 16 tokens does the same matmuls, plus 16 lm_head rows).
      const model = await load({ threads: s.threads, maxBatchTokens: 16, prefixCache: false });
      try {
        await greedy(model, benchPrompt(32, vocab, 1), 1);
        const r = await greedy(model, benchPrompt(s.tokens, vocab, 99), 1);
        return { tokens: s.tokens, prefillTokensPerS: r.timings.prefillTokensPerSecond };
      } finally {
        await model.dispose();
      }
    }
    case 'shared': {
      const model = await load({ threads: s.threads, prefixCache: s.cache });
      try {
        await greedy(model, benchPrompt(8, vocab, 1), 1);
        const system = benchPrompt(s.prefix, vocab, 4242);
        const prompts = Array.from({ length: s.users }, (_, i) => [...system, ...benchPrompt(32, vocab, 500 + i)]);
        const before = model.stats().promptTokens;
        const t0 = performance.now();
        const results = await Promise.all(prompts.map((p) => greedy(model, p, 16)));
        const wall = (performance.now() - t0) / 1000;
        const ttft = results.map(ttftOf).sort((a, b) => a - b);
        return {
          users: s.users,
          prefix: s.prefix,
          cache: s.cache,
          wallS: wall,
          promptTokensComputed: model.stats().promptTokens - before,
          promptTokensSubmitted: prompts.reduce((n, p) => n + p.length, 0),
          cachedTokens: results.reduce((n, r) => n + r.usage.cachedTokens, 0),
          ttftFirstMs: ttft[0],
          ttftLaterP50Ms: percentile(ttft.slice(1), 0.5),
          ttftLaterP99Ms: percentile(ttft.slice(1), 0.99),
        };
      } finally {
        await model.dispose();
      }
    }
    case 'long': {
      const model = await load({ threads: s.threads, kvCacheType: s.kvType, prefixCache: false });
      try {
        const prompt = benchPrompt(s.tokens, vocab, 777);
        const tail = 32;  // the last positions' logits are compared across KV types
        const session = model.createSession({ contextLength: s.tokens + 40 });
        const t0 = performance.now();
        await session.evaluate(prompt.slice(0, s.tokens - tail));
        const logits = await session.evaluate(prompt.slice(s.tokens - tail), { allLogits: true });
        const prefillS = (performance.now() - t0) / 1000;
        const t1 = performance.now();
        const decodeSteps = 8;
        let next = 1;
        for (let i = 0; i < decodeSteps; i++) next = argmax(await session.evaluate([next]));
        const decodeS = (performance.now() - t1) / 1000;
        const info = model.info;
        return {
          kvType: s.kvType,
          tokens: s.tokens,
          prefillS,
          prefillTokensPerS: s.tokens / prefillS,
          decodeTokensPerS: decodeSteps / decodeS,
          kvBytes: info.memory.kvCacheBytes,
          kvBytesPerToken: info.kvCache.pageBytes / info.kvCache.pageTokens,
          peakRssBytes: process.resourceUsage().maxRSS * 1024,
          tailLogits: Array.from(logits),
          vocab: info.vocabSize,
        };
      } finally {
        await model.dispose();
      }
    }
  }
}

function argmax(v: Float32Array): number {
  let b = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[b]!) b = i;
  return b;
}

/** Mean KL(p || q) and top-1 agreement over rows of logits [rows, vocab]. */
function compareLogits(p: number[], q: number[], vocab: number): { meanKl: number; top1: number } {
  const rows = p.length / vocab;
  let kl = 0, agree = 0;
  for (let r = 0; r < rows; r++) {
    const o = r * vocab;
    let mp = -Infinity, mq = -Infinity, ap = 0, aq = 0;
    for (let i = 0; i < vocab; i++) {
      if (p[o + i]! > mp) { mp = p[o + i]!; ap = i; }
      if (q[o + i]! > mq) { mq = q[o + i]!; aq = i; }
    }
    let zp = 0, zq = 0;
    for (let i = 0; i < vocab; i++) { zp += Math.exp(p[o + i]! - mp); zq += Math.exp(q[o + i]! - mq); }
    let d = 0;
    for (let i = 0; i < vocab; i++) {
      const lp = p[o + i]! - mp - Math.log(zp), lq = q[o + i]! - mq - Math.log(zq);
      d += Math.exp(lp) * (lp - lq);
    }
    kl += Math.max(0, d);
    if (ap === aq) agree++;
  }
  return { meanKl: kl / rows, top1: agree / rows };
}

function inChild(s: Scenario): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [SCENARIO_ARG, JSON.stringify(s)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: Record<string, unknown> | undefined;
    child.on('message', (m) => { result = m as Record<string, unknown>; });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 && result ? resolve(result) : reject(new Error(`scenario ${s.kind} failed (exit ${code})`))));
  });
}

// ---------------------------------------------------------------------------------------------
// Report

const f = (x: unknown, d = 1) => (typeof x === 'number' && Number.isFinite(x) ? x.toFixed(d) : 'n/a');
const mib = (x: unknown) => (typeof x === 'number' ? `${(x / 2 ** 20).toFixed(0)} MiB` : 'n/a');

async function runAll(o: Options): Promise<void> {
  const out: Record<string, unknown> = { threads: o.threads, cpus: os.availableParallelism(), loadAverageAtStart: os.loadavg()[0] };
  const log = (s: string) => process.stdout.write(`${s}\n`);
  log(`glm-node serving benchmark (BENCH_SPEC, ${o.threads} threads, ${os.availableParallelism()} cpus, load average ${os.loadavg()[0]!.toFixed(2)} at start)`);

  if (!o.skip.includes('concurrent')) {
    log(`\n[concurrent streams] prompts ${o.promptMin}-${o.promptMax} tokens, ${o.output} output tokens each, all submitted at once; ` +
        `"one by one": the first ${o.sequential} of the same requests run one after another`);
    log('  streams  out tok/s  one by one  ratio  TTFT p50/p99 ms      ITL p50/p99 ms   KV peak   peak RSS  (weights + KV peak + scratch)');
    const rows = [];
    for (const n of o.streams) {
      const r = await inChild({ kind: 'concurrent', n, sequential: o.sequential, promptMin: o.promptMin, promptMax: o.promptMax, output: o.output, threads: o.threads });
      rows.push(r);
      const base = Number(r.weightsBytes) + Number(r.kvPeakBytes) + Number(r.scratchBytes);
      log(`  ${String(n).padStart(7)}  ${f(r.outputTokensPerS).padStart(9)}  ${f(r.sequentialOutputTokensPerS).padStart(10)}  ${f(Number(r.outputTokensPerS) / Number(r.sequentialOutputTokensPerS), 2).padStart(5)}` +
          `  ${`${f(r.ttftP50Ms, 0)}/${f(r.ttftP99Ms, 0)}`.padStart(15)}  ${`${f(r.itlP50Ms)}/${f(r.itlP99Ms)}`.padStart(15)}  ${mib(r.kvPeakBytes).padStart(8)}  ${mib(r.peakRssBytes).padStart(9)}  (${mib(base)})`);
    }
    out.concurrent = rows;
  }
  if (!o.skip.includes('decode')) {
    log(`\n[decode-heavy] 16-token prompts, ${o.decodeOutput} output tokens; against the engine's prefill at 16 tokens per step`);
    const prefill = await inChild({ kind: 'prefill16', tokens: 1024, threads: o.threads });
    const one = await inChild({ kind: 'decode', n: 1, output: o.decodeOutput, threads: o.threads });
    const rows = [one];
    log(`  prefill of 1024 tokens in 16-token steps: ${f(prefill.prefillTokensPerS)} tok/s`);
    log('  streams  decode tok/s (aggregate)  vs 1 stream  vs prefill@16  ITL p50/p99 ms');
    for (const n of o.streams.filter((x) => x > 1)) rows.push(await inChild({ kind: 'decode', n, output: o.decodeOutput, threads: o.threads }));
    for (const r of rows) {
      log(`  ${String(r.n).padStart(7)}  ${f(r.aggregateDecodeTokensPerS).padStart(24)}  ${f(Number(r.aggregateDecodeTokensPerS) / Number(one.aggregateDecodeTokensPerS), 2).padStart(10)}x` +
          `  ${f((100 * Number(r.aggregateDecodeTokensPerS)) / Number(prefill.prefillTokensPerS), 0).padStart(11)}%  ${`${f(r.itlP50Ms)}/${f(r.itlP99Ms)}`.padStart(14)}`);
    }
    out.decode = { prefill16: prefill, rows };
  }
  if (!o.skip.includes('shared')) {
    log(`\n[shared prefix] ${o.sharedUsers} users, one ${o.sharedPrefix}-token system prompt + 32 own tokens each, 16 output tokens, all at once`);
    const on = await inChild({ kind: 'shared', users: o.sharedUsers, prefix: o.sharedPrefix, cache: true, threads: o.threads });
    const off = await inChild({ kind: 'shared', users: o.sharedUsers, prefix: o.sharedPrefix, cache: false, threads: o.threads });
    log('  prefix cache  prompt tokens computed / submitted  TTFT first ms  TTFT later p50/p99 ms  wall s');
    for (const r of [on, off]) {
      log(`  ${(r.cache ? 'on' : 'off').padEnd(12)}  ${`${r.promptTokensComputed} / ${r.promptTokensSubmitted}`.padStart(34)}  ${f(r.ttftFirstMs, 0).padStart(13)}  ${`${f(r.ttftLaterP50Ms, 0)}/${f(r.ttftLaterP99Ms, 0)}`.padStart(21)}  ${f(r.wallS).padStart(6)}`);
    }
    log(`  later users' TTFT p50: ${f(Number(off.ttftLaterP50Ms) / Number(on.ttftLaterP50Ms), 1)}x lower with the cache; ${Number(off.promptTokensComputed) - Number(on.promptTokensComputed)} prefill tokens saved`);
    out.shared = { on, off };
  }
  if (!o.skip.includes('long')) {
    log(`\n[long context] a ${o.long}-token prompt per KV cache type; accuracy of the last 32 positions' logits against f32`);
    const rows: Record<string, unknown>[] = [];
    for (const kvType of o.kvTypes) rows.push(await inChild({ kind: 'long', tokens: o.long, kvType, threads: o.threads }));
    const f32 = rows.find((r) => r.kvType === 'f32');
    log('  kv type  prefill tok/s  decode tok/s  KV bytes/token  KV at end  peak RSS  mean KL vs f32  top-1 vs f32');
    for (const r of rows) {
      if (f32 && r !== f32) r.vsF32 = compareLogits(f32.tailLogits as number[], r.tailLogits as number[], Number(r.vocab));
    }
    for (const r of rows) {
      const acc = r.vsF32 as { meanKl: number; top1: number } | undefined;
      log(`  ${String(r.kvType).padEnd(7)}  ${f(r.prefillTokensPerS).padStart(13)}  ${f(r.decodeTokensPerS, 2).padStart(12)}  ${f(r.kvBytesPerToken, 0).padStart(14)}  ${mib(r.kvBytes).padStart(9)}  ${mib(r.peakRssBytes).padStart(8)}` +
          `  ${acc ? acc.meanKl.toExponential(2).padStart(14) : '-'.padStart(14)}  ${acc ? `${(100 * acc.top1).toFixed(1)}%`.padStart(12) : '-'.padStart(12)}`);
    }
    for (const r of rows) delete r.tailLogits;
    out.long = rows;
  }
  if (o.json !== undefined) await writeFile(o.json, `${JSON.stringify(out, null, 2)}\n`);
}

// ---------------------------------------------------------------------------------------------

function positiveInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(value);
}

function intList(value: string): number[] {
  return value.split(',').map((v) => positiveInt(v));
}

export function serveBenchCommand(): Command {
  return new Command('bench-serve')
    .description('serving benchmark: concurrent streams, decode batching, a shared prefix, long context per KV type')
    .option('--threads <n>', 'CPU threads', positiveInt, os.availableParallelism())
    .option('--streams <list>', 'concurrent request counts', intList, [1, 4, 16, 64])
    .option('--prompt-min <n>', 'shortest prompt (tokens)', positiveInt, 128)
    .option('--prompt-max <n>', 'longest prompt (tokens)', positiveInt, 512)
    .option('--output <n>', 'output tokens per request', positiveInt, 64)
    .option('--sequential <n>', 'requests run one after another for the baseline', positiveInt, 4)
    .option('--decode-output <n>', 'output tokens per stream in the decode-heavy runs', positiveInt, 64)
    .option('--shared-users <n>', 'users of the shared-prefix workload', positiveInt, 16)
    .option('--shared-prefix <n>', 'tokens of their common system prompt', positiveInt, 1024)
    .option('--long <n>', 'prompt tokens of the long-context runs (BENCH_SPEC allows up to 32768)', positiveInt, 32000)
    .option('--kv-types <list>', 'KV cache types of the long-context runs', (v: string) => v.split(',') as KvCacheType[], ['f32', 'bf16', 'fp8'])
    .option('--skip <list>', 'scenarios to skip: concurrent,decode,shared,long', (v: string) => v.split(','), [])
    .option('--json <file>', 'also write every number as JSON to <file>')
    .action(async (opts: Options) => runAll(opts));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  if (process.argv[2] === SCENARIO_ARG) {
    const result = await runScenario(JSON.parse(process.argv[3]!) as Scenario);
    process.send!(result, () => process.exit(0));
  } else {
    await serveBenchCommand().parseAsync(process.argv);
  }
}
