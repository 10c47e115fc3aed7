// Streaming safetensors writer used to build synthetic checkpoints.
//
// Layout (https://github.com/huggingface/safetensors): u64 LE header length N, N bytes of JSON header
// (padded with spaces so the data starts 8-byte aligned), then the raw little-endian tensor data.
// Tensors are described up front so the header can be written first; their values are requested one
// tensor at a time, so memory stays bounded by the largest tensor, not the checkpoint.

import { mkdir, open, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';

/** Float dtypes are encoded from float32 values; F8_E4M3 and U8 (quantized weights, scales) are
 *  produced already encoded, as raw bytes. */
export type StDtype = FloatStDtype | 'F8_E4M3' | 'U8';
export type FloatStDtype = 'F32' | 'BF16' | 'F16';

export interface TensorDesc {
  name: string;
  dtype: StDtype;
  shape: number[];
}

/** Produces one tensor: its float32 values (row-major, length = product of shape), or its encoded
 *  little-endian bytes (length = tensorBytes; required for F8_E4M3 and U8, allowed for any dtype). */
export type TensorProducer = (desc: TensorDesc) => Float32Array | Uint8Array | Promise<Float32Array | Uint8Array>;

export const DTYPE_BYTES: Record<StDtype, number> = { F32: 4, BF16: 2, F16: 2, F8_E4M3: 1, U8: 1 };

export function tensorElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new Error(`bad dimension ${d} in shape [${shape.join(',')}]`);
    n *= d;
  }
  if (!Number.isSafeInteger(n)) throw new Error(`shape [${shape.join(',')}] too large`);
  return n;
}

export function tensorBytes(desc: TensorDesc): number {
  return tensorElements(desc.shape) * DTYPE_BYTES[desc.dtype];
}

// Shared scratch views for scalar conversions.
const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** float32 -> bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function float32ToBf16Bits(x: number): number {
  f32Scratch[0] = x;
  return bf16FromF32Bits(u32Scratch[0]!);
}

function bf16FromF32Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x0040) & 0xffff;
  // Adding 0x7fff plus the lowest kept bit rounds ties to even; overflow carries into the exponent,
  // which correctly rounds the largest finite values up to infinity.
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

/** float32 -> IEEE binary16 bits, round to nearest even, with subnormals and overflow to infinity. */
export function float32ToF16Bits(x: number): number {
  f32Scratch[0] = x;
  return f16FromF32Bits(u32Scratch[0]!);
}

function f16FromF32Bits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half (or zero): shift the mantissa (with its implicit 1) right, rounding to even.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rem = mant & ((1 << shift) - 1);
    let h = mant >>> shift;
    if (rem > half || (rem === half && (h & 1))) h += 1;
    return sign | h; // a carry into bit 10 yields the smallest normal, which is the right encoding
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h += 1; // carry may reach infinity: correct
  return sign | h;
}

/** Encodes float32 values into the little-endian bytes of `dtype`. */
export function encodeTensor(values: Float32Array, dtype: StDtype): Uint8Array {
  if (dtype === 'F8_E4M3' || dtype === 'U8') throw new Error(`${dtype} tensors must be produced as encoded bytes`);
  if (dtype === 'F32') {
    // Node only runs on little-endian hosts in practice; copy to keep the producer's array untouched.
    return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Uint16Array(values.length);
  if (dtype === 'BF16') {
    for (let i = 0; i < bits.length; i++) {
      const b = bits[i]!;
      out[i] = (b & 0x7fffffff) > 0x7f800000 ? ((b >>> 16) | 0x40) : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
    }
  } else {
    for (let i = 0; i < bits.length; i++) out[i] = f16FromF32Bits(bits[i]!);
  }
  return new Uint8Array(out.buffer);
}

function buildHeader(tensors: readonly TensorDesc[], metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`duplicate or reserved tensor name ${t.name}`);
    seen.add(t.name);
    const size = tensorBytes(t);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + size] };
    offset += size;
  }
  let json = JSON.stringify(header);
  const unpadded = Buffer.byteLength(json, 'utf8');
  json += ' '.repeat((8 - (unpadded % 8)) % 8);
  const body = Buffer.from(json, 'utf8');
  const out = Buffer.alloc(8 + body.length);
  out.writeBigUInt64LE(BigInt(body.length), 0);
  body.copy(out, 8);
  return out;
}

