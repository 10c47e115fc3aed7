// Independent float64 reference forward pass of glm4_moe, written from glm45-spec.md §2.
// Deliberately shares no code with lib/ or cpp/: its own safetensors reader, config reader and math,
// so an engine bug cannot be mirrored here by a shared helper. Clarity over speed; meant for models
// with hidden ≲ 128 and vocab ≲ 1k. Tokens are processed one at a time against a per-layer KV cache,
// so chunked and one-shot evaluation run the exact same arithmetic.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

// ---------------------------------------------------------------------------------------------
// safetensors reading

export interface RawTensor {
  dtype: string;
  shape: number[];
  /** Raw little-endian data bytes. */
  bytes: Uint8Array;
  file: string;
}

const ELEM_BYTES: Record<string, number> = { F32: 4, BF16: 2, F16: 2, F8_E4M3: 1, U8: 1 };

export function readSafetensorsFile(file: string): Map<string, RawTensor> {
  const buf = readFileSync(file);
  if (buf.length < 8) throw new Error(`${file}: too short`);
  const n = Number(buf.readBigUInt64LE(0));
  if (n > buf.length - 8) throw new Error(`${file}: header length ${n} exceeds file`);
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  const dataStart = 8 + n;
  const out = new Map<string, RawTensor>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets } = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const eb = ELEM_BYTES[dtype];
    if (eb === undefined) throw new Error(`${file}: ${name} has unsupported dtype ${dtype}`);
    const elems = shape.reduce((a, b) => a * b, 1);
    const [b, e] = data_offsets;
    if (e - b !== elems * eb || b < 0 || dataStart + e > buf.length) throw new Error(`${file}: ${name} has bad data_offsets`);
    out.set(name, { dtype, shape, bytes: buf.subarray(dataStart + b, dataStart + e), file });
  }
  return out;
}

/** All tensors of a checkpoint folder (single file or sharded with index). */
export function readCheckpointTensors(dir: string): Map<string, RawTensor> {
  const single = path.join(dir, 'model.safetensors');
  if (existsSync(single)) return readSafetensorsFile(single);
  const index = JSON.parse(readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as {
    weight_map: Record<string, string>;
  };
  const out = new Map<string, RawTensor>();
  for (const file of new Set(Object.values(index.weight_map))) {
    for (const [name, t] of readSafetensorsFile(path.join(dir, file))) {
      if (index.weight_map[name] !== file) throw new Error(`${name} found in ${file} but index says ${index.weight_map[name]}`);
      if (out.has(name)) throw new Error(`${name} appears in two shards`);
      out.set(name, t);
    }
  }
  for (const name of Object.keys(index.weight_map)) if (!out.has(name)) throw new Error(`index lists missing tensor ${name}`);
  return out;
}

/** Exact float64 value of an IEEE half. */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Exact float64 value of an OCP E4M3 (e4m3fn) byte. */
function e4m3ToNumber(b: number): number {
  const exp = (b >> 3) & 15, mant = b & 7;
  if (exp === 15 && mant === 7) return NaN;
  const v = exp === 0 ? mant * 2 ** -9 : (8 + mant) * 2 ** (exp - 10);
  return b & 0x80 ? -v : v;
}
const E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6];

/** The value of x rounded to bfloat16 (8 significant bits), to nearest, ties to even. */
function roundBf16(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer);
  const bits = u[0]!;
  const lower = bits & 0xffff;
  let upper = bits >>> 16;
  if (lower > 0x8000 || (lower === 0x8000 && (upper & 1))) upper += 1;
  u[0] = (upper << 16) >>> 0;
  return f[0]!;
}

// The 127 finite non-negative E4M3 values by code, for a nearest-value search.
const E4M3_VALUES = Array.from({ length: 127 }, (_, code) => e4m3ToNumber(code));

/** The nearest E4M3 value to x (|x| <= 448), ties to the even code. */
function roundE4m3(x: number): number {
  const a = Math.min(Math.abs(x), 448);
  let lo = 0, hi = E4M3_VALUES.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (E4M3_VALUES[mid]! <= a) lo = mid; else hi = mid;
  }
  const dl = a - E4M3_VALUES[lo]!, dh = E4M3_VALUES[hi]! - a;
  const code = dl < dh ? lo : dh < dl ? hi : (lo % 2 === 0 ? lo : hi);
  return Math.sign(x) * E4M3_VALUES[code]!;
}

