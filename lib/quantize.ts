// Checkpoint quantizer behind `glm-node quantize`: BF16/F16/F32 (or FP8) glm4_moe checkpoint in, a
// complete quantized checkpoint folder out (config.json with quantization_config, tokenizer and other
// side files copied, shards mirroring the input's, index). Streams one tensor at a time: each input
// tensor is read with a positioned fs read (no mmap, no whole-file buffer), quantized, and handed to the
// streaming safetensors writer, so memory stays bounded by the largest tensor.
//
// Output formats (what cpp/engine/config.cc and weights.cc accept):
//  - fp8:       compressed-tensors "float-quantized", strategy "channel" (the official GLM-4.5-FP8 layout):
//               <m>.weight F8_E4M3 [out, in] + <m>.weight_scale F32 [out, 1]; unquantized Linear modules
//               are listed in "ignore".
//  - fp8-block: quant_method "fp8", weight_block_size [128, 128] (DeepSeek-V3 layout): <m>.weight F8_E4M3 +
//               <m>.weight_scale_inv F32 [ceil(out/128), ceil(in/128)].
//  - mxfp4:     glm-node's own, routed experts only:
//                 "quantization_config": {"quant_method": "mxfp4", "format": "glm-node-mxfp4",
//                                         "modules": ["mlp.experts"], "block_size": 32}
//               <m>.weight_blocks U8 [out, ceil(in/32), 16] (32 E2M1 codes per group, byte j = elements
//               2j (low nibble) and 2j+1 (high nibble)) + <m>.weight_scales U8 [out, ceil(in/32)] (E8M0,
//               2^(code-127)). When `in` is not a multiple of 32 the last group is padded with code 0;
//               readers ignore the padding. Every other weight stays unquantized (an FP8 input's other
//               weights are dequantized to BF16).
// Modules never quantized (as in the official FP8 releases' ignore lists): embeddings, lm_head, the
// router (mlp.gate), the MTP eh_proj, norms, biases, the correction bias.
//
// Scale choice: per row (fp8), per 128×128 block (fp8-block) or per 32-group (mxfp4), a few candidate
// scales around the max-based one are tried and the one with the lowest squared weight error kept
// (shrinking a scale clips the largest values but refines all others). With calibration statistics
// (lib/calibrate.ts) the error is weighted by each input channel's mean squared activation, over a
// finer set of candidates, and where the calibration has input covariances each row is rounded with
// GPTQ-style error feedback (cpp/engine/quantize_gptq.cc; README "Calibration" for what helped).
//
// The numbers run in C++ on all cores (cpp/engine/quantize.cc, through the addon); this file reads and
// writes the files. The JavaScript quantizers below are the reference the native one is tested against
// bit for bit (engine: 'js'); they know nothing of calibration.

