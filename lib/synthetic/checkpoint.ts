// Deterministic synthetic GLM-4.5 (glm4_moe) checkpoints: config.json + safetensors with the exact
// HF tensor names and shapes of spec §4 (and the MTP layer of §3.1). Used for the CLI's embedded
// default model, engine tests against the float64 reference, and benchmarks.

import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { writeCheckpointTensors, type FloatStDtype as StDtype, type TensorDesc } from './safetensors-writer.js';
import { MIN_SYNTHETIC_TOKENIZER_VOCAB, writeSyntheticTokenizer } from './tokenizer.js';

/**
 * Init scales. Projection weights use std = gain/sqrt(fan_in): GLM's initializer_range 0.02 at
 * GLM-4.5-Air's hidden 4096 is 1.28/sqrt(4096), so toy models keep real-model activation magnitudes
 * instead of collapsing to near-zero layer outputs. The remaining scales are chosen so that every
 * architectural feature changes the logits visibly (see test/reference.test.ts).
 */
export interface InitScales {
  /** Every projection: std = weightGain/sqrt(fan_in); o_proj and every down_proj additionally get
   *  1/sqrt(2·num_hidden_layers) (GLM/Megatron depth scaling). */
  weightGain: number;
  /** Embedding std (absolute): comparable to one layer's residual contribution. */
  embed: number;
  /** lm_head std = lmHeadGain/sqrt(hidden): logits have std ≈ lmHeadGain, so top-1/top-2 gaps are not near-ties. */
  lmHeadGain: number;
  /** q/k/v bias std. */
  bias: number;
  /** Norm weights are 1 + normNoise·N(0,1). */
  normNoise: number;
  /** Router (mlp.gate.weight) std = routerGain/sqrt(hidden): router logits have std ≈ routerGain. */
  routerGain: number;
  /** e_score_correction_bias std, comparable to the gaps between sigmoid scores. */
  correctionBias: number;
  /** Constant added to every correction bias: keeps biased scores > 0 so HF's masked_fill(0.0) never wins. */
  correctionBiasOffset: number;
}

export const DEFAULT_INIT: InitScales = {
  weightGain: 1.28,
  embed: 0.5,
  lmHeadGain: 3,
  bias: 0.3,
  normNoise: 0.2,
  routerGain: 2,
  correctionBias: 0.1,
  correctionBiasOffset: 0.3,
};

export type TorchDtype = 'bfloat16' | 'float16' | 'float32';

/** config.json of a glm4_moe checkpoint (spec §1), plus generator options. */
export interface SyntheticModelSpec {
  architectures: string[];
  model_type: 'glm4_moe';
  hidden_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  head_dim: number;
  partial_rotary_factor: number;
  rope_theta: number;
  rope_scaling: null;
  rms_norm_eps: number;
  vocab_size: number;
  intermediate_size: number;
  moe_intermediate_size: number;
  n_routed_experts: number;
  n_shared_experts: number;
  num_experts_per_tok: number;
  n_group: number;
  topk_group: number;
  routed_scaling_factor: number;
  norm_topk_prob: boolean;
  first_k_dense_replace: number;
  use_qk_norm: boolean;
  attention_bias: boolean;
  hidden_act: 'silu';
  tie_word_embeddings: boolean;
  max_position_embeddings: number;
  num_nextn_predict_layers: number;
  eos_token_id: number[];
  pad_token_id: number;
  torch_dtype: TorchDtype;

  // ---- generator options (not written to config.json) ----
  seed: number;
  /** Storage dtype of every weight except the router and its correction bias (always F32). */
  dtype: StDtype;
  /** 1 = single model.safetensors; N = N shards + index. */
  shards: number;
  /** Write the MTP layer (index num_hidden_layers); requires num_nextn_predict_layers 1 (else 0). */
  mtp: boolean;
  /** Overrides of DEFAULT_INIT. */
  init?: Partial<InitScales>;
}