/** A row of n heads of d values as the KV storage format keeps it (see ReferenceOptions.kvStorage). */
function roundKvRows(x: Float64Array, n: number, d: number, format: 'bf16' | 'fp8' | undefined): Float64Array {
  if (!format) return x;
  const y = new Float64Array(x.length);
  for (let h = 0; h < n; h++) {
    const row = x.subarray(h * d, (h + 1) * d);
    if (format === 'bf16') {
      for (let i = 0; i < d; i++) y[h * d + i] = roundBf16(row[i]!);
      continue;
    }
    let amax = 0;
    for (let i = 0; i < d; i++) amax = Math.max(amax, Math.abs(row[i]!));
    const scale = amax / 448;
    for (let i = 0; i < d; i++) y[h * d + i] = scale > 0 ? roundE4m3(row[i]! / scale) * scale : 0;
  }
  return y;
}

/**
 * The weight `<module>.weight` as float64 values the format defines, from whichever storage the
 * checkpoint uses (spec §5, §10; glm-node MXFP4 in README): plain floats; FP8 E4M3 × per-row
 * weight_scale; FP8 E4M3 × 128×128 weight_scale_inv; or MXFP4 weight_blocks/weight_scales. Written
 * from the format definitions, independently of the engine and the quantizer.
 */
export function dequantizedWeight(raw: Map<string, RawTensor>, name: string, rows: number, cols: number): Float64Array | undefined {
  const module = name.replace(/\.weight$/, '');
  const blocks = raw.get(`${module}.weight_blocks`);
  if (blocks) {
    const scales = raw.get(`${module}.weight_scales`);
    if (!scales) throw new Error(`${module}: weight_blocks without weight_scales`);
    const groups = Math.ceil(cols / 32);
    if (blocks.shape.join(',') !== [rows, groups, 16].join(',') || scales.shape.join(',') !== [rows, groups].join(',')) throw new Error(`${module}: bad MXFP4 shapes`);
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < cols; k++) {
        const g = Math.floor(k / 32), j = k % 32;
        const byte = blocks.bytes[(r * groups + g) * 16 + (j >> 1)]!;
        const code = j % 2 === 0 ? byte & 15 : byte >> 4;  // element 2i in the low nibble
        const e = scales.bytes[r * groups + g]!;
        if (e === 255) throw new Error(`${module}: E8M0 NaN scale`);
        out[r * cols + k] = (code & 8 ? -1 : 1) * E2M1[code & 7]! * 2 ** (e - 127);
      }
    }
    return out;
  }
  const t = raw.get(name);
  if (!t) return undefined;
  if (t.dtype !== 'F8_E4M3') return decodeToFloat64(t);
  const out = new Float64Array(rows * cols);
  const perRow = raw.get(`${module}.weight_scale`);
  const perBlock = raw.get(`${module}.weight_scale_inv`);
  if (!perRow && !perBlock) throw new Error(`${module}: FP8 weight without a scale`);
  const s = decodeToFloat64((perRow ?? perBlock)!);
  const bc = Math.ceil(cols / 128);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < cols; k++) {
      const scale = perRow ? s[r]! : s[Math.floor(r / 128) * bc + Math.floor(k / 128)]!;
      out[r * cols + k] = e4m3ToNumber(t.bytes[r * cols + k]!) * scale;
    }
  }
  return out;
}