import { copyFile, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { binding } from './binding.js';
import type { CalibrationStats } from './calibrate.js';
import { AbortError, InvalidParamError, toGlmError } from './errors.js';
import { shardFileName, writeSafetensors, type StDtype, type TensorDesc } from './synthetic/safetensors-writer.js';

export type QuantTarget = 'fp8' | 'fp8-block' | 'mxfp4';
export const QUANT_TARGETS: readonly QuantTarget[] = ['fp8', 'fp8-block', 'mxfp4'];

export interface QuantizeOptions {
  to: QuantTarget;
  /** Quantize only the routed experts (mlp.experts.*); mxfp4 always does. */
  expertsOnly?: boolean;
  /** Called after each input tensor. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /** 'native' (default): C++ on all cores; 'js': the single-threaded reference (no calibration). */
  engine?: 'native' | 'js';
  /** Native threads (0 or undefined: all cores). */
  threads?: number;
  /** Per-module activation statistics (lib/calibrate.ts): activation-weighted scale search. */
  calibration?: CalibrationStats;
  /**
   * With calibration covariances: GPTQ-style error feedback along each row (cpp/engine/quantize_gptq.cc).
   * Default true where the calibration has them.
   */
  gptq?: boolean;
  signal?: AbortSignal;
}

export interface LayerError {
  /** "model.layers.<i>" or "other" (lm_head etc. are never quantized). */
  layer: string;
  /** sqrt(Σ(w_q − w)² / Σw²) over the layer's quantized weights. */
  relRms: number;
  /** sqrt(Σ a_c(w_q − w)² / Σ a_c w²) with the calibration's channel weights a_c (calibrated tensors only). */
  weightedRelRms?: number;
  quantizedTensors: number;
}

export interface QuantizeResult {
  layers: LayerError[];
  inputBytes: number;
  outputBytes: number;
  quantizedTensors: number;
  /** Quantized tensors that had calibration statistics (the rest: weight error only). */
  calibratedTensors: number;
  /** Weights (elements) of the quantized tensors. */
  quantizedParams: number;
}

export const MXFP4_QUANTIZATION_CONFIG = { quant_method: 'mxfp4', format: 'glm-node-mxfp4', modules: ['mlp.experts'], block_size: 32 };

// ---------------------------------------------------------------------------------------------
// Element formats

/** All 256 E4M3 codes decoded (OCP e4m3fn: bias 7, no inf, S.1111.111 = NaN). */
export const E4M3_VALUES: Float64Array = (() => {
  const v = new Float64Array(256);
  for (let b = 0; b < 256; b++) {
    const e = (b >> 3) & 15, m = b & 7;
    const mag = e === 15 && m === 7 ? NaN : e === 0 ? m * 2 ** -9 : (1 + m / 8) * 2 ** (e - 7);
    v[b] = b & 0x80 ? -mag : mag;
  }
  return v;
})();

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Nearest E4M3 code to v, ties to even, saturating at ±448 (never NaN). */
export function e4m3Encode(v: number): number {
  const sign = v < 0 ? 0x80 : 0;
  const a = Math.abs(v);
  if (!(a < 464)) return sign | 0x7e; // 464 is halfway between 448 and the NaN code's 480: saturate
  if (a < 2 ** -6) return sign | roundHalfEven(a * 512); // subnormals, step 2^-9 (8 -> the min normal code)
  f32[0] = a;
  let b = u32[0]!;
  b = (b + 0x7ffff + ((b >>> 20) & 1)) & 0xfff00000; // keep 3 mantissa bits, round half to even
  u32[0] = b;
  const e = (b >>> 23) - 127 + 7;
  return sign | (e << 3) | ((b >>> 20) & 7);
}

export const E2M1_VALUES = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/** Nearest E2M1 code to v (ties to the even code, saturating at ±6). */
export function e2m1Encode(v: number): number {
  const a = Math.abs(v);
  const c = a <= 0.25 ? 0 : a < 0.75 ? 1 : a <= 1.25 ? 2 : a < 1.75 ? 3 : a <= 2.5 ? 4 : a < 3.5 ? 5 : a <= 5 ? 6 : 7;
  return v < 0 ? c | 8 : c;
}

/** E8M0 code -> 2^(code-127); 255 is NaN. */
export function e8m0Value(code: number): number {
  return code === 255 ? NaN : 2 ** (code - 127);
}

// ---------------------------------------------------------------------------------------------
// Quantizers of one matrix [rows, cols] (float64 in), returning the encoded tensors and the squared error.

const FP8_SHRINK = [1, 0.95, 0.9];

interface Quantized {
  tensors: { suffix: string; dtype: StDtype; shape: number[]; bytes: Uint8Array }[];
  err2: number;
  ref2: number;
}

/** Encodes w[idx(i)] / s for i in a set of elements, returning the squared error of the dequantized values. */
function fp8Error(w: Float64Array, idx: readonly number[][], s: number, codes: Uint8Array | null): number {
  let err = 0;
  for (const [start, len] of idx) {
    for (let i = start!; i < start! + len!; i++) {
      const c = e4m3Encode(w[i]! / s);
      if (codes) codes[i] = c;
      const d = E4M3_VALUES[c]! * s - w[i]!;
      err += d * d;
    }
  }
  return err;
}

/** Best scale among amax/448·{1, 0.95, 0.9} for the elements in `runs` ([start, length] pairs); writes the codes. */
function fp8Region(w: Float64Array, runs: number[][], codes: Uint8Array): { scale: number; err: number } {
  let amax = 0;
  for (const [start, len] of runs) for (let i = start!; i < start! + len!; i++) amax = Math.max(amax, Math.abs(w[i]!));
  if (amax === 0) return { scale: 0, err: 0 }; // codes stay 0; scale 0 is valid (finite, >= 0)
  let best = { scale: amax / 448, err: Infinity };
  for (const f of FP8_SHRINK) {
    const s = Math.fround((amax / 448) * f);
    const err = fp8Error(w, runs, s, null);
    if (err < best.err) best = { scale: s, err };
  }
  fp8Error(w, runs, best.scale, codes);
  return best;
}

function sumSquares(w: Float64Array): number {
  let s = 0;
  for (let i = 0; i < w.length; i++) s += w[i]! * w[i]!;
  return s;
}

export function quantizeFp8Channel(w: Float64Array, rows: number, cols: number): Quantized {
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(rows);
  let err2 = 0;
  for (let r = 0; r < rows; r++) {
    const { scale, err } = fp8Region(w, [[r * cols, cols]], codes);
    scales[r] = scale;
    err2 += err;
  }
  return {
    tensors: [
      { suffix: 'weight', dtype: 'F8_E4M3', shape: [rows, cols], bytes: codes },
      { suffix: 'weight_scale', dtype: 'F32', shape: [rows, 1], bytes: new Uint8Array(scales.buffer) },
    ],
    err2,
    ref2: sumSquares(w),
  };
}

export function quantizeFp8Block(w: Float64Array, rows: number, cols: number): Quantized {
  const codes = new Uint8Array(rows * cols);
  const br = Math.ceil(rows / 128), bc = Math.ceil(cols / 128);
  const scales = new Float32Array(br * bc);
  let err2 = 0;
  for (let i = 0; i < br; i++) {
    for (let j = 0; j < bc; j++) {
      const runs: number[][] = [];
      const c0 = j * 128, len = Math.min(128, cols - c0);
      for (let r = i * 128; r < Math.min(rows, i * 128 + 128); r++) runs.push([r * cols + c0, len]);
      const { scale, err } = fp8Region(w, runs, codes);
      scales[i * bc + j] = scale;
      err2 += err;
    }
  }
  return {
    tensors: [
      { suffix: 'weight', dtype: 'F8_E4M3', shape: [rows, cols], bytes: codes },
      { suffix: 'weight_scale_inv', dtype: 'F32', shape: [br, bc], bytes: new Uint8Array(scales.buffer) },
    ],
    err2,
    ref2: sumSquares(w),
  };
}

export function quantizeMxfp4(w: Float64Array, rows: number, cols: number): Quantized {
  const groups = Math.ceil(cols / 32);
  const blocks = new Uint8Array(rows * groups * 16);
  const scales = new Uint8Array(rows * groups);
  const codes = new Uint8Array(32);
  let err2 = 0;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const k0 = r * cols + g * 32, n = Math.min(32, cols - g * 32);
      let amax = 0;
      for (let k = 0; k < n; k++) amax = Math.max(amax, Math.abs(w[k0 + k]!));
      // Round-up exponent (never clips) and one below it (clips the largest values to 6·2^e but halves
      // the step for the rest); keep the one with the lower squared error.
      const e0 = amax > 0 ? Math.ceil(Math.log2(amax / 6)) : -127;
      let bestCode = 0, bestErr = Infinity;
      for (const e of [e0, e0 - 1]) {
        const code = Math.min(254, Math.max(0, e + 127));
        const s = 2 ** (code - 127);
        let err = 0;
        for (let k = 0; k < n; k++) {
          const d = E2M1_VALUES[e2m1Encode(w[k0 + k]! / s)]! * s - w[k0 + k]!;
          err += d * d;
        }
        if (err < bestErr) { bestErr = err; bestCode = code; }
      }
      const s = 2 ** (bestCode - 127);
      codes.fill(0);
      for (let k = 0; k < n; k++) codes[k] = e2m1Encode(w[k0 + k]! / s);
      const out = (r * groups + g) * 16;
      for (let j = 0; j < 16; j++) blocks[out + j] = codes[2 * j]! | (codes[2 * j + 1]! << 4); // low nibble first
      scales[r * groups + g] = bestCode;
      err2 += bestErr;
    }
  }
  return {
    tensors: [
      { suffix: 'weight_blocks', dtype: 'U8', shape: [rows, groups, 16], bytes: blocks },
      { suffix: 'weight_scales', dtype: 'U8', shape: [rows, groups], bytes: scales },
    ],
    err2,
    ref2: sumSquares(w),
  };
}

