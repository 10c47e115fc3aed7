// End-to-end CPU benchmark on the BENCH_SPEC synthetic checkpoint: load time, peak RSS, prefill and
// decode throughput, decode's fraction of the memory-bandwidth roofline and prefill GFLOP/s.
// `npm run bench` or `glm-node bench`. Prints numbers only; never asserts on timings.
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { fork } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { binding } from '../lib/binding.js';
import { toGlmError } from '../lib/errors.js';
import { Model, type GenerateResult } from '../lib/model.js';
import { quantizeCheckpoint, type QuantTarget } from '../lib/quantize.js';
import { BENCH_SPEC, planTensors, writeSyntheticCheckpoint, type SyntheticModelSpec } from '../lib/synthetic/checkpoint.js';

const GENERATE_ARG = '__generate-bench-checkpoint';
const BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2 };
/** The engine's default KV cache stores K and V in bf16 (load option kvCacheType). */
const KV_BYTES_PER_ELEMENT = 2;
const BANDWIDTH_BUFFER_BYTES = 512 * 1024 * 1024;

export interface BenchOptions {
  threads: number;
  prompt: number;
  decode: number;
  json?: string;
}

export interface BenchResult {
  checkpoint: string;
  /** 1-minute load average when the run started: on a small shared machine it explains noisy numbers. */
  loadAverageAtStart: number;
  threads: number;
  cpuIsa: string;
  promptTokens: number;
  decodeTokens: number;
  totalParams: number;
  activeParamsPerToken: number;
  loadMs: number;
  peakRssMiB: number;
  prefillMs: number;
  prefillTokensPerSecond: number;
  prefillGflops: number;
  decodeMs: number;
  decodeTokensPerSecond: number;
  decodeBytesPerToken: number;
  decodeWeightBytesPerToken: number;
  decodeKvBytesPerToken: number;
  decodeAchievedGBps: number;
  measuredReadBandwidthGBps: number;
  bandwidthSource: string;
  rooflineFraction: number;
}

// ---------------------------------------------------------------------------------------------
// Checkpoint cache

/** Cache folder keyed by the spec and the generator's code, so either changing invalidates it. */
export function benchCheckpointDir(spec: SyntheticModelSpec = BENCH_SPEC): string {
  const h = createHash('sha256').update(JSON.stringify(spec));
  for (const f of ['../lib/synthetic/checkpoint.js', '../lib/synthetic/safetensors-writer.js']) {
    const file = fileURLToPath(new URL(f, import.meta.url));
    if (existsSync(file)) h.update(readFileSync(file));
  }
  return path.join(os.tmpdir(), `glm-node-bench-${h.digest('hex').slice(0, 16)}`);
}

/**
 * Writes the checkpoint once. Generation runs in a child process so its buffers do not count towards
 * this process's peak RSS, and into a temporary folder renamed at the end so an interrupted run or a
 * concurrent one never leaves a half-written cache behind.
 */