/** The config.json keys, in the order they are written. */
export const CONFIG_KEYS = [
  'architectures', 'model_type', 'hidden_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'partial_rotary_factor', 'rope_theta', 'rope_scaling', 'rms_norm_eps',
  'vocab_size', 'intermediate_size', 'moe_intermediate_size', 'n_routed_experts', 'n_shared_experts',
  'num_experts_per_tok', 'n_group', 'topk_group', 'routed_scaling_factor', 'norm_topk_prob',
  'first_k_dense_replace', 'use_qk_norm', 'attention_bias', 'hidden_act', 'tie_word_embeddings',
  'max_position_embeddings', 'num_nextn_predict_layers', 'eos_token_id', 'pad_token_id', 'torch_dtype',
] as const satisfies readonly (keyof SyntheticModelSpec)[];

const TORCH_DTYPE: Record<StDtype, TorchDtype> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

/** Special ids mirror GLM's layout (specials at the top of the vocab: endoftext, +7 user, +9 observation). */
function glmLikeSpecials(vocab: number): Pick<SyntheticModelSpec, 'eos_token_id' | 'pad_token_id'> {
  const first = vocab - 32;
  return { eos_token_id: [first, first + 7, first + 9], pad_token_id: first };
}

/**
 * Builds a spec from a base plus overrides, re-deriving the fields that must agree with generator
 * options (torch_dtype from dtype, num_nextn_predict_layers from mtp) unless explicitly overridden.
 */
export function makeSpec(base: SyntheticModelSpec, over: Partial<SyntheticModelSpec> = {}): SyntheticModelSpec {
  const s: SyntheticModelSpec = { ...base, ...over };
  if (over.torch_dtype === undefined) s.torch_dtype = TORCH_DTYPE[s.dtype];
  if (over.num_nextn_predict_layers === undefined) s.num_nextn_predict_layers = s.mtp ? 1 : 0;
  if (over.vocab_size !== undefined && over.eos_token_id === undefined && over.pad_token_id === undefined) {
    Object.assign(s, glmLikeSpecials(s.vocab_size));
  }
  return s;
}

const TINY_BASE: SyntheticModelSpec = {
  architectures: ['Glm4MoeForCausalLM'],
  model_type: 'glm4_moe',
  hidden_size: 64,
  num_hidden_layers: 4,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  head_dim: 32,
  partial_rotary_factor: 0.5,
  rope_theta: 1000000,
  rope_scaling: null,
  rms_norm_eps: 1e-5,
  vocab_size: 512,
  intermediate_size: 192,
  moe_intermediate_size: 32,
  n_routed_experts: 8,
  n_shared_experts: 1,
  num_experts_per_tok: 2,
  n_group: 1,
  topk_group: 1,
  routed_scaling_factor: 2.5,
  norm_topk_prob: true,
  first_k_dense_replace: 1,
  use_qk_norm: true,
  attention_bias: true,
  hidden_act: 'silu',
  tie_word_embeddings: false,
  max_position_embeddings: 4096,
  num_nextn_predict_layers: 1,
  ...glmLikeSpecials(512),
  torch_dtype: 'bfloat16',
  seed: 20250728,
  dtype: 'BF16',
  shards: 1,
  mtp: true,
};

/**
 * The tiny synthetic spec (a few hundred KB) that test fixtures derive their checkpoints from. It was
 * the CLI's embedded model before that became a trained one (scripts/train-default-model).
 */
export const TINY_DEFAULT_SPEC: SyntheticModelSpec = Object.freeze({ ...TINY_BASE }) as SyntheticModelSpec;