// ---------------------------------------------------------------------------------------------
// Reading input shards (positioned reads; headers parsed here, values decoded per tensor)

interface InputTensor {
  name: string;
  dtype: string;
  shape: number[];
  file: string;
  /** Absolute byte offset of the data in the file, and its length. */
  offset: number;
  length: number;
}

const IN_DTYPE_BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2, F8_E4M3: 1, U8: 1 };

async function readHeader(file: string): Promise<InputTensor[]> {
  const fh = await open(file, 'r');
  try {
    const lenBuf = Buffer.alloc(8);
    await fh.read(lenBuf, 0, 8, 0);
    const n = Number(lenBuf.readBigUInt64LE(0));
    const size = (await fh.stat()).size;
    if (n > 100_000_000 || n + 8 > size) throw new Error(`${file}: bad safetensors header length ${n}`);
    const hb = Buffer.alloc(n);
    await fh.read(hb, 0, n, 8);
    const header = JSON.parse(hb.toString('utf8')) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const out: InputTensor[] = [];
    for (const [name, t] of Object.entries(header)) {
      if (name === '__metadata__') continue;
      const eb = IN_DTYPE_BYTES[t.dtype];
      if (eb === undefined) throw new Error(`${file}: tensor ${name} has dtype ${t.dtype}, which the quantizer does not read`);
      const [b, e] = t.data_offsets;
      const numel = t.shape.reduce((a, c) => a * c, 1);
      if (e - b !== numel * eb || e + 8 + n > size) throw new Error(`${file}: tensor ${name} has bad data_offsets`);
      out.push({ name, dtype: t.dtype, shape: t.shape, file, offset: 8 + n + b, length: e - b });
    }
    out.sort((a, b) => a.offset - b.offset);
    return out;
  } finally {
    await fh.close();
  }
}

