// Writes the BF16 checkpoints of the CUDA backend's end-to-end check (test/cuda-backend.test.ts)
// into <out>/base, <out>/bf16-groups, <out>/bf16-dense and <out>/graph-tiny (plus the quantized ones below),
// for scripts/gpu-check.sh (needs `npm run build:ts` first: it
// imports the compiled generator from dist/). Same specs as the test: 'base' is test/fixtures'
// small({ seed: 101 }); 'bf16-groups' is the group-routed model; 'bf16-dense' the dense GQA-4 model
// whose 16-row steps run the flash attention; groups-fp8, groups-fp8-block and groups-mxfp4 are
// bf16-groups quantized by lib/quantize.ts, as the test does.
import path from 'node:path';
import { quantizeCheckpoint } from '../dist/lib/quantize.js';
import { makeSpec, TINY_DEFAULT_SPEC, writeSyntheticCheckpoint } from '../dist/lib/synthetic/checkpoint.js';

const out = process.argv[2];
if (!out) {
  console.error('usage: node scripts/e2e-fixtures.mjs <out dir>');
  process.exit(2);
}
await writeSyntheticCheckpoint(path.join(out, 'base'),
  makeSpec(TINY_DEFAULT_SPEC, { vocab_size: 256, max_position_embeddings: 2048, seed: 101 }));
await writeSyntheticCheckpoint(path.join(out, 'bf16-groups'), makeSpec(TINY_DEFAULT_SPEC, {
  seed: 606, vocab_size: 256, max_position_embeddings: 2048, hidden_size: 64, num_hidden_layers: 3,
  first_k_dense_replace: 1, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 16, n_routed_experts: 16,
  num_experts_per_tok: 4, n_group: 4, topk_group: 2, moe_intermediate_size: 32, intermediate_size: 96,
  use_qk_norm: false, norm_topk_prob: false, routed_scaling_factor: 1.0, mtp: false, dtype: 'BF16',
}));
await writeSyntheticCheckpoint(path.join(out, 'bf16-dense'), makeSpec(TINY_DEFAULT_SPEC, {
  seed: 707, vocab_size: 256, max_position_embeddings: 2048, hidden_size: 64, num_hidden_layers: 3,
  first_k_dense_replace: 3, num_attention_heads: 8, num_key_value_heads: 2, head_dim: 16,
  intermediate_size: 96, use_qk_norm: true, mtp: false, dtype: 'BF16',
}));
for (const to of ['fp8', 'fp8-block', 'mxfp4']) {
  await quantizeCheckpoint(path.join(out, 'bf16-groups'), path.join(out, `groups-${to}`), { to });
}
// The CUDA-graph checks' model (test/cuda-backend.test.ts, --graphs-only).
await writeSyntheticCheckpoint(path.join(out, 'graph-tiny'), makeSpec(TINY_DEFAULT_SPEC, {
  seed: 707, vocab_size: 128, max_position_embeddings: 512, hidden_size: 32, num_hidden_layers: 2,
  first_k_dense_replace: 1, num_attention_heads: 4, num_key_value_heads: 2, head_dim: 8, n_routed_experts: 8,
  num_experts_per_tok: 2, n_group: 2, topk_group: 1, moe_intermediate_size: 32, intermediate_size: 64,
  use_qk_norm: true, norm_topk_prob: true, routed_scaling_factor: 1.5, mtp: false, dtype: 'BF16',
}));