export function decodeToFloat64(t: RawTensor): Float64Array {
  const dv = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const n = t.bytes.byteLength / ELEM_BYTES[t.dtype]!;
  const out = new Float64Array(n);
  if (t.dtype === 'F32') for (let i = 0; i < n; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (t.dtype === 'BF16') {
    const tmp = new DataView(new ArrayBuffer(4));
    for (let i = 0; i < n; i++) {
      tmp.setUint32(0, dv.getUint16(2 * i, true) << 16, true);
      out[i] = tmp.getFloat32(0, true);
    }
  } else for (let i = 0; i < n; i++) out[i] = halfToNumber(dv.getUint16(2 * i, true));
  return out;
}

// ---------------------------------------------------------------------------------------------
// config

export interface RefConfig {
  hidden: number;
  layers: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  rotaryDim: number;
  ropeTheta: number;
  eps: number;
  vocab: number;
  denseInter: number;
  moeInter: number;
  experts: number;
  sharedExperts: number;
  topK: number;
  nGroup: number;
  topkGroup: number;
  routedScaling: number;
  normTopkProb: boolean;
  firstDense: number;
  qkNorm: boolean;
}

export function readRefConfig(dir: string): RefConfig {
  const c = JSON.parse(readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const num = (k: string): number => {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`config.json: ${k} missing or not a number`);
    return v;
  };
  const bool = (k: string): boolean => {
    const v = c[k];
    if (typeof v !== 'boolean') throw new Error(`config.json: ${k} missing or not a boolean`);
    return v;
  };
  if (c.model_type !== 'glm4_moe') throw new Error(`config.json: model_type ${String(c.model_type)}`);
  if (c.hidden_act !== 'silu') throw new Error('config.json: hidden_act must be silu');
  if (c.rope_scaling !== null && c.rope_scaling !== undefined) throw new Error('config.json: rope_scaling unsupported');
  if (c.attention_bias !== true) throw new Error('reference expects attention_bias true');
  if (c.tie_word_embeddings !== false) throw new Error('reference expects untied lm_head');
  const headDim = num('head_dim');
  return {
    hidden: num('hidden_size'),
    layers: num('num_hidden_layers'),
    heads: num('num_attention_heads'),
    kvHeads: num('num_key_value_heads'),
    headDim,
    rotaryDim: Math.trunc(headDim * num('partial_rotary_factor')),
    ropeTheta: num('rope_theta'),
    eps: num('rms_norm_eps'),
    vocab: num('vocab_size'),
    denseInter: num('intermediate_size'),
    moeInter: num('moe_intermediate_size'),
    experts: num('n_routed_experts'),
    sharedExperts: num('n_shared_experts'),
    topK: num('num_experts_per_tok'),
    nGroup: num('n_group'),
    topkGroup: num('topk_group'),
    routedScaling: num('routed_scaling_factor'),
    normTopkProb: bool('norm_topk_prob'),
    firstDense: num('first_k_dense_replace'),
    qkNorm: bool('use_qk_norm'),
  };
}

// ---------------------------------------------------------------------------------------------
// model

export type ActivationName =
  | 'attn_norm' | 'q' | 'k' | 'v' | 'attn_out' | 'ffn_norm' | 'router_logits' | 'ffn_out' | 'final_norm';

/**
 * Debug hook, called per token. `q`/`k` are reported after bias, qk-norm and RoPE (what attention
 * consumes and what the K cache holds), `v` after bias; `attn_out` is the o_proj output and `ffn_out`
 * the FFN/MoE output, both before the residual add; `layer` is -1 for `final_norm`.
 */
export type ActivationHook = (name: ActivationName, layer: number, values: Float64Array, pos: number) => void;

/** Test-only switches that remove one feature each, to prove the fixtures make that feature matter. */
export interface ReferenceOptions {
  ignoreQkvBias?: boolean;
  ignoreQkNorm?: boolean;
  /** Every RMSNorm weight (layer norms, q/k norms, final norm) treated as ones. */
  ignoreNormWeights?: boolean;
  ignoreCorrectionBias?: boolean;
  ignoreRoutedScaling?: boolean;
  ignoreSharedExpert?: boolean;
  /** Rotate all head_dim dims instead of the first int(head_dim·partial_rotary_factor). */
  fullRope?: boolean;
  /** GPT-J style pairs (2i, 2i+1) instead of NeoX rotate_half pairs (i, i+r/2). */
  interleavedRope?: boolean;
  /**
   * Round every cached K and V row (per kv head) to a KV storage format before attention reads it,
   * as the engine's kvCacheType does: 'bf16' (round to nearest even) or 'fp8' (E4M3, one scale per row
   * = max|row| / 448, codes to nearest even). Written from the format definitions, not the engine.
   */
  kvStorage?: 'bf16' | 'fp8';
  onActivation?: ActivationHook;
}

interface Mlp {
  gate: Float64Array;
  up: Float64Array;
  down: Float64Array;
  inter: number;
}

interface MtpWeights {
  layer: Layer;
  enorm: Float64Array;
  hnorm: Float64Array;
  ehProj: Float64Array;
  headNorm: Float64Array;
  head?: Float64Array;
  embed?: Float64Array;
}

interface Layer {
  inNorm: Float64Array;
  wq: Float64Array; bq: Float64Array;
  wk: Float64Array; bk: Float64Array;
  wv: Float64Array; bv: Float64Array;
  wo: Float64Array;
  qNorm?: Float64Array;
  kNorm?: Float64Array;
  postNorm: Float64Array;
  dense?: Mlp;
  router?: Float64Array;
  corrBias?: Float64Array;
  experts?: Mlp[];
  shared?: Mlp;
}

export interface ReferenceState {
  /** Next position to fill. */
  pos: number;
  /** keys[layer][position] = post-RoPE K for all kv heads ([nkv·d]); likewise values. */
  keys: Float64Array[][];
  values: Float64Array[][];
  /** When set, the final-norm hidden state of every position is appended (the MTP layer's input). */
  hidden?: Float64Array[];
}

function matvec(w: Float64Array, x: Float64Array, rows: number): Float64Array {
  const cols = x.length;
  if (w.length !== rows * cols) throw new Error(`matvec shape mismatch ${w.length} vs ${rows}x${cols}`);
  const y = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let acc = 0;
    const o = r * cols;
    for (let c = 0; c < cols; c++) acc += w[o + c]! * x[c]!;
    y[r] = acc;
  }
  return y;
}