class TensorReader {
  // Promises, so that a read-ahead and a read of the same new file share one open.
  private handles = new Map<string, Promise<FileHandle>>();
  private ahead = new Map<InputTensor, Promise<Buffer>>();
  /** Starts reading t now; the next bytes(t) returns that read. */
  prefetch(t: InputTensor): void {
    if (this.ahead.has(t)) return;
    const p = this.read(t);
    p.catch(() => {});  // reported by the bytes(t) that takes it
    this.ahead.set(t, p);
  }
  bytes(t: InputTensor): Promise<Buffer> {
    const p = this.ahead.get(t);
    if (p) {
      this.ahead.delete(t);
      return p;
    }
    return this.read(t);
  }
  private async read(t: InputTensor): Promise<Buffer> {
    let opening = this.handles.get(t.file);
    if (!opening) {
      opening = open(t.file, 'r');
      this.handles.set(t.file, opening);
    }
    const fh = await opening;
    const buf = Buffer.allocUnsafe(t.length);
    let done = 0;
    while (done < t.length) {
      const { bytesRead } = await fh.read(buf, done, t.length - done, t.offset + done);
      if (bytesRead === 0) throw new Error(`${t.file}: unexpected end of file reading ${t.name}`);
      done += bytesRead;
    }
    return buf;
  }
  async close(): Promise<void> {
    await Promise.allSettled(this.ahead.values());
    this.ahead.clear();
    for (const opening of this.handles.values()) {
      const fh = await opening.catch(() => undefined);
      await fh?.close();
    }
    this.handles.clear();
  }
}

