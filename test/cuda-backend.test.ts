// The CUDA backend end to end without a GPU: build/glm_cuda_backend_tests runs the addon's CUDA backend
// host code with the kernels on the CPU execution harness against the CPU backend (its checks, metrics
// and budgets are in test/cuda_backend/main.cc). This file only provides the checkpoints: the BF16
// 'base' fixture and a BF16 GLM-4.5-like one with group-limited routing, 3 dense-then-MoE layers and
// GQA group 4 (the CUDA backend's expert kernel runs BF16 experts with hidden/inter multiples of 32,
// which the F32/F16/odd-size fixtures are not), that group-routed fixture quantized to FP8
// per-channel, FP8 128x128 blocks and MXFP4 experts (lib/quantize.ts), a quantized checkpoint the
// CUDA backend must refuse with a typed error (MXFP4 experts of hidden size 48: not a multiple of 32),
// and a dense (no MoE) BF16 model with GQA group 4 and
// qk-norm: its 16-row steps have 64 queries per kv head, so they run the tensor-core flash attention
// (attention_prefill_mma), and with no router there is no expert near-tie for bf16 rounding to flip
// (the 'base' fixture's 16-row steps keep the fp32 attention: see cuda/README.md).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrateTokens } from '../lib/calibrate.js';
import { renderChatTokens } from '../lib/chat-template.js';
import { Tokenizer } from '../lib/tokenizer.js';
import { quantizeCheckpoint } from '../lib/quantize.js';
import { promptTokens } from './helpers/prompt.js';
import { makeSpec, TINY_DEFAULT_SPEC, writeSyntheticCheckpoint } from '../lib/synthetic/checkpoint.js';
import { ensureFixture, REPO_ROOT } from './fixtures/variants.js';

const binary = ['build/glm_cuda_backend_tests', 'build/Release/glm_cuda_backend_tests']
  .map((p) => path.join(REPO_ROOT, p))
  .find((p) => existsSync(p));

const DEFAULT_MODEL_DIR = path.join(REPO_ROOT, 'models', 'tiny-default');