function rmsnorm(x: Float64Array, w: Float64Array | null, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const inv = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * inv * (w ? w[i]! : 1);
  return y;
}

const silu = (v: number) => v / (1 + Math.exp(-v));
const sigmoid = (v: number) => 1 / (1 + Math.exp(-v));

/** Indices of the k largest values; ties resolved to the lowest index. */
function topkIndices(vals: ArrayLike<number>, k: number): number[] {
  const idx = Array.from({ length: vals.length }, (_, i) => i);
  idx.sort((a, b) => vals[b]! - vals[a]! || a - b);
  return idx.slice(0, k);
}

/** Argmax with ties resolved to the lowest id. */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

export class ReferenceModel {
  private constructor(
    readonly config: RefConfig,
    private readonly embed: Float64Array,
    private readonly layers: Layer[],
    private readonly finalNorm: Float64Array,
    private readonly lmHead: Float64Array,
    readonly options: ReferenceOptions,
    private readonly invFreq: Float64Array,
    private readonly mtp: MtpWeights | undefined,
  ) {}

  static async load(dir: string, options: ReferenceOptions = {}): Promise<ReferenceModel> {
    const cfg = readRefConfig(dir);
    const raw = readCheckpointTensors(dir);
    const get = (name: string, shape: number[]): Float64Array => {
      if (shape.length === 2) {
        const w = dequantizedWeight(raw, name, shape[0]!, shape[1]!);
        if (w) {
          const t = raw.get(name);
          if (t && t.shape.join(',') !== shape.join(',')) throw new Error(`${name}: shape [${t.shape}] expected [${shape}]`);
          return w;
        }
      }
      const t = raw.get(name);
      if (!t) throw new Error(`missing tensor ${name}`);
      if (t.shape.join(',') !== shape.join(',')) throw new Error(`${name}: shape [${t.shape}] expected [${shape}]`);
      return decodeToFloat64(t);
    };
    const H = cfg.hidden, d = cfg.headDim;
    const mlp = (p: string, inter: number): Mlp => ({
      gate: get(`${p}.gate_proj.weight`, [inter, H]),
      up: get(`${p}.up_proj.weight`, [inter, H]),
      down: get(`${p}.down_proj.weight`, [H, inter]),
      inter,
    });
    const layers: Layer[] = [];
    const hasMtp = raw.has(`model.layers.${cfg.layers}.eh_proj.weight`);
    for (let l = 0; l < cfg.layers + (hasMtp ? 1 : 0); l++) {
      const p = `model.layers.${l}`;
      const L: Layer = {
        inNorm: get(`${p}.input_layernorm.weight`, [H]),
        wq: get(`${p}.self_attn.q_proj.weight`, [cfg.heads * d, H]),
        bq: get(`${p}.self_attn.q_proj.bias`, [cfg.heads * d]),
        wk: get(`${p}.self_attn.k_proj.weight`, [cfg.kvHeads * d, H]),
        bk: get(`${p}.self_attn.k_proj.bias`, [cfg.kvHeads * d]),
        wv: get(`${p}.self_attn.v_proj.weight`, [cfg.kvHeads * d, H]),
        bv: get(`${p}.self_attn.v_proj.bias`, [cfg.kvHeads * d]),
        wo: get(`${p}.self_attn.o_proj.weight`, [H, cfg.heads * d]),
        postNorm: get(`${p}.post_attention_layernorm.weight`, [H]),
      };
      if (cfg.qkNorm) {
        L.qNorm = get(`${p}.self_attn.q_norm.weight`, [d]);
        L.kNorm = get(`${p}.self_attn.k_norm.weight`, [d]);
      }
      if (l < cfg.firstDense && l < cfg.layers) L.dense = mlp(`${p}.mlp`, cfg.denseInter);  // the MTP layer is MoE
      else {
        L.router = get(`${p}.mlp.gate.weight`, [cfg.experts, H]);
        L.corrBias = get(`${p}.mlp.gate.e_score_correction_bias`, [cfg.experts]);
        L.experts = Array.from({ length: cfg.experts }, (_, e) => mlp(`${p}.mlp.experts.${e}`, cfg.moeInter));
        if (cfg.sharedExperts > 0) L.shared = mlp(`${p}.mlp.shared_experts`, cfg.moeInter * cfg.sharedExperts);
      }
      layers.push(L);
    }
    // The MTP layer (spec §3): its own embedding/head copies where the checkpoint has them.
    let mtp: MtpWeights | undefined;
    if (hasMtp) {
      const p = `model.layers.${cfg.layers}`;
      const optional = (name: string, shape: number[]) => (raw.has(name) ? get(name, shape) : undefined);
      mtp = {
        layer: layers.pop()!,
        enorm: get(`${p}.enorm.weight`, [H]),
        hnorm: get(`${p}.hnorm.weight`, [H]),
        ehProj: get(`${p}.eh_proj.weight`, [H, 2 * H]),
        headNorm: get(`${p}.shared_head.norm.weight`, [H]),
        head: optional(`${p}.shared_head.head.weight`, [cfg.vocab, H]),
        embed: optional(`${p}.embed_tokens.weight`, [cfg.vocab, H]),
      };
    }
    const rot = options.fullRope ? d : cfg.rotaryDim;
    // inv_freq[i] = 1 / theta^(2i / rotary_dim): the rotary dim, not head_dim, is the denominator.
    const invFreq = Float64Array.from({ length: rot / 2 }, (_, i) => 1 / Math.pow(cfg.ropeTheta, (2 * i) / rot));
    return new ReferenceModel(
      cfg,
      get('model.embed_tokens.weight', [cfg.vocab, H]),
      layers,
      get('model.norm.weight', [H]),
      get('lm_head.weight', [cfg.vocab, H]),
      options,
      invFreq,
      mtp,
    );
  }