function decodeFloat(buf: Buffer, dtype: string): Float64Array {
  const n = buf.length / IN_DTYPE_BYTES[dtype]!;
  const out = new Float64Array(n);
  if (dtype === 'F32') {
    for (let i = 0; i < n; i++) out[i] = buf.readFloatLE(4 * i);
  } else if (dtype === 'BF16') {
    for (let i = 0; i < n; i++) { u32[0] = buf.readUInt16LE(2 * i) << 16; out[i] = f32[0]!; }
  } else if (dtype === 'F16') {
    for (let i = 0; i < n; i++) {
      const h = buf.readUInt16LE(2 * i);
      const e = (h >> 10) & 31, m = h & 1023;
      const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
      out[i] = h & 0x8000 ? -v : v;
    }
  } else if (dtype === 'F8_E4M3') {
    for (let i = 0; i < n; i++) out[i] = E4M3_VALUES[buf[i]!]!;
  } else {
    throw new Error(`cannot decode ${dtype} as floats`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Which module gets which format

type InputScheme = 'none' | 'fp8-channel' | 'fp8-block';

function inputScheme(config: Record<string, unknown>): InputScheme {
  const q = config.quantization_config as Record<string, unknown> | undefined | null;
  if (!q) return 'none';
  if (q.quant_method === 'compressed-tensors') return 'fp8-channel';
  if (q.quant_method === 'fp8') return 'fp8-block';
  throw new Error(`input checkpoint is already quantized with quant_method ${JSON.stringify(q.quant_method)}; ` +
    'the quantizer reads BF16/F16/F32 or FP8 (compressed-tensors per-channel, fp8 128x128 blocks) checkpoints');
}

const ROUTED_EXPERT = /^model\.layers\.\d+\.mlp\.experts\.\d+\.(gate|up|down)_proj$/;
const NEVER_QUANTIZED = /(^|\.)embed_tokens$|^lm_head$|\.mlp\.gate$|\.eh_proj$/;

/** The module a 2-D `.weight` tensor belongs to, when it is a Linear the target format may quantize. */
function quantizableModule(t: InputTensor, opts: QuantizeOptions): string | null {
  if (!t.name.endsWith('.weight') || t.shape.length !== 2) return null;
  const module = t.name.slice(0, -'.weight'.length);
  if (NEVER_QUANTIZED.test(module)) return null;
  if (opts.to === 'mxfp4' || opts.expertsOnly) return ROUTED_EXPERT.test(module) ? module : null;
  return module;
}

function layerOf(name: string): string {
  const m = /^model\.layers\.(\d+)\./.exec(name);
  return m ? `model.layers.${m[1]}` : 'other';
}

// ---------------------------------------------------------------------------------------------

export async function quantizeCheckpoint(inDir: string, outDir: string, opts: QuantizeOptions): Promise<QuantizeResult> {
  if (!QUANT_TARGETS.includes(opts.to)) throw new Error(`unknown target ${String(opts.to)} (expected ${QUANT_TARGETS.join(', ')})`);
  if (path.resolve(inDir) === path.resolve(outDir)) throw new Error('output folder must differ from the input folder');
  const engine = opts.engine ?? 'native';
  if (engine !== 'native' && engine !== 'js') throw new InvalidParamError(`engine must be 'native' or 'js', got ${String(engine)}`);
  if (engine === 'js' && opts.calibration) throw new InvalidParamError('calibration needs the native quantizer');
  const config = JSON.parse(await readFile(path.join(inDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const scheme = inputScheme(config);
  if (scheme !== 'none' && opts.to !== 'mxfp4') throw new Error(`the input is already FP8 (${scheme}); only --to mxfp4 converts it further`);

  // Input shards, in the order the index (or the single file) gives them.
  const indexPath = path.join(inDir, 'model.safetensors.index.json');
  let shardFiles: string[];
  let indexed = false;
  try {
    const index = JSON.parse(await readFile(indexPath, 'utf8')) as { weight_map: Record<string, string> };
    shardFiles = [...new Set(Object.values(index.weight_map))];
    indexed = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    shardFiles = ['model.safetensors'];
  }
  for (const f of shardFiles) {
    if (f.includes('/') || f.includes('\\') || f.startsWith('.')) throw new Error(`index names a shard outside the folder: ${f}`);
  }
  const shards = await Promise.all(shardFiles.map((f) => readHeader(path.join(inDir, f))));
  const byName = new Map<string, InputTensor>();
  for (const s of shards) for (const t of s) byName.set(t.name, t);

  // Output plan: per input shard, its tensors mapped to output tensors (same order, companions after
  // their weight; input FP8 scales are consumed with their weight and not copied).
  const isCompanion = (name: string) => /\.weight_scale(_inv)?$/.test(name) && byName.has(name.replace(/_scale(_inv)?$/, ''));
  interface Job { input: InputTensor; module: string | null }
  const jobsPerShard: Job[][] = shards.map((s) => s.filter((t) => !(scheme !== 'none' && isCompanion(t.name))).map((t) => ({ input: t, module: quantizableModule(t, opts) })));
  const outDescs = (job: Job): TensorDesc[] => {
    const t = job.input;
    if (job.module) {
      const [rows, cols] = t.shape as [number, number];
      if (opts.to === 'mxfp4') {
        const g = Math.ceil(cols / 32);
        return [{ name: `${job.module}.weight_blocks`, dtype: 'U8', shape: [rows, g, 16] }, { name: `${job.module}.weight_scales`, dtype: 'U8', shape: [rows, g] }];
      }
      const scale: TensorDesc = opts.to === 'fp8'
        ? { name: `${job.module}.weight_scale`, dtype: 'F32', shape: [rows, 1] }
        : { name: `${job.module}.weight_scale_inv`, dtype: 'F32', shape: [Math.ceil(rows / 128), Math.ceil(cols / 128)] };
      return [{ name: t.name, dtype: 'F8_E4M3', shape: [rows, cols] }, scale];
    }
    // Unquantized: kept as stored, except FP8 input weights, which are dequantized to BF16.
    const dtype = t.dtype === 'F8_E4M3' ? 'BF16' : (t.dtype as StDtype);
    return [{ name: t.name, dtype, shape: t.shape }];
  };

  await rm(outDir, { recursive: true, force: true });
  await mkdir(outDir, { recursive: true });
  const reader = new TensorReader();
  const errors = new Map<string, { err2: number; ref2: number; werr2: number; wref2: number; n: number; calibrated: number }>();
  const total = jobsPerShard.reduce((a, j) => a + j.length, 0);
  let done = 0, quantizedTensors = 0, calibratedTensors = 0, quantizedParams = 0, outputBytes = 0, inputBytes = 0;
  const native = engine === 'native' ? binding() : undefined;
  const quantizer = native?.createQuantizer(opts.threads ?? 0);

  /** The tensor through the C++ quantizer: raw stored bytes in (FP8 inputs with their scales). */
  const quantizeNative = async (t: InputTensor, module: string, rows: number, cols: number) => {
    const bytes = await reader.bytes(t);
    let inScheme: 'fp8-channel' | 'fp8-block' | undefined, inScales: Float32Array | undefined;
    if (t.dtype === 'F8_E4M3') {
      inScheme = scheme === 'fp8-channel' ? 'fp8-channel' : 'fp8-block';
      const st = byName.get(`${module}.${scheme === 'fp8-channel' ? 'weight_scale' : 'weight_scale_inv'}`);
      if (!st) throw new Error(`missing the scales of ${t.name}`);
      inScales = Float32Array.from(decodeFloat(await reader.bytes(st), st.dtype));
    }
    const channelWeight = opts.calibration?.modules.get(module);
    const covariance = channelWeight && opts.gptq !== false ? opts.calibration?.covariances.get(module) : undefined;
    try {
      const r = await native!.quantizeMatrix(quantizer, { target: opts.to, dtype: t.dtype, rows, cols, bytes, inScheme, inScales, channelWeight, covariance });
      const suffixes = opts.to === 'mxfp4' ? ['weight_blocks', 'weight_scales'] : ['weight', opts.to === 'fp8' ? 'weight_scale' : 'weight_scale_inv'];
      return { tensors: [{ suffix: suffixes[0]!, bytes: r.data }, { suffix: suffixes[1]!, bytes: r.scales }], err2: r.err2, ref2: r.ref2, werr2: r.werr2, wref2: r.wref2, calibrated: !!channelWeight };
    } catch (e) {
      throw toGlmError(e);
    }
  };
  const weightMap: Record<string, string> = {};

  /** The input weight as float64, dequantized when the input is FP8. */
  const readWeight = async (t: InputTensor): Promise<Float64Array> => {
    const w = decodeFloat(await reader.bytes(t), t.dtype);
    if (t.dtype !== 'F8_E4M3') return w;
    const module = t.name.slice(0, -'.weight'.length);
    const [rows, cols] = t.shape as [number, number];
    if (scheme === 'fp8-channel') {
      const st = byName.get(`${module}.weight_scale`);
      if (!st) throw new Error(`missing ${module}.weight_scale`);
      const s = decodeFloat(await reader.bytes(st), st.dtype);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] = w[r * cols + c]! * s[r]!;
    } else {
      const st = byName.get(`${module}.weight_scale_inv`);
      if (!st) throw new Error(`missing ${module}.weight_scale_inv`);
      const s = decodeFloat(await reader.bytes(st), st.dtype);
      const bc = Math.ceil(cols / 128);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] = w[r * cols + c]! * s[Math.floor(r / 128) * bc + Math.floor(c / 128)]!;
    }
    return w;
  };

  try {
    for (let k = 0; k < jobsPerShard.length; k++) {
      const jobs = jobsPerShard[k]!;
      const descs = jobs.flatMap(outDescs);
      const fileName = indexed ? shardFileName(k + 1, jobsPerShard.length) : 'model.safetensors';
      // Encoded companions waiting for the writer (produced together with their weight, next in order).
      const pending = new Map<string, Uint8Array>();
      const jobOf = new Map<string, Job>();
      const nextOf = new Map<Job, Job>();
      for (let j = 0; j < jobs.length; j++) {
        jobOf.set(outDescs(jobs[j]!)[0]!.name, jobs[j]!);
        if (j + 1 < jobs.length) nextOf.set(jobs[j]!, jobs[j + 1]!);
      }
      outputBytes += await writeSafetensors(path.join(outDir, fileName), descs, async (d) => {
        const ready = pending.get(d.name);
        if (ready) {
          pending.delete(d.name);
          return ready;
        }
        const job = jobOf.get(d.name);
        if (!job) throw new Error(`internal: no producer for ${d.name}`);
        const t = job.input;
        // Read the next tensor while this one is quantized (native: on other threads), so the file
        // reads overlap the math instead of adding to it.
        const next = nextOf.get(job);
        if (native && next) reader.prefetch(next.input);
        inputBytes += t.length;
        opts.onProgress?.(++done, total, t.name);
        if (!job.module) {
          if (t.dtype !== 'F8_E4M3') return reader.bytes(t); // unchanged bytes, no re-encoding
          return Float32Array.from(await readWeight(t));     // FP8 input kept unquantized: BF16 (writer rounds)
        }
        if (opts.signal?.aborted) throw new AbortError();
        const [rows, cols] = t.shape as [number, number];
        let q: { tensors: { suffix: string; bytes: Uint8Array }[]; err2: number; ref2: number; werr2?: number; wref2?: number; calibrated?: boolean };
        if (native) {
          q = await quantizeNative(t, job.module, rows, cols);
        } else {
          const w = await readWeight(t);
          q = opts.to === 'fp8' ? quantizeFp8Channel(w, rows, cols) : opts.to === 'fp8-block' ? quantizeFp8Block(w, rows, cols) : quantizeMxfp4(w, rows, cols);
        }
        const layer = layerOf(t.name);
        const e = errors.get(layer) ?? { err2: 0, ref2: 0, werr2: 0, wref2: 0, n: 0, calibrated: 0 };
        e.err2 += q.err2;
        e.ref2 += q.ref2;
        if (q.calibrated) {
          e.werr2 += q.werr2!;
          e.wref2 += q.wref2!;
          e.calibrated += 1;
          calibratedTensors++;
        }
        e.n += 1;
        errors.set(layer, e);
        quantizedTensors++;
        quantizedParams += rows * cols;
        for (const out of q.tensors.slice(1)) pending.set(`${job.module}.${out.suffix}`, out.bytes);
        return q.tensors[0]!.bytes;
      }, { format: 'pt' });
      for (const d of descs) weightMap[d.name] = fileName;
    }
  } finally {
    await reader.close();
    if (quantizer) native!.disposeQuantizer(quantizer);
  }

  if (indexed) {
    await writeFile(path.join(outDir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: outputBytes }, weight_map: weightMap }, null, 2) + '\n');
  }
  // config.json with the new quantization_config.
  const outConfig: Record<string, unknown> = { ...config };
  delete outConfig.quantization_config;
  if (opts.to === 'mxfp4') {
    outConfig.quantization_config = MXFP4_QUANTIZATION_CONFIG;
  } else if (opts.to === 'fp8-block') {
    outConfig.quantization_config = {
      quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128],
      modules_to_not_convert: linearModulesNotQuantized(byName, opts),
    };
  } else {
    outConfig.quantization_config = {
      quant_method: 'compressed-tensors', format: 'float-quantized', quantization_status: 'compressed',
      config_groups: {
        group_0: {
          targets: ['Linear'],
          weights: { num_bits: 8, type: 'float', symmetric: true, dynamic: false, strategy: 'channel', group_size: null, block_structure: null },
          input_activations: { num_bits: 8, type: 'float', symmetric: true, dynamic: true, strategy: 'token', group_size: null },
          output_activations: null,
        },
      },
      ignore: linearModulesNotQuantized(byName, opts),
      kv_cache_scheme: null,
    };
  }
  await writeFile(path.join(outDir, 'config.json'), JSON.stringify(outConfig, null, 2) + '\n');
  // Side files (tokenizer, generation config, chat template ...): every other regular top-level file.
  for (const entry of await readdir(inDir)) {
    if (entry === 'config.json' || entry === 'model.safetensors.index.json' || entry.endsWith('.safetensors')) continue;
    const src = path.join(inDir, entry);
    if ((await stat(src)).isFile()) await copyFile(src, path.join(outDir, entry));
  }

  const layers = [...errors.entries()]
    .sort(([a], [b]) => (a === 'other' ? 1 : b === 'other' ? -1 : Number(a.split('.')[2]) - Number(b.split('.')[2])))
    .map(([layer, e]) => ({
      layer, relRms: Math.sqrt(e.err2 / Math.max(e.ref2, 1e-300)), quantizedTensors: e.n,
      ...(e.calibrated > 0 ? { weightedRelRms: Math.sqrt(e.werr2 / Math.max(e.wref2, 1e-300)) } : {}),
    }));
  return { layers, inputBytes, outputBytes, quantizedTensors, calibratedTensors, quantizedParams };
}

/** Linear modules (2-D weights other than embeddings and the router) left unquantized: the ignore list. */
function linearModulesNotQuantized(byName: Map<string, InputTensor>, opts: QuantizeOptions): string[] {
  const out: string[] = [];
  for (const t of byName.values()) {
    if (!t.name.endsWith('.weight') || t.shape.length !== 2) continue;
    const module = t.name.slice(0, -'.weight'.length);
    if (/(^|\.)embed_tokens$/.test(module)) continue;
    if (!quantizableModule(t, opts)) out.push(module);
  }
  return out.sort();
}