describe('CUDA backend on the harness vs the CPU backend', () => {
  let tmp: string;
  let dirs: string[];
  let mtpPrompt: number[];
  beforeAll(async () => {
    const tok = await Tokenizer.fromDir(DEFAULT_MODEL_DIR);
    mtpPrompt = Array.from(renderChatTokens(tok, tok.chatTemplate!, [{ role: 'user', content: 'What is 487 + 356?' }],
      { addGenerationPrompt: true }).tokens);
    tmp = await mkdtemp(path.join(os.tmpdir(), 'glm-cuda-e2e-'));
    const grouped = path.join(tmp, 'bf16-groups');
    await writeSyntheticCheckpoint(grouped, makeSpec(TINY_DEFAULT_SPEC, {
      seed: 606, vocab_size: 256, max_position_embeddings: 2048, hidden_size: 64, num_hidden_layers: 3,
      first_k_dense_replace: 1, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 16, n_routed_experts: 16,
      num_experts_per_tok: 4, n_group: 4, topk_group: 2, moe_intermediate_size: 32, intermediate_size: 96,
      use_qk_norm: false, norm_topk_prob: false, routed_scaling_factor: 1.0, mtp: false, dtype: 'BF16',
    }));
    // The CUDA-graph checks' model: the smallest shape the expert kernel takes (hidden and inter 32),
    // one dense and one MoE layer, so ~60 harness decode steps per backend instance stay around a minute.
    const tiny = path.join(tmp, 'graph-tiny');
    await writeSyntheticCheckpoint(tiny, makeSpec(TINY_DEFAULT_SPEC, {
      seed: 707, vocab_size: 128, max_position_embeddings: 512, hidden_size: 32, num_hidden_layers: 2,
      first_k_dense_replace: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, n_routed_experts: 8,
      num_experts_per_tok: 2, n_group: 2, topk_group: 1, moe_intermediate_size: 32, intermediate_size: 64,
      use_qk_norm: true, norm_topk_prob: true, routed_scaling_factor: 1.5, mtp: false, dtype: 'BF16',
    }));
    const dense = path.join(tmp, 'bf16-dense');
    await writeSyntheticCheckpoint(dense, makeSpec(TINY_DEFAULT_SPEC, {
      seed: 707, vocab_size: 256, max_position_embeddings: 2048, hidden_size: 64, num_hidden_layers: 3,
      first_k_dense_replace: 3, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 16,
      intermediate_size: 96, use_qk_norm: true, mtp: false, dtype: 'BF16',
    }));
    const quant: string[] = [];
    for (const to of ['fp8', 'fp8-block', 'mxfp4'] as const) {
      const out = path.join(tmp, `groups-${to}`);
      await quantizeCheckpoint(grouped, out, { to });
      quant.push(out);
    }
    // Calibrated copies (activation statistics and GPTQ feedback from 16 random 48-token sequences):
    // the same format checks and budgets apply, whatever chose the scales.
    const calibration = await calibrateTokens(grouped, Array.from({ length: 16 }, (_, i) => Int32Array.from(promptTokens(900 + i, 48, 256))), { threads: 2 });
    for (const to of ['fp8', 'fp8-block', 'mxfp4'] as const) {
      const out = path.join(tmp, `groups-${to}-calibrated`);
      await quantizeCheckpoint(grouped, out, { to, calibration });
      quant.push(out);
    }
    const refused = path.join(tmp, 'groups48-mxfp4');
    await quantizeCheckpoint(await ensureFixture('groups'), refused, { to: 'mxfp4' });
    // (fixture order matters: see the runs below)
    dirs = [await ensureFixture('base'), grouped, ...quant.slice(0, 3), refused, dense, tiny, ...quant.slice(3)];
  }, 120_000);
  afterAll(async () => {
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  // Runs in parallel (the harness is single-threaded): 'base' through the bf16 tensor-core path
  // (16-row steps, budget 2e-2 with the routing-flip allowance) plus the memory/fault paths, the
  // group-routed model through the exact fp32 path (4-row steps, budget 1e-4), and the dense model
  // through the bf16 path with the flash attention (16-row steps, budget 2e-2): on the harness each
  // step costs seconds, hence the short prompts; plus the CUDA-graph checks. (--prompt 300 crosses a KV page; run by hand or on a GPU.)
  it('prefill, decode and a mixed batch match within budget; memory and fault paths are typed errors', async () => {
    expect(binary, 'glm_cuda_backend_tests not built (npm run build:native)').toBeDefined();
    const run = (args: string[]) => new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(binary!, args);
      let out = '';
      child.stdout.on('data', (d) => { out += d; });
      child.stderr.on('data', (d) => { out += d; });
      child.on('close', (code) => resolve({ code, out }));
    });
    // Quantized: the fp32 path (4-row steps: weight-only GEMVs, budget 1e-4) and the tensor-core
    // prefill path (16-row steps over a 24-token prompt: quantized weight tiles widened to bf16, 2e-2).
    const results = await Promise.all([
      run(['--step-rows', '16', '--prompt', '40', dirs[0]]),
      run(['--step-rows', '4', '--prompt', '8', '--no-failure-paths', dirs[1], dirs[2], '--expect-unsupported', dirs[5]]),
      run(['--step-rows', '4', '--prompt', '8', '--no-failure-paths', dirs[3], dirs[4]]),
      run(['--step-rows', '16', '--prompt', '24', '--no-failure-paths', dirs[2], dirs[3], dirs[4]]),
      // Calibrated FP8, FP8 blocks and MXFP4 (the fp32 path, 1e-4).
      run(['--step-rows', '4', '--prompt', '8', '--no-failure-paths', dirs[8], dirs[9], dirs[10]]),
      run(['--step-rows', '16', '--prompt', '40', '--no-failure-paths', dirs[6]]),
      // CUDA graphs on vs off (bit-identical logits and tokens over 40 decode steps crossing 8-position
      // KV pages, batched sessions, a reset, a batch growing 1..4 and back through the decode buckets'
      // padding rows, device greedy generation) and a capture misuse caught; with an FP8 KV cache, whose
      // row scales the padding rows write too.
      run(['--step-rows', '4', '--graphs-only', '--kv', 'fp8', dirs[7]]),
      // BF16 and FP8 KV caches against the CPU backend storing the same type: the fp32 path (budgets 1e-3
      // and 1e-2) and, with BF16 pages, the flash-attention path (2e-2).
      run(['--step-rows', '4', '--prompt', '8', '--no-failure-paths', '--kv', 'bf16', dirs[1], '--kv', 'fp8', dirs[4]]),
      run(['--step-rows', '16', '--prompt', '40', '--no-failure-paths', '--kv', 'bf16', dirs[6]]),
      // Batch invariance: a request alone vs among 15 others joining, finishing and disposed around it;
      // a MoE model on 4-row steps (fp32 paths, 1e-4) and the dense model on 16-row steps (BF16, 2e-2).
      run(['--step-rows', '4', '--budget', '1e-4', '--batch-invariance', dirs[7], '--step-rows', '16', '--budget', '2e-2', '--batch-invariance', dirs[6]]),
      // The MTP layer on the CUDA backend (speculative decoding) on the trained default model: draft
      // logits at every prompt position vs the CPU backend, greedy tokens with k = 1 and 2 equal to no
      // drafts and to the CPU's; an FP8 KV cache, so the pages' raw rows skip the layer's empty slot 0.
      run(['--step-rows', '4', '--kv', 'fp8', '--mtp-prompt', mtpPrompt.join(','), '--mtp-tokens', '12', '--mtp', DEFAULT_MODEL_DIR]),
    ]);
    for (const r of results) {
      if (r.code !== 0) console.error(r.out);
      expect(r.out).toMatch(/^\d+ passed, 0 failed$/m);
      expect(r.out).not.toMatch(/^FAIL/m);
      expect(r.code).toBe(0);
    }
    expect(results[6].out).toMatch(/bit-identical with graphs on and off/);
    expect(results[7].out).toMatch(/\[kv bf16\].*worst rel L2/);
    expect(results[7].out).toMatch(/\[kv fp8\].*worst rel L2/);
    expect(results[10].out).toMatch(/MTP: 12 greedy tokens identical without drafts, with k=1 \(\d+ of \d+ drafts accepted\)/);
        expect(results[9].out.match(/^ok .*batch invariance: 11 steps alone vs in batches of up to 16 requests/gm)).toHaveLength(2);
  }, 600_000);
});