export async function ensureCheckpoint(dir: string): Promise<void> {
  if (existsSync(path.join(dir, 'config.json'))) return;
  const partial = `${dir}.partial-${process.pid}`;
  process.stderr.write(`generating the benchmark checkpoint (~1.2 GB, once) in ${dir} ...\n`);
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [GENERATE_ARG, partial], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, sig) => (code === 0 ? resolve() : reject(new Error(`checkpoint generation failed (${sig ?? code})`))));
  });
  try {
    await rename(partial, dir);
  } catch (error) {
    // Another bench run finished first: keep its copy.
    if (!existsSync(path.join(dir, 'config.json'))) throw error;
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  process.stderr.write(`generated in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

// ---------------------------------------------------------------------------------------------
// Byte and FLOP budget of one token (from the tensor plan, so it follows the spec)

interface TokenBudget {
  totalParams: number;
  /** Weight bytes one decode token reads (storage dtype: BF16, router F32). */
  decodeWeightBytes: number;
  /** Parameters multiplied per prefill token (embedding lookup and lm_head excluded). */
  prefillMatmulParams: number;
  /** lm_head parameters: prefill computes logits for the last position only. */
  lmHeadParams: number;
  /** Parameters touched per token (embedding row and lm_head included), for the report. */
  activeParams: number;
  /** KV bytes read per attended position, all layers. */
  kvBytesPerPosition: number;
}

export function tokenBudget(spec: SyntheticModelSpec): TokenBudget {
  const mtpPrefix = `model.layers.${spec.num_hidden_layers}.`;
  const expertShare = spec.num_experts_per_tok / spec.n_routed_experts;
  const b: TokenBudget = { totalParams: 0, decodeWeightBytes: 0, prefillMatmulParams: 0, lmHeadParams: 0, activeParams: 0, kvBytesPerPosition: 0 };
  for (const t of planTensors(spec)) {
    const n = t.shape.reduce((a, c) => a * c, 1);
    b.totalParams += n;
    if (t.name.startsWith(mtpPrefix)) continue;  // the MTP layer is not run by plain decode
    let used: number;  // parameters of this tensor one token touches
    if (t.name === 'model.embed_tokens.weight') used = spec.hidden_size;  // one row
    else if (/\.mlp\.experts\.\d+\./.test(t.name)) used = n * expertShare;  // top-k of the routed experts, on average
    else used = n;
    b.activeParams += used;
    b.decodeWeightBytes += used * BYTES[t.dtype]!;
    if (t.name === 'lm_head.weight') b.lmHeadParams = used;
    else if (t.name !== 'model.embed_tokens.weight') b.prefillMatmulParams += used;
  }
  b.kvBytesPerPosition = spec.num_hidden_layers * 2 * spec.num_key_value_heads * spec.head_dim * KV_BYTES_PER_ELEMENT;
  return b;
}

// ---------------------------------------------------------------------------------------------
// Memory bandwidth: measured natively with the engine's own thread pool and vectorised read kernel
// (cpp/cpu/bandwidth.cc), best pass over ~2 s (on a shared machine a descheduled pass reads low).

async function measureReadBandwidth(threads: number): Promise<{ bytesPerSecond: number; passes: number }> {
  const r = await binding().measureReadBandwidth(BANDWIDTH_BUFFER_BYTES, threads, 2);
  return { bytesPerSecond: r.bytesPerSecond, passes: r.passes };
}

// ---------------------------------------------------------------------------------------------

/** Deterministic ordinary-token prompt (below the special ids at the top of the vocab). */
export function benchPrompt(length: number, vocab: number, seed = 0x2545f491): number[] {
  const ordinary = vocab - 32;
  let x = seed >>> 0;
  return Array.from({ length }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % ordinary;
  });
}

export async function runBench(opts: BenchOptions): Promise<BenchResult> {
  const spec = BENCH_SPEC;
  const loadAverageAtStart = os.loadavg()[0]!;
  const dir = benchCheckpointDir(spec);
  await ensureCheckpoint(dir);
  const budget = tokenBudget(spec);

  process.stderr.write('loading ...\n');
  const t0 = performance.now();
  const model = await Model.load(dir, { threads: opts.threads, prefetch: true });
  const loadMs = performance.now() - t0;
  let run: GenerateResult;
  let cpuIsa: string;
  try {
    cpuIsa = model.info.cpuIsa;
    const prompt = benchPrompt(opts.prompt, spec.vocab_size);
    process.stderr.write('warm-up ...\n');
    await model.generate({ tokens: prompt.slice(0, 16), maxTokens: 4, stopTokens: [] });
    process.stderr.write(`prefill ${opts.prompt} + decode ${opts.decode} tokens ...\n`);
    // stopTokens [] so greedy decoding always runs the full count.
    run = await model.generate({ tokens: prompt, maxTokens: opts.decode, temperature: 0, stopTokens: [] });
  } finally {
    await model.dispose();
  }
  // Recorded before the bandwidth test, whose 512 MiB buffer would otherwise dominate the peak.
  const peakRssMiB = process.resourceUsage().maxRSS / 1024;

  process.stderr.write('measuring read bandwidth ...\n');
  const { bytesPerSecond: bandwidth, passes } = await measureReadBandwidth(opts.threads);

  const prefillS = run.timings.prefillMs / 1000;
  const decodeSteps = run.tokens.length - 1;  // the first token comes from the prefill's logits
  const secPerToken = decodeSteps > 0 ? run.timings.decodeMs / 1000 / decodeSteps : NaN;
  // Decode step k (1..n) attends over prompt + k positions: on average prompt + (n + 1)/2.
  const avgContext = opts.prompt + (decodeSteps + 1) / 2;
  const kvBytes = budget.kvBytesPerPosition * avgContext;
  const bytesPerToken = budget.decodeWeightBytes + kvBytes;
  const achieved = bytesPerToken / secPerToken;
  const prefillFlops = 2 * (budget.prefillMatmulParams * opts.prompt + budget.lmHeadParams);

  const result: BenchResult = {
    checkpoint: dir,
    loadAverageAtStart,
    threads: opts.threads,
    cpuIsa,
    promptTokens: opts.prompt,
    decodeTokens: run.tokens.length,
    totalParams: budget.totalParams,
    activeParamsPerToken: budget.activeParams,
    loadMs,
    peakRssMiB,
    prefillMs: run.timings.prefillMs,
    prefillTokensPerSecond: run.timings.prefillTokensPerSecond,
    prefillGflops: prefillFlops / prefillS / 1e9,
    decodeMs: run.timings.decodeMs,
    decodeTokensPerSecond: run.timings.decodeTokensPerSecond,
    decodeBytesPerToken: bytesPerToken,
    decodeWeightBytesPerToken: budget.decodeWeightBytes,
    decodeKvBytesPerToken: kvBytes,
    decodeAchievedGBps: achieved / 1e9,
    measuredReadBandwidthGBps: bandwidth / 1e9,
    bandwidthSource: `measured read bandwidth (native): ${opts.threads} threads of the engine's pool reading a 512 MiB buffer with the vectorised kernels, best of ${passes} passes`,
    rooflineFraction: achieved / bandwidth,
  };
  return result;
}

