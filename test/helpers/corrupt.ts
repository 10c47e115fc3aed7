// Byte-level tools for building malformed checkpoint folders in tests. They read only the trusted
// fixtures we generate ourselves (so JSON.parse is fine here) and write whatever bytes a case needs,
// including layouts no honest writer would produce.

import { cpSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface StTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Buffer;
}

export interface StFile {
  metadata?: Record<string, unknown>;
  tensors: StTensor[];
}

/** A header entry as it appears in the JSON (values may be anything a hostile file could hold). */
export type HeaderObject = Record<string, unknown>;

export interface SplitFile {
  /** The header JSON text, padding included. */
  headerText: string;
  header: HeaderObject;
  data: Buffer;
}

/** Splits a well-formed safetensors file into its parsed header and data section. */
export function splitSafetensors(file: string): SplitFile {
  const buf = readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const headerText = buf.subarray(8, 8 + n).toString('utf8');
  return { headerText, header: JSON.parse(headerText) as HeaderObject, data: buf.subarray(8 + n) };
}

/** Assembles raw safetensors bytes: the length field (default: the header's byte length), header, data. */
export function rawSafetensors(header: string | Buffer, data: Buffer = Buffer.alloc(0), headerLength?: bigint): Buffer {
  const h = typeof header === 'string' ? Buffer.from(header, 'utf8') : header;
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLength ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

/** Pads a header with spaces so data starts 8-byte aligned, as real writers do. */
export function padHeader(text: string): string {
  const n = Buffer.byteLength(text, 'utf8');
  return text + ' '.repeat((8 - ((8 + n) % 8)) % 8);
}

/** Parses every tensor (with its bytes) of a well-formed file. */
export function readSt(file: string): StFile {
  const { header, data } = splitSafetensors(file);
  const out: StFile = { tensors: [] };
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') {
      out.metadata = v as Record<string, unknown>;
      continue;
    }
    const e = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    out.tensors.push({ name, dtype: e.dtype, shape: e.shape, data: Buffer.from(data.subarray(e.data_offsets[0], e.data_offsets[1])) });
  }
  return out;
}

/** Writes tensors back-to-back in the given order with consistent offsets (whatever dtype/shape they claim). */
export function encodeSt(st: StFile): Buffer {
  const header: HeaderObject = {};
  if (st.metadata) header.__metadata__ = st.metadata;
  let off = 0;
  for (const t of st.tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [off, off + t.data.length] };
    off += t.data.length;
  }
  return rawSafetensors(padHeader(JSON.stringify(header)), Buffer.concat(st.tensors.map((t) => t.data)));
}

/** Rewrites a file's tensors through `edit` and re-lays the data out consistently. */
export function editTensors(file: string, edit: (st: StFile) => void): void {
  const st = readSt(file);
  edit(st);
  writeFileSync(file, encodeSt(st));
}

/**
 * Rewrites a file's header through `edit` (object, then optionally the serialized text) while keeping
 * the data section byte for byte, so only the header lies.
 */
export function editHeader(
  file: string,
  edit: (header: HeaderObject) => void,
  editText?: (text: string) => string,
  data?: (data: Buffer) => Buffer,
): void {
  const s = splitSafetensors(file);
  edit(s.header);
  let text = JSON.stringify(s.header);
  if (editText) text = editText(text);
  writeFileSync(file, rawSafetensors(padHeader(text), data ? data(s.data) : s.data));
}

/** Tensor header entries sorted by data offset (the order the data section holds them). */
export function entriesByOffset(header: HeaderObject): Array<{ name: string; entry: { dtype: string; shape: number[]; data_offsets: [number, number] } }> {
  return Object.entries(header)
    .filter(([k]) => k !== '__metadata__')
    .map(([name, entry]) => ({ name, entry: entry as { dtype: string; shape: number[]; data_offsets: [number, number] } }))
    .sort((a, b) => a.entry.data_offsets[0] - b.entry.data_offsets[0]);
}

/** Reads, edits and writes back a (trusted) JSON file. */
export function editJson(file: string, edit: (obj: Record<string, unknown>) => void): void {
  const obj = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(obj);
  writeFileSync(file, JSON.stringify(obj, null, 2) + '\n');
}

/**
 * Creates `<root>/<label>/` holding a copy of `fixtureDir` in `model/`, and returns both paths.
 * Paths are realpath'd: the loader reports resolved shard paths, so messages then match them.
 */
export function copyFixture(fixtureDir: string, root: string, label: string): { caseDir: string; dir: string } {
  const caseDir = path.join(realpathSync(root), label);
  mkdirSync(caseDir, { recursive: true });
  const dir = path.join(caseDir, 'model');
  cpSync(fixtureDir, dir, { recursive: true });
  return { caseDir, dir };
}