  newState(): ReferenceState {
    return {
      pos: 0,
      keys: this.layers.map(() => []),
      values: this.layers.map(() => []),
    };
  }

  /** Appends `tokens` at the next positions; returns the logits after each of them. */
  forward(state: ReferenceState, tokens: readonly number[]): Float64Array[] {
    return tokens.map((t) => this.step(state, t));
  }

  /** Greedy decoding: `tokens` are the `steps` generated ids, `logits[i]` the logits `tokens[i]` came from. */
  greedy(promptTokens: readonly number[], steps: number): { tokens: number[]; logits: Float64Array[] } {
    if (promptTokens.length === 0) throw new Error('greedy needs a non-empty prompt');
    const state = this.newState();
    let last = this.forward(state, promptTokens).at(-1)!;
    const tokens: number[] = [];
    const logits: Float64Array[] = [];
    for (let i = 0; i < steps; i++) {
      const next = argmax(last);
      tokens.push(next);
      logits.push(last);
      if (i + 1 < steps) last = this.step(state, next);
    }
    return { tokens, logits };
  }

  private hook(name: ActivationName, layer: number, v: Float64Array, pos: number): void {
    this.options.onActivation?.(name, layer, v, pos);
  }

  private norm(x: Float64Array, w: Float64Array): Float64Array {
    return rmsnorm(x, this.options.ignoreNormWeights ? null : w, this.config.eps);
  }