/** Benchmark model, about 0.5B parameters in the main model (~1.2 GB BF16 with the MTP layer). */
export const BENCH_SPEC: SyntheticModelSpec = Object.freeze(
  makeSpec(TINY_BASE, {
    hidden_size: 1024,
    num_hidden_layers: 8,
    first_k_dense_replace: 1,
    intermediate_size: 2816,
    num_attention_heads: 16,
    num_key_value_heads: 4,
    head_dim: 128,
    n_routed_experts: 32,
    num_experts_per_tok: 4,
    moe_intermediate_size: 512,
    n_shared_experts: 1,
    vocab_size: 32000,
    max_position_embeddings: 32768,
    dtype: 'BF16',
    use_qk_norm: true,
    mtp: true,
    shards: 4,
    seed: 1234,
  }),
) as SyntheticModelSpec;

function validateSpec(s: SyntheticModelSpec): void {
  const posInt = (k: keyof SyntheticModelSpec) => {
    const v = s[k];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`spec.${String(k)} must be a positive integer, got ${String(v)}`);
  };
  for (const k of ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim',
    'vocab_size', 'intermediate_size', 'moe_intermediate_size', 'n_routed_experts', 'num_experts_per_tok',
    'n_group', 'topk_group', 'shards', 'max_position_embeddings'] as const) posInt(k);
  if (!Number.isInteger(s.seed)) throw new Error('spec.seed must be an integer');
  if (s.num_attention_heads % s.num_key_value_heads !== 0) throw new Error('num_attention_heads must be a multiple of num_key_value_heads');
  if (s.n_routed_experts % s.n_group !== 0) throw new Error('n_routed_experts must be a multiple of n_group');
  if (s.n_routed_experts / s.n_group < 2) throw new Error('each expert group needs at least 2 experts (group score = top-2 sum)');
  if (s.topk_group > s.n_group) throw new Error('topk_group must be <= n_group');
  if (s.num_experts_per_tok > (s.n_routed_experts / s.n_group) * s.topk_group) throw new Error('num_experts_per_tok exceeds the experts in the kept groups');
  if (s.first_k_dense_replace < 0 || s.first_k_dense_replace > s.num_hidden_layers) throw new Error('bad first_k_dense_replace');
  if (!Number.isInteger(s.n_shared_experts) || s.n_shared_experts < 0) throw new Error('bad n_shared_experts');
  const rot = Math.trunc(s.head_dim * s.partial_rotary_factor);
  if (rot % 2 !== 0 || rot <= 0) throw new Error(`rotary dim ${rot} must be even and positive`);
  if (s.num_nextn_predict_layers !== (s.mtp ? 1 : 0)) throw new Error('num_nextn_predict_layers must be 1 when mtp, else 0');
  if (s.torch_dtype !== TORCH_DTYPE[s.dtype]) throw new Error(`torch_dtype ${s.torch_dtype} does not match dtype ${s.dtype}`);
  if (!s.attention_bias) throw new Error('glm4_moe checkpoints always carry q/k/v bias (attention_bias true)');
  if (s.tie_word_embeddings) throw new Error('tied embeddings are not generated');
  if (s.rope_scaling !== null) throw new Error('rope_scaling must be null');
  if (s.eos_token_id.some((t) => t < 0 || t >= s.vocab_size) || s.pad_token_id < 0 || s.pad_token_id >= s.vocab_size) {
    throw new Error('special token ids must lie inside the vocab');
  }
}

/** The config.json object for a spec (generator options stripped). */
export function configJson(s: SyntheticModelSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of CONFIG_KEYS) out[k] = s[k];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Deterministic random numbers: xoshiro128** seeded per tensor from (seed, name), so values do not
// depend on tensor order or on how tensors are split across shards.

function hashName(seed: number, name: string): [number, number, number, number] {
  // Two FNV-1a lanes over the name, mixed with the seed through splitmix32 to fill the 128-bit state.
  let h1 = 0x811c9dc5 ^ (seed | 0);
  let h2 = 0x01000193 ^ Math.imul(seed | 0, 0x9e3779b9);
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x5bd1e995);
  }
  let x = (h1 ^ Math.imul(h2, 0x85ebca6b) ^ Math.floor(seed / 0x100000000)) >>> 0;
  const next = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x ^ h2;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return (z ^ (z >>> 16)) >>> 0;
  };
  const s: [number, number, number, number] = [next(), next(), next(), next()];
  if ((s[0] | s[1] | s[2] | s[3]) === 0) s[0] = 1;
  return s;
}