/** Coalesces small writes into large ones; big chunks bypass the staging buffer. */
class BufferedFile {
  private readonly stage: Buffer;
  private used = 0;
  bytesWritten = 0;
  constructor(private readonly fh: FileHandle, capacity = 16 << 20) {
    this.stage = Buffer.allocUnsafe(capacity);
  }
  async write(chunk: Uint8Array): Promise<void> {
    this.bytesWritten += chunk.length;
    if (chunk.length >= this.stage.length / 2) {
      await this.flush();
      await writeAll(this.fh, chunk);
      return;
    }
    if (this.used + chunk.length > this.stage.length) await this.flush();
    this.stage.set(chunk, this.used);
    this.used += chunk.length;
  }
  async flush(): Promise<void> {
    if (this.used === 0) return;
    await writeAll(this.fh, this.stage.subarray(0, this.used));
    this.used = 0;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const { bytesWritten } = await fh.write(data, off, data.length - off);
    off += bytesWritten;
  }
}

/**
 * Writes one safetensors file. `produce` is called once per tensor, in order.
 * Returns the number of tensor-data bytes written (excluding the header).
 */
export async function writeSafetensors(
  file: string,
  tensors: readonly TensorDesc[],
  produce: TensorProducer,
  metadata?: Record<string, string>,
): Promise<number> {
  const header = buildHeader(tensors, metadata);
  const fh = await open(file, 'w');
  try {
    const out = new BufferedFile(fh);
    await out.write(header);
    let dataBytes = 0;
    for (const t of tensors) {
      const values = await produce(t);
      let bytes: Uint8Array;
      if (values instanceof Uint8Array) {
        if (values.length !== tensorBytes(t)) throw new Error(`producer gave ${values.length} bytes for ${t.name}, expected ${tensorBytes(t)}`);
        bytes = values;
      } else {
        const n = tensorElements(t.shape);
        if (values.length !== n) throw new Error(`producer gave ${values.length} values for ${t.name}, expected ${n}`);
        bytes = encodeTensor(values, t.dtype);
      }
      await out.write(bytes);
      dataBytes += bytes.length;
    }
    await out.flush();
    return dataBytes;
  } finally {
    await fh.close();
  }
}

export interface CheckpointWriteOptions {
  /** 1 writes `model.safetensors`; N > 1 writes `model-0000k-of-0000N.safetensors` + index. */
  shards?: number;
  metadata?: Record<string, string>;
}

export interface CheckpointWriteResult {
  files: string[];
  /** Sum of tensor data bytes (what HF puts in the index's `total_size`). */
  totalSize: number;
}

export function shardFileName(k: number, n: number): string {
  const pad = (v: number) => String(v).padStart(5, '0');
  return `model-${pad(k)}-of-${pad(n)}.safetensors`;
}

/**
 * Splits tensors, in order, into `n` contiguous groups of roughly equal byte size, none empty.
 */
export function splitIntoShards(tensors: readonly TensorDesc[], n: number): TensorDesc[][] {
  if (!Number.isInteger(n) || n < 1) throw new Error(`shard count must be a positive integer, got ${n}`);
  if (tensors.length < n) throw new Error(`cannot split ${tensors.length} tensors into ${n} shards`);
  const total = tensors.reduce((s, t) => s + tensorBytes(t), 0);
  const groups: TensorDesc[][] = Array.from({ length: n }, () => []);
  let s = 0;
  let cum = 0;
  tensors.forEach((t, i) => {
    const remaining = tensors.length - i;
    if (groups[s]!.length > 0 && s < n - 1 && (cum >= ((s + 1) * total) / n || remaining <= n - 1 - s)) s++;
    groups[s]!.push(t);
    cum += tensorBytes(t);
  });
  return groups;
}

/** Writes all tensors of a checkpoint folder, as one file or as N shards plus the HF index. */
export async function writeCheckpointTensors(
  dir: string,
  tensors: readonly TensorDesc[],
  produce: TensorProducer,
  options: CheckpointWriteOptions = {},
): Promise<CheckpointWriteResult> {
  const shards = options.shards ?? 1;
  await mkdir(dir, { recursive: true });
  if (shards === 1) {
    const totalSize = await writeSafetensors(path.join(dir, 'model.safetensors'), tensors, produce, options.metadata);
    return { files: ['model.safetensors'], totalSize };
  }
  const groups = splitIntoShards(tensors, shards);
  const files: string[] = [];
  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  for (let k = 0; k < groups.length; k++) {
    const name = shardFileName(k + 1, shards);
    totalSize += await writeSafetensors(path.join(dir, name), groups[k]!, produce, options.metadata);
    for (const t of groups[k]!) weightMap[t.name] = name;
    files.push(name);
  }
  const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
  await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify(index, null, 2) + '\n');
  return { files, totalSize };
}