  /** Rotates the first rotary dims of each head in place. */
  private rope(x: Float64Array, nHeads: number, pos: number): void {
    const d = this.config.headDim;
    const half = this.invFreq.length;
    for (let h = 0; h < nHeads; h++) {
      const o = h * d;
      for (let i = 0; i < half; i++) {
        const ang = pos * this.invFreq[i]!;
        const c = Math.cos(ang), s = Math.sin(ang);
        // NeoX rotate_half pairs (i, i+half); interleaved pairs (2i, 2i+1).
        const ia = this.options.interleavedRope ? o + 2 * i : o + i;
        const ib = this.options.interleavedRope ? o + 2 * i + 1 : o + i + half;
        const a = x[ia]!, b = x[ib]!;
        x[ia] = a * c - b * s;
        x[ib] = b * c + a * s;
      }
    }
  }

  private swiglu(m: Mlp, x: Float64Array): Float64Array {
    const g = matvec(m.gate, x, m.inter);
    const u = matvec(m.up, x, m.inter);
    for (let i = 0; i < m.inter; i++) g[i] = silu(g[i]!) * u[i]!;
    return matvec(m.down, g, this.config.hidden);
  }

  private moe(L: Layer, m: Float64Array, layer: number, pos: number): Float64Array {
    const c = this.config;
    const E = c.experts;
    const logits = matvec(L.router!, m, E);
    this.hook('router_logits', layer, logits, pos);
    const s = logits.map(sigmoid);
    const sel = Float64Array.from(s, (v, e) => v + (this.options.ignoreCorrectionBias ? 0 : L.corrBias![e]!));
    // Group-limited selection as HF: group score = sum of the top-2 biased scores of the group; keep
    // topk_group groups; experts of other groups get biased score 0.0 (masked_fill, not -inf).
    const per = E / c.nGroup;
    const groupScores = Array.from({ length: c.nGroup }, (_, g) => {
      const [i0, i1] = topkIndices(sel.subarray(g * per, (g + 1) * per), 2);
      return sel[g * per + i0!]! + sel[g * per + i1!]!;
    });
    const keep = new Set(topkIndices(groupScores, c.topkGroup));
    for (let e = 0; e < E; e++) if (!keep.has(Math.floor(e / per))) sel[e] = 0.0;
    const idx = topkIndices(sel, c.topK);
    const w = idx.map((e) => s[e]!); // unbiased scores
    if (c.normTopkProb) {
      const sum = w.reduce((a, b) => a + b, 0) + 1e-20;
      for (let j = 0; j < w.length; j++) w[j] = w[j]! / sum;
    }
    const scale = this.options.ignoreRoutedScaling ? 1 : c.routedScaling;
    const f = new Float64Array(c.hidden);
    idx.forEach((e, j) => {
      const y = this.swiglu(L.experts![e]!, m);
      const wj = w[j]! * scale;
      for (let i = 0; i < f.length; i++) f[i] = f[i]! + wj * y[i]!;
    });
    if (L.shared && !this.options.ignoreSharedExpert) {
      const y = this.swiglu(L.shared, m); // the shared expert is not scaled by routed_scaling_factor
      for (let i = 0; i < f.length; i++) f[i] = f[i]! + y[i]!;
    }
    return f;
  }

  private step(state: ReferenceState, token: number): Float64Array {
    const c = this.config;
    const o = this.options;
    if (!Number.isInteger(token) || token < 0 || token >= c.vocab) throw new Error(`token ${token} out of range`);
    const H = c.hidden, d = c.headDim, nh = c.heads, nkv = c.kvHeads;
    const pos = state.pos;
    const x = this.embed.slice(token * H, (token + 1) * H);
    this.layers.forEach((L, l) => this.decoderLayer(L, l, x, state.keys[l]!, state.values[l]!, pos));
    state.pos++;
    const h = this.norm(x, this.finalNorm);
    this.hook('final_norm', -1, h, pos);
    state.hidden?.push(h);
    return matvec(this.lmHead, h, c.vocab);
  }