function printTable(r: BenchResult): void {
  const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const rows: [string, string][] = [
    ['checkpoint', r.checkpoint],
    ['threads / cpu isa', `${r.threads} / ${r.cpuIsa} (${os.availableParallelism()} cpus, load average ${f(r.loadAverageAtStart, 2)} at start)`],
    ['params total / active per token', `${f(r.totalParams / 1e6)} M / ${f(r.activeParamsPerToken / 1e6)} M (MTP excluded from active)`],
    ['load (prefetch)', `${f(r.loadMs)} ms (weights come from the page cache when recently read)`],
    ['peak RSS', `${f(r.peakRssMiB)} MiB (maxRSS; mapped weights count once paged in)`],
    [`prefill (${r.promptTokens} tokens)`, `${f(r.prefillTokensPerSecond)} tok/s  (${f(r.prefillMs)} ms)`],
    ['prefill achieved', `${f(r.prefillGflops)} GFLOP/s (2 × matmul params per token; lm_head once; attention scores not counted)`],
    [`decode (${r.decodeTokens} tokens, greedy)`, `${f(r.decodeTokensPerSecond, 2)} tok/s  (${f(r.decodeMs)} ms)`],
    ['decode bytes per token', `${f(r.decodeBytesPerToken / 1e6)} MB = weights ${f(r.decodeWeightBytesPerToken / 1e6)} MB + KV ${f(r.decodeKvBytesPerToken / 1e6, 2)} MB (bf16, mean context)`],
    ['decode achieved', `${f(r.decodeAchievedGBps, 2)} GB/s`],
    ['read bandwidth', `${f(r.measuredReadBandwidthGBps, 2)} GB/s`],
    ['decode roofline fraction', `${f(r.rooflineFraction * 100)} % of the read bandwidth above`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(`\nglm-node CPU benchmark (BENCH_SPEC synthetic checkpoint, BF16)\n`);
  for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v}\n`);
  process.stdout.write(`  bandwidth used for the roofline: ${r.bandwidthSource}\n`);
  if (r.rooflineFraction > 1) {
    process.stdout.write('  note: above 100 % means the bandwidth pass was disturbed by other load; rerun on a quiet machine\n');
  }
}

function positiveInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new InvalidArgumentError('expected a positive integer');
  }
  return Number(value);
}

// ---------------------------------------------------------------------------------------------
// BF16 vs FP8 vs MXFP4 decode, side by side in one run (`npm run bench:quant`, `glm-node bench --quant`)

type BenchFormat = 'bf16' | QuantTarget;
const QUANT_FORMATS: BenchFormat[] = ['bf16', 'fp8', 'mxfp4'];

/** Quantized copies of the cached bench checkpoint, made once next to it (renamed into place when complete). */
async function ensureQuantized(dir: string, to: QuantTarget): Promise<string> {
  const out = `${dir}-${to}`;
  if (existsSync(path.join(out, 'config.json'))) return out;
  const partial = `${out}.partial-${process.pid}`;
  process.stderr.write(`quantizing the benchmark checkpoint to ${to} (once) in ${out} ...\n`);
  const t0 = performance.now();
  await quantizeCheckpoint(dir, partial, { to });
  try {
    await rename(partial, out);
  } catch (error) {
    if (!existsSync(path.join(out, 'config.json'))) throw error;
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
  process.stderr.write(`quantized in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  return out;
}

/**
 * Weight bytes one decode token reads in `format` (storage the engine actually streams): FP8 modules
 * 1 byte/weight + a 4-byte scale per row; MXFP4 routed experts 16 bytes of codes + 1 scale byte per 32
 * weights; everything the quantizer leaves alone (embedding row, lm_head, router, eh_proj) as stored.
 */
export function decodeWeightBytes(spec: SyntheticModelSpec, format: BenchFormat): number {
  const mtpPrefix = `model.layers.${spec.num_hidden_layers}.`;
  const expertShare = spec.num_experts_per_tok / spec.n_routed_experts;
  let bytes = 0;
  for (const t of planTensors(spec)) {
    if (t.name.startsWith(mtpPrefix)) continue;
    const n = t.shape.reduce((a, c) => a * c, 1);
    const routed = /\.mlp\.experts\.\d+\./.test(t.name);
    const share = routed ? expertShare : 1;
    if (t.name === 'model.embed_tokens.weight') { bytes += spec.hidden_size * BYTES[t.dtype]!; continue; }
    const linear = t.shape.length === 2 && !/embed_tokens|lm_head|\.mlp\.gate\.weight|eh_proj/.test(t.name);
    let perTensor = n * BYTES[t.dtype]!;
    if (linear && format === 'fp8') perTensor = n + 4 * t.shape[0]!;
    if (linear && routed && format === 'mxfp4') perTensor = t.shape[0]! * Math.ceil(t.shape[1]! / 32) * 17;
    bytes += perTensor * share;
  }
  return bytes;
}

async function runQuantBench(opts: BenchOptions): Promise<void> {
  const spec = BENCH_SPEC;
  const dir = benchCheckpointDir(spec);
  await ensureCheckpoint(dir);
  const dirs: Record<string, string> = { bf16: dir };
  for (const f of QUANT_FORMATS) if (f !== 'bf16') dirs[f] = await ensureQuantized(dir, f);
  const prompt = benchPrompt(16, spec.vocab_size);
  const rows: { format: BenchFormat; tokS: number; bytes: number; isa: string }[] = [];
  for (const format of QUANT_FORMATS) {
    process.stderr.write(`${format}: loading, warm-up, decoding ${opts.decode} tokens ...\n`);
    const model = await Model.load(dirs[format]!, { threads: opts.threads, prefetch: true });
    try {
      await model.generate({ tokens: prompt, maxTokens: 4, stopTokens: [] });
      const run = await model.generate({ tokens: prompt, maxTokens: opts.decode, temperature: 0, stopTokens: [] });
      rows.push({ format, tokS: run.timings.decodeTokensPerSecond, bytes: decodeWeightBytes(spec, format), isa: model.info.cpuIsa });
    } finally {
      await model.dispose();
    }
  }
  const base = rows[0]!;
  process.stdout.write(`\nglm-node CPU decode by weight format (BENCH_SPEC, ${opts.threads} threads, ${base.isa}, 16-token prompt, ${opts.decode} greedy tokens, load average ${os.loadavg()[0]!.toFixed(2)})\n`);
  process.stdout.write(`  ${'format'.padEnd(8)} ${'decode tok/s'.padStart(12)} ${'speedup'.padStart(8)} ${'weight MB/token'.padStart(16)} ${'bytes ratio'.padStart(12)}\n`);
  for (const r of rows) {
    process.stdout.write(`  ${r.format.padEnd(8)} ${r.tokS.toFixed(2).padStart(12)} ${(r.tokS / base.tokS).toFixed(2).padStart(7)}x ${(r.bytes / 1e6).toFixed(1).padStart(16)} ${(r.bytes / base.bytes).toFixed(3).padStart(12)}\n`);
  }
  process.stdout.write('  (fp8 = compressed-tensors per-channel, all Linear weights except lm_head/router/eh_proj; mxfp4 = routed experts only, the rest BF16)\n');
  if (opts.json !== undefined) await writeFile(opts.json, `${JSON.stringify(rows, null, 2)}\n`);
}

/** The `bench` command; used by `glm-node bench` and by `node dist/bench/bench.js`. */
export function benchCommand(): Command {
  return new Command('bench')
    .description('benchmark load, prefill and decode on a cached ~0.5B-parameter synthetic checkpoint')
    .option('--threads <n>', 'CPU threads for the model and the bandwidth test', positiveInt, os.availableParallelism())
    .option('--prompt <n>', 'prompt tokens for prefill', positiveInt, 512)
    .option('--decode <n>', 'tokens to decode (greedy)', positiveInt, 128)
    .option('--json <file>', 'also write the results as JSON to <file>')
    .option('--quant', 'compare decode tok/s and bytes/token of BF16, FP8 and MXFP4 copies of the bench checkpoint')
    .action(async (opts: BenchOptions & { quant?: boolean }) => {
      if (opts.quant) return runQuantBench(opts);
      const result = await runBench(opts);
      printTable(result);
      if (opts.json !== undefined) await writeFile(opts.json, `${JSON.stringify(result, null, 2)}\n`);
    });
}

// Entry point when run directly (not when imported by the CLI).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  try {
    if (process.argv[2] === GENERATE_ARG) {
      await writeSyntheticCheckpoint(process.argv[3]!, BENCH_SPEC);
    } else {
      await benchCommand().exitOverride().configureOutput({ outputError: () => {} }).parseAsync(process.argv);
    }
  } catch (error) {
    // Same `error [CODE]: message` shape as the glm-node CLI; help output is not an error.
    if (error instanceof CommanderError) {
      if (error.exitCode !== 0) process.stderr.write(`error [INVALID_PARAM]: ${error.message.replace(/^error: /, '')}\n`);
      process.exitCode = error.exitCode;
    } else {
      const e = toGlmError(error);
      process.stderr.write(`error [${e.code}]: ${e.message}\n`);
      process.exitCode = 1;
    }
  }
}