/** Fills `out` with mean + std·N(0,1) (Box–Muller over xoshiro128**, both outputs used). */
export function fillNormal(out: Float32Array, seed: number, name: string, mean: number, std: number): Float32Array {
  let [s0, s1, s2, s3] = hashName(seed, name);
  const n = out.length;
  const TWO_PI = 2 * Math.PI;
  const INV_2_32 = 1 / 4294967296;
  for (let i = 0; i < n; i += 2) {
    // xoshiro128** step, twice (inlined: this loop produces ~10^9 values for the bench model)
    let r = Math.imul(s1, 5);
    r = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
    let t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
    const a = r;
    r = Math.imul(s1, 5);
    r = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
    t = s1 << 9;
    s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t; s3 = (s3 << 11) | (s3 >>> 21);
    const u1 = (a + 0.5) * INV_2_32; // in (0,1): log never sees 0
    const u2 = r * INV_2_32;
    const rad = std * Math.sqrt(-2 * Math.log(u1));
    const th = TWO_PI * u2;
    out[i] = mean + rad * Math.cos(th);
    if (i + 1 < n) out[i + 1] = mean + rad * Math.sin(th);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

type Init = { mean: number; std: number; seedName?: string };

interface PlannedTensor extends TensorDesc {
  init: Init;
}

/** Every tensor of the checkpoint with its HF name, shape, storage dtype and init distribution. */
export function planTensors(s: SyntheticModelSpec): PlannedTensor[] {
  const sc: InitScales = { ...DEFAULT_INIT, ...s.init };
  const H = s.hidden_size, V = s.vocab_size, d = s.head_dim;
  const nh = s.num_attention_heads, nkv = s.num_key_value_heads;
  const depth = 1 / Math.sqrt(2 * s.num_hidden_layers);
  const wIn = (fanIn: number): Init => ({ mean: 0, std: sc.weightGain / Math.sqrt(fanIn) });
  const wOut = (fanIn: number): Init => ({ mean: 0, std: (sc.weightGain / Math.sqrt(fanIn)) * depth });
  const norm: Init = { mean: 1, std: sc.normNoise };
  const out: PlannedTensor[] = [];
  const add = (name: string, shape: number[], init: Init, dtype: StDtype = s.dtype) => out.push({ name, shape, dtype, init });
  const embed: Init = { mean: 0, std: sc.embed };
  const head: Init = { mean: 0, std: sc.lmHeadGain / Math.sqrt(H) };

  add('model.embed_tokens.weight', [V, H], embed);
  const swiglu = (p: string, inter: number) => {
    add(`${p}.gate_proj.weight`, [inter, H], wIn(H));
    add(`${p}.up_proj.weight`, [inter, H], wIn(H));
    add(`${p}.down_proj.weight`, [H, inter], wOut(inter));
  };
  const layer = (i: number, moe: boolean) => {
    const p = `model.layers.${i}`;
    add(`${p}.input_layernorm.weight`, [H], norm);
    add(`${p}.self_attn.q_proj.weight`, [nh * d, H], wIn(H));
    add(`${p}.self_attn.q_proj.bias`, [nh * d], { mean: 0, std: sc.bias });
    add(`${p}.self_attn.k_proj.weight`, [nkv * d, H], wIn(H));
    add(`${p}.self_attn.k_proj.bias`, [nkv * d], { mean: 0, std: sc.bias });
    add(`${p}.self_attn.v_proj.weight`, [nkv * d, H], wIn(H));
    add(`${p}.self_attn.v_proj.bias`, [nkv * d], { mean: 0, std: sc.bias });
    add(`${p}.self_attn.o_proj.weight`, [H, nh * d], wOut(nh * d));
    if (s.use_qk_norm) {
      add(`${p}.self_attn.q_norm.weight`, [d], norm);
      add(`${p}.self_attn.k_norm.weight`, [d], norm);
    }
    add(`${p}.post_attention_layernorm.weight`, [H], norm);
    if (!moe) {
      swiglu(`${p}.mlp`, s.intermediate_size);
      return;
    }
    add(`${p}.mlp.gate.weight`, [s.n_routed_experts, H], { mean: 0, std: sc.routerGain / Math.sqrt(H) }, 'F32');
    add(`${p}.mlp.gate.e_score_correction_bias`, [s.n_routed_experts], { mean: sc.correctionBiasOffset, std: sc.correctionBias }, 'F32');
    for (let e = 0; e < s.n_routed_experts; e++) swiglu(`${p}.mlp.experts.${e}`, s.moe_intermediate_size);
    if (s.n_shared_experts > 0) swiglu(`${p}.mlp.shared_experts`, s.moe_intermediate_size * s.n_shared_experts);
  };
  for (let i = 0; i < s.num_hidden_layers; i++) layer(i, i >= s.first_k_dense_replace);
  if (s.mtp) {
    const N = s.num_hidden_layers;
    const p = `model.layers.${N}`;
    // The MTP embed/head copies are bit-identical to the main ones (drawn from the same seed name), so
    // engines that reuse the target's embedding/lm_head (SGLang) and ones that load the copies agree.
    add(`${p}.embed_tokens.weight`, [V, H], { ...embed, seedName: 'model.embed_tokens.weight' });
    add(`${p}.enorm.weight`, [H], norm);
    add(`${p}.hnorm.weight`, [H], norm);
    add(`${p}.eh_proj.weight`, [H, 2 * H], wIn(2 * H));
    layer(N, true);
    add(`${p}.shared_head.norm.weight`, [H], norm);
    add(`${p}.shared_head.head.weight`, [V, H], { ...head, seedName: 'lm_head.weight' });
  }
  add('model.norm.weight', [H], norm);
  add('lm_head.weight', [V, H], head);
  return out;
}

/** Number of parameters (elements) the checkpoint holds, MTP layer included when present. */
export function countParameters(s: SyntheticModelSpec): number {
  return planTensors(s).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
}

/**
 * Writes config.json and the weights of a synthetic checkpoint into `dir` (created if missing), and a
 * GLM-style tokenizer (tokenizer.json, tokenizer_config.json with the chat template) when the vocab has
 * room for GLM's 32 added tokens above the 256 byte tokens (lib/synthetic/tokenizer.ts).
 */
export async function writeSyntheticCheckpoint(dir: string, spec: SyntheticModelSpec): Promise<void> {
  validateSpec(spec);
  await mkdir(dir, { recursive: true });
  const plan = planTensors(spec);
  const inits = new Map(plan.map((t) => [t.name, t.init]));
  const descs: TensorDesc[] = plan.map(({ name, dtype, shape }) => ({ name, dtype, shape }));
  await writeCheckpointTensors(
    dir,
    descs,
    (t) => {
      const init = inits.get(t.name)!;
      const n = t.shape.reduce((a, b) => a * b, 1);
      return fillNormal(new Float32Array(n), spec.seed, init.seedName ?? t.name, init.mean, init.std);
    },
    { shards: spec.shards, metadata: { format: 'pt' } },
  );
  await writeFile(path.join(dir, 'config.json'), JSON.stringify(configJson(spec), null, 2) + '\n');
  if (spec.vocab_size >= MIN_SYNTHETIC_TOKENIZER_VOCAB) {
    await writeSyntheticTokenizer(dir, spec.vocab_size, spec.max_position_embeddings);
  }
}