  /**
   * The MTP layer's logits over a prompt (spec §3): row t reads the trunk's final-norm hidden state at t
   * and token t+1 (RoPE position t, its own KV over rows 0..t) and predicts token t+2; tokens.length − 1 rows.
   */
  mtpLogits(tokens: readonly number[]): Float64Array[] {
    const m = this.mtp;
    if (!m) throw new Error('the checkpoint has no MTP layer');
    const c = this.config, H = c.hidden;
    const state = this.newState();
    state.hidden = [];
    this.forward(state, tokens);
    const keys: Float64Array[] = [], values: Float64Array[] = [];
    const out: Float64Array[] = [];
    for (let t = 0; t + 1 < tokens.length; t++) {
      const next = tokens[t + 1]!;
      const emb = (m.embed ?? this.embed).slice(next * H, (next + 1) * H);
      const cat = new Float64Array(2 * H);
      cat.set(this.norm(emb, m.enorm), 0);                   // embedding half first
      cat.set(this.norm(state.hidden[t]!, m.hnorm), H);
      const x = matvec(m.ehProj, cat, H);
      this.decoderLayer(m.layer, c.layers, x, keys, values, t);
      out.push(matvec(m.head ?? this.lmHead, this.norm(x, m.headNorm), c.vocab));
    }
    return out;
  }

  /** One decoder layer on x in place at RoPE position pos, appending its K/V rows to K/Vc. */
  private decoderLayer(L: Layer, l: number, x: Float64Array, K: Float64Array[], Vc: Float64Array[], pos: number): void {
    const c = this.config;
    const o = this.options;
    const H = c.hidden, d = c.headDim, nh = c.heads, nkv = c.kvHeads;
    const scale = 1 / Math.sqrt(d);
    const group = nh / nkv;
    {
      // --- self_attn ---
      const a = this.norm(x, L.inNorm);
      this.hook('attn_norm', l, a, pos);
      const q = matvec(L.wq, a, nh * d);
      const k = matvec(L.wk, a, nkv * d);
      const v = matvec(L.wv, a, nkv * d);
      if (!o.ignoreQkvBias) {
        for (let i = 0; i < q.length; i++) q[i] = q[i]! + L.bq[i]!;
        for (let i = 0; i < k.length; i++) k[i] = k[i]! + L.bk[i]!;
        for (let i = 0; i < v.length; i++) v[i] = v[i]! + L.bv[i]!;
      }
      if (c.qkNorm && !o.ignoreQkNorm) {
        // Per head over head_dim, after the bias, before RoPE.
        for (let h = 0; h < nh; h++) q.set(this.norm(q.subarray(h * d, (h + 1) * d), L.qNorm!), h * d);
        for (let h = 0; h < nkv; h++) k.set(this.norm(k.subarray(h * d, (h + 1) * d), L.kNorm!), h * d);
      }
      this.rope(q, nh, pos);
      this.rope(k, nkv, pos);
      this.hook('q', l, q, pos);
      this.hook('k', l, k, pos);
      this.hook('v', l, v, pos);
      K.push(roundKvRows(k, nkv, d, o.kvStorage));
      Vc.push(roundKvRows(v, nkv, d, o.kvStorage));
      const attn = new Float64Array(nh * d);
      const scores = new Float64Array(K.length);
      for (let h = 0; h < nh; h++) {
        const kvh = Math.floor(h / group); // GQA: consecutive q heads share one kv head
        let mx = -Infinity;
        for (let t = 0; t < K.length; t++) {
          let dot = 0;
          for (let i = 0; i < d; i++) dot += q[h * d + i]! * K[t]![kvh * d + i]!;
          scores[t] = dot * scale;
          if (scores[t]! > mx) mx = scores[t]!;
        }
        let sum = 0;
        for (let t = 0; t < K.length; t++) {
          scores[t] = Math.exp(scores[t]! - mx);
          sum += scores[t]!;
        }
        for (let t = 0; t < K.length; t++) {
          const p = scores[t]! / sum;
          for (let i = 0; i < d; i++) attn[h * d + i] = attn[h * d + i]! + p * Vc[t]![kvh * d + i]!;
        }
      }
      const ao = matvec(L.wo, attn, H); // o_proj, no bias
      this.hook('attn_out', l, ao, pos);
      for (let i = 0; i < H; i++) x[i] = x[i]! + ao[i]!;
      // --- mlp ---
      const m = this.norm(x, L.postNorm);
      this.hook('ffn_norm', l, m, pos);
      const f = L.dense ? this.swiglu(L.dense, m) : this.moe(L, m, l, pos);
      this.hook('ffn_out', l, f, pos);
      for (let i = 0; i < H; i++) x[i] = x[i]! + f[i]!;
    }
  }
}
