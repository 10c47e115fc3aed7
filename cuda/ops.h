// Launchers of the CUDA kernels, declared with plain C++ types only so cpp/ builds without nvcc
// (DESIGN.md: one op per cuda/*.cu, kernels first, launcher last). Every launcher checks its inputs
// before launching and returns a Status. A bad argument here is a caller
// bug (Internal); a CUDA error is EngineDead, because a failed launch can leave the context unusable.
//
// All pointers are device pointers. Activations are fp32, row-major and contiguous, like the CPU
// backend's (engine/backend.h), so each kernel is compared with the CPU backend's math.
#pragma once
#include <cstdint>

#include "engine/status.h"

namespace glm::cuda {

// The stream to enqueue on: a cudaStream_t, carried as void* so this header needs no CUDA headers.
struct Stream {
  void* handle = nullptr;
};

enum class TableType { F32, BF16 };

// out[t, :] = float(table[tokens[t], :]) for t < n_tokens (model.embed_tokens). A token id outside
// [0, vocab) writes a NaN row (the engine rejects such ids before the step; NaN makes a slip loud).
Status embedding_gather(Stream stream, float* out, const void* table, TableType table_type, int64_t vocab,
                        int64_t hidden, const int32_t* tokens, int64_t n_tokens);

// out[r] = w * (x[r] * rsqrt(mean(x[r]^2) + eps)) per row of n (out may alias x).
Status rmsnorm(Stream stream, float* out, const float* x, const float* w, int64_t rows, int64_t n, float eps);
// Fused residual add: residual[r] += x[r], then out[r] = RMSNorm(residual[r]) (the pre-norm step of the
// next block). out may alias x; residual must not alias either.
Status add_rmsnorm(Stream stream, float* out, float* residual, const float* x, const float* w, int64_t rows,
                   int64_t n, float eps);

struct QkRopeDims {
  int64_t rows = 0;        // tokens
  int64_t n_q_heads = 0;   // q is [rows, n_q_heads * head_dim]
  int64_t n_kv_heads = 0;  // k is [rows, n_kv_heads * head_dim]
  int64_t head_dim = 0;    // even, <= 256
  int64_t rotary_dim = 0;  // even, <= head_dim: NeoX pairs (i, i + rotary_dim/2) of the leading slice
};
// In place: optional per-head RMSNorm (q_norm_w / k_norm_w both null: no qk-norm, GLM-4.5-Air), then
// partial NeoX RoPE at positions[r]. inv_freq[i] = theta^(-2i/rotary_dim) in double, i < rotary_dim/2;
// the angle pos * inv_freq is formed and its cos/sin taken in double, as the CPU backend does, so large
// positions keep full fp32 accuracy.
Status qk_norm_rope(Stream stream, float* q, float* k, const float* q_norm_w, const float* k_norm_w,
                    const int32_t* positions, const double* inv_freq, QkRopeDims dims, float eps);

// Device KV cache of one layer: a pool of pages, each [K|V][kv_head][position in page][head_dim] elements
// of the pool's type — the head-major page layout of the CPU's KvStorage (cpu/kv_storage.h), so one
// head's keys stream linearly. FP8 pages also have one fp32 scale per (K|V, kv head, position) row in a
// separate array laid out [page][K|V][kv_head][position in page] (kept apart so every element row stays
// as aligned as its byte width allows). Pages are addressed through per-sequence page tables (int32
// page ids) and appended to through slots: slot = page_id * page_tokens + position % page_tokens.
//
// Element types (engine/kv_format.h, the CPU backend's rules exactly):
//   F32   the forward pass's values.
//   BF16  round to nearest even (NaN kept quiet).
//   FP8   OCP E4M3 codes with one fp32 scale per row: scale = max|row| / 448, code = e4m3_rn(x / scale)
//         (x times the fp32 reciprocal, as the CPU), value = float(code) * scale. A zero row stores scale
//         0; a row with an infinity stores the unscaled codes (saturated) and scale 1; NaN -> code 0x7f.
// Every reader decodes a row to fp32 value = float(code) * scale (bf16: exact widening), so each kernel
// computes what it computes for an F32 pool holding the decoded values.
enum class KvElem { F32, BF16, FP8 };
struct KvLayout {
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;     // multiple of 4: element rows are 4-byte multiples for every type
  int64_t page_tokens = 0;  // positions per page (the engine's kvPageTokens, 1..256)
  int64_t n_pages = 0;      // pages in the pool
  KvElem type = KvElem::F32;
  int64_t elem_bytes() const { return type == KvElem::F32 ? 4 : type == KvElem::BF16 ? 2 : 1; }
  int64_t row_bytes() const { return head_dim * elem_bytes(); }
  int64_t page_bytes() const { return 2 * n_kv_heads * page_tokens * row_bytes(); }  // elements of one page
  int64_t page_scales() const { return type == KvElem::FP8 ? 2 * n_kv_heads * page_tokens : 0; }  // fp32 scales of one page
  int64_t page_floats() const { return 2 * n_kv_heads * page_tokens * head_dim; }  // (F32 pools)
};

// Writes k[r], v[r] ([rows, n_kv_heads * head_dim] fp32) at slots[r] of the pool, converted to its type
// (scales: the FP8 scale array, null for F32 / BF16); a negative slot skips the row (padding), as does a
// slot past the pool (the host plan owns slot validity). FP8 and BF16 bit-identical to KvStorage::write.
Status kv_append(Stream stream, void* pool, float* scales, const KvLayout& layout, const float* k, const float* v,
                 const int32_t* slots, int64_t rows);

// Copies positions [0, n) of page src to page dst in each of n_layers consecutive layer pools (elements
// and FP8 scales; layer l's pool starts l * n_pages pages after `pool`, its scales likewise) — the
// copy-on-write of a shared prefix page, one launch instead of a copy per layer, K|V and head.
Status kv_copy_page(Stream stream, void* pool, float* scales, const KvLayout& layout, int64_t n_layers, int32_t src,
                    int32_t dst, int64_t n);

struct DecodeAttentionArgs {
  int64_t batch = 0;          // sequences, one query token each
  int64_t n_heads = 0;        // query heads; a multiple of n_kv_heads, group n_heads/n_kv_heads <= 16
  int64_t pages_per_seq = 0;  // row stride of page_table
  int64_t max_len = 0;        // >= every seq_lens[b]; sizes the split of the sequence (may be the
                              // capacity pages_per_seq * page_tokens: launch parameters then do not
                              // depend on the lengths; chunks past a sequence's end cost an early exit)
  int64_t n_splits = 1;       // sequence chunks computed by separate blocks, combined exactly
  float scale = 0;            // softmax scale (1/sqrt(head_dim))
  int64_t first_key = 0;      // keys at positions below it are skipped (the MTP layer's slot 0 holds no pair)
};
// Decode attention: out[b, h] = softmax(q[b,h] · K[b]^T * scale) V[b] over the first seq_lens[b]
// cached positions of sequence b (its new token already appended). q and out: [batch, n_heads*head_dim].
// Each block handles one (sequence, kv head, chunk) and all the query heads sharing that kv head, so
// each K/V row is loaded once per group; a second kernel merges the chunks' partial softmaxes exactly.
// pool / scales: the layer's pages and (FP8) their scales, in layout.type.
Status attention_decode(Stream stream, float* out, const float* q, const void* pool, const float* scales,
                        const KvLayout& layout, const int32_t* page_table, const int32_t* seq_lens, const DecodeAttentionArgs& args,
                        float* workspace, int64_t workspace_floats);
// Floats of workspace attention_decode needs.
int64_t attention_decode_workspace_floats(const KvLayout& layout, const DecodeAttentionArgs& args);

struct PrefillAttentionArgs {
  int64_t rows = 0;           // query rows of the step (any mix of sequences; best grouped by sequence)
  int64_t n_heads = 0;        // a multiple of n_kv_heads, group <= 16
  int64_t pages_per_seq = 0;  // row stride of page_table
  float scale = 0;            // softmax scale
  int64_t first_key = 0;      // keys at positions below it are skipped (attention_prefill only; a row
                              // with no key left gets zeros). attention_prefill_mma takes only 0.
};
// Causal attention for a step's rows: out[r, h] = softmax(q[r,h] · K[s]^T * scale) V[s] over positions
// 0..row_pos[r] of sequence s = row_seq[r] (its keys already appended; row_seq < the page table's rows,
// row_pos < pages_per_seq * page_tokens; a negative row_pos is a padding row and gets zeros). q, out:
// [rows, n_heads * head_dim]. The same math as attention_decode (a decode token is a row at its
// position), tiled over the rows of a sequence and the query heads of a kv head so K/V tiles are shared.
Status attention_prefill(Stream stream, float* out, const float* q, const void* pool, const float* scales,
                         const KvLayout& layout, const int32_t* page_table, const int32_t* row_seq, const int32_t* row_pos,
                         const PrefillAttentionArgs& args);

// The same contract on tensor cores (flash attention): Q, K, V and the softmax probabilities rounded to
// bf16 for mma.sync m16n8k16, online softmax in fp32 with exact rescaling, all query heads of a kv
// group and several rows sharing each K/V tile. head_dim 16, 32, 64 or 128 (attention_prefill_mma_supports);
// q 16-byte aligned. Numerics: ~1e-3 relative vs the fp32 kernel (test_attention_prefill_mma.cc).
bool attention_prefill_mma_supports(int64_t head_dim);
Status attention_prefill_mma(Stream stream, float* out, const float* q, const void* pool, const float* scales,
                             const KvLayout& layout, const int32_t* page_table, const int32_t* row_seq, const int32_t* row_pos,
                             const PrefillAttentionArgs& args);

// Greedy selection: tokens[r] = argmax of logits[r, :vocab], ties to the lowest id, NaN never wins, -1
// when every value is NaN (engine/sampler.cc argmax_token).
Status argmax_tokens(Stream stream, int32_t* tokens, const float* logits, int64_t rows, int64_t vocab);

// Speculative decoding's verification (engine/speculation.h accepted_drafts) for `requests` requests:
// request r's verification rows are [row_begin[r], row_begin[r] + n_drafts[r]]; chosen[row] is the
// target's token at each row (argmax_tokens / sample_tokens; -1 where selection failed) and
// drafts[row_begin[r] + i] the draft fed after row i (i < n_drafts[r]). Writes accepted[r] (drafts
// accepted) and next[r] = chosen[row_begin[r] + accepted[r]] (the correction, or the bonus token).
Status verify_drafts(Stream stream, int32_t* accepted, int32_t* next, const int32_t* chosen, const int32_t* drafts,
                     const int32_t* row_begin, const int32_t* n_drafts, int64_t requests);
// Sampled selection (cuda/sample_tokens.cu): engine/sampler.cc's choose_token after penalize_logit, per row.
struct SampleParams {
  double temperature = 0;         // 0 = greedy (argmax_tokens' rule on the penalised logits)
  double top_p = 1;               // 1 = off
  double min_p = 0;               // 0 = off
  double u = 0;                   // uniform in [0, 1) from the host sampler's generator (Sampler::draw_uniform)
  double repetition_penalty = 1;  // 1 = off
  double presence_penalty = 0;
  double frequency_penalty = 0;
  int64_t top_k = 0;              // 0 = off
  int32_t history_begin = 0;      // this row's pairs in `history`: [history_begin, history_begin + history_count)
  int32_t history_count = 0;
  int32_t top_logprobs = -1;      // -1: no logprobs for this row; n >= 0: the chosen token's + the n best
  // Constrained decoding: the row's allowed-token bitset (bit id % 32 of word id / 32, ceil(vocab / 32)
  // words) starts at int32 index mask_begin of `history`; -1: every token allowed. Disallowed logits
  // count as NaN (engine/sampler.cc apply_token_mask); logprobs stay those of the raw logits.
  int32_t mask_begin = -1;
};
// Log-probabilities (engine/sampler.cc compute_logprobs: log-softmax of the raw logits, NaN excluded),
// written for rows with top_logprobs >= 0: chosen[r], and min(top_logprobs, top_stride) best at
// top_ids / top_logprobs [r * top_stride + j] (best first, ties to the lower id; id -1 and NaN past the
// row's non-NaN logits). top_stride <= 32. chosen[r] is NaN where the token is -1.
struct SampleLogprobs {
  float* chosen = nullptr;
  int32_t* top_ids = nullptr;
  float* top_logprobs = nullptr;
  int64_t top_stride = 0;
};
// tokens[r] = the token the CPU sampler chooses from logits[r, :vocab] with params[r] (device array) and the
// same u; -1 where it reports Numerical (every logit NaN, or no finite candidate). history: device int32
// pairs (token id, generated count; 0 = prompt only), each token at most once per row (Sampler::history);
// may be null when no row has history. workspace: rows * vocab floats (the penalised copy of a row with
// penalties; the logits are not modified). Agrees with the CPU up to fp32 probabilities and summation
// order at a boundary (the file header).
Status sample_tokens(Stream stream, int32_t* tokens, const float* logits, int64_t rows, int64_t vocab,
                     const SampleParams* params, const int32_t* history, float* workspace,
                     const SampleLogprobs* logprobs = nullptr);
// out[i] = silu(gate[i]) * up[i], fp32 (out may alias gate or up).
Status silu_mul(Stream stream, float* out, const float* gate, const float* up, int64_t n);
// y[i] += x[i], fp32.
Status add_inplace(Stream stream, float* y, const float* x, int64_t n);
// out[r, :] = x[index[r], :] ([rows, cols] fp32); a negative index writes zeros.
Status gather_rows(Stream stream, float* out, const float* x, const int32_t* index, int64_t rows, int64_t cols);
// out[r] = [a[r], b[r]]: rows of a_cols then b_cols floats side by side (the MTP layer's eh_proj input).
Status concat_cols(Stream stream, float* out, const float* a, const float* b, int64_t rows, int64_t a_cols, int64_t b_cols);

// ---------------------------------------------------------------------------------------------
// Dense projections (issue 5): y[m, n] (= or +=) sum_k x[m, k] * W[n, k] (+ bias[n]), W [n, k] row-major
// as stored in safetensors (nn.Linear), x and y fp32 row-major.
// ---------------------------------------------------------------------------------------------
enum class WeightType { F32, BF16, F16 };
struct LinearWeight {
  const void* data = nullptr;    // [n, k]; 16-byte aligned, k a multiple of 8 (BF16/F16) or 4 (F32)
  const float* bias = nullptr;   // [n] or null
  WeightType type = WeightType::BF16;
  int64_t n = 0, k = 0;
};
struct LinearArgs {
  int64_t m = 0;               // rows of x / y
  bool accumulate = false;     // y += x W^T (+ bias) instead of y = ...
  // Keep x in fp32 for any m (the CUDA-core kernel instead of bf16 tensor cores): the router, whose
  // logits the CPU backend computes in fp32 and whose top-k must not flip on a bf16 rounding.
  bool fp32_activations = false;
};
// Decode GEMV, 1 <= m <= kLinearGemvMaxRows: fp32 x, weights widened exactly, fp32 sums.
constexpr int64_t kLinearGemvMaxRows = 4;
Status linear_gemv(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args);
// GEMM for any m. BF16 weights: x rounded to bf16 (RNE) and mma.sync m16n8k16 bf16, fp32 accumulation.
// F32 and F16 weights (and fp32_activations): a CUDA-core tiled kernel in fp32, x unrounded.
Status linear_gemm(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args);
// Hopper fast path of linear_gemm's BF16 path (wgmma, sm_90a), same contract (x rounded to bf16, BF16
// weights only, not fp32_activations); UnsupportedFormat where the build or device lacks sm_90a (always
// so on the harness). Verified only on a GPU (scripts/gpu-check.sh compares it with linear_gemm); the
// CUDA backend uses it only after its load-time self-test agrees with linear_gemm.
bool linear_gemm_sm90_available();
Status linear_gemm_sm90(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args);
// The GEMV for m <= kLinearGemvMaxRows, the GEMM otherwise.
Status linear(Stream stream, float* y, const float* x, const LinearWeight& w, const LinearArgs& args);

// MoE router (CpuBackend::route on device): logits [n_tokens, n_experts] fp32 (from linear with
// fp32_activations) -> expert_ids [n_tokens, top_k] (in pick order) and expert_weights [n_tokens, top_k].
// sigmoid in fp32; correction_bias [n_experts] (or null: zeros) steers selection only; n_group > 1:
// group-limited selection (group score = sum of its two best biased scores, experts outside the best
// topk_group groups compete with choice 0.0); ties go to the lowest index; weights are the unbiased
// scores, renormalised (norm_topk_prob: / (sum + 1e-20), summed in double) and scaled. Matches the CPU
// bit for bit given a finite correction bias. n_experts <= 1024.
struct MoeRouteArgs {
  int64_t n_tokens = 0, n_experts = 0, top_k = 0;
  int64_t n_group = 1, topk_group = 1;
  bool norm_topk_prob = true;
  double routed_scaling_factor = 1.0;
};
Status moe_route(Stream stream, int32_t* expert_ids, float* expert_weights, const float* logits,
                 const float* correction_bias, const MoeRouteArgs& args);

// ---------------------------------------------------------------------------------------------
// Quantized matrix products (issue 6; formats: spec §5, §10). y[m, n] = sum_k x[m, k] * W[n, k]
// (W stored [out, in], like nn.Linear), x and y fp32 row-major.
// ---------------------------------------------------------------------------------------------

// MXFP4 weight [n, k]: blocks [n, k/32, 16] bytes (E2M1, element 2j in the low nibble of byte j),
// scales [n, k/32] E8M0 (0xFF = NaN, propagated). k a multiple of 32; blocks 16-byte aligned.
struct Mxfp4Weight {
  const uint8_t* blocks = nullptr;
  const uint8_t* scales = nullptr;
  int64_t n = 0, k = 0;
};
// Decode GEMV, 1 <= m <= kMxfp4GemvMaxRows: fp32 x, weights dequantized in registers (exact), fp32 sums.
constexpr int64_t kMxfp4GemvMaxRows = 4;
Status mxfp4_gemv(Stream stream, float* y, const float* x, const Mxfp4Weight& w, int64_t m);
// GEMM for any m: x rounded to bf16 and weights dequantized (exactly) to bf16 in shared memory, then
// mma.sync bf16 with fp32 accumulation.
Status mxfp4_gemm(Stream stream, float* y, const float* x, const Mxfp4Weight& w, int64_t m);
// Picks the GEMV for m <= kMxfp4GemvMaxRows, the GEMM otherwise.
Status mxfp4_matmul(Stream stream, float* y, const float* x, const Mxfp4Weight& w, int64_t m);

// Dynamic FP8 E4M3 activation quantization: per row and per group of `group` columns (group = k: one
// scale per token, compressed-tensors "token"; group = 128: DeepSeek's 1x128 act_quant).
//   s = amax / 448 (fp32), q = e4m3_rn_satfinite(x / s); an all-zero group gets s = 0 and q = 0.
// xq [m, k] bytes, scales [m, ceil(k/group)] fp32.
Status fp8_quantize_activations(Stream stream, uint8_t* xq, float* scales, const float* x, int64_t m, int64_t k,
                                int64_t group);

// FP8 E4M3 weight [n, k] (k a multiple of 16, data 16-byte aligned) with either
//   PerChannel: scales [n] (compressed-tensors weight_scale, W ~ W_q * s[n]); activations quantized
//               per token (x_scales [m]); y = (x_q . W_q) * s_x[m] * s_w[n] (epilogue scaling);
//   Block128:   scales [ceil(n/128), ceil(k/128)] (DeepSeek weight_scale_inv); activations per token
//               and 128 columns (x_scales [m, ceil(k/128)]); each 128-wide K block's fp32 partial is
//               scaled by s_x[m, kb] * s_w[n/128, kb] and added (fp32 promotion per K block).
enum class Fp8Scaling { PerChannel, Block128 };
struct Fp8Weight {
  const uint8_t* data = nullptr;
  const float* scales = nullptr;
  int64_t n = 0, k = 0;
  Fp8Scaling scaling = Fp8Scaling::PerChannel;
};
// Portable path (mma.sync m16n8k32 e4m3 on sm_89+, the same fragments through bf16 mma on sm_80).
Status fp8_gemm(Stream stream, float* y, const uint8_t* xq, const float* x_scales, const Fp8Weight& w, int64_t m);
// Hopper fast path (wgmma, sm_90a), same contract; an error where the build or device lacks sm_90a
// (UnsupportedFormat; always so on the harness). Verified only on a GPU (scripts/gpu-check.sh compares it with fp8_gemm).
bool fp8_gemm_sm90_available();
Status fp8_gemm_sm90(Stream stream, float* y, const uint8_t* xq, const float* x_scales, const Fp8Weight& w, int64_t m);

// FP8 dense projections, weight-only (x stays fp32 in the GEMV; CPU backend numerics):
// y[m, n] (=|+=) x W^T (+ bias[n]), W = e4m3 * scale (PerChannel or Block128 as above), k a multiple of 16.
// Decode GEMV, 1 <= m <= kFp8GemvMaxRows: weights widened exactly, PerChannel scale applied to the row's
// fp32 sum, Block128 weights formed as fp32 e4m3 * s before the fma (the CPU's rounding); fp32 sums.
constexpr int64_t kFp8GemvMaxRows = 4;
Status fp8_gemv(Stream stream, float* y, const float* x, const Fp8Weight& w, const float* bias, int64_t m, bool accumulate);
// Prefill GEMM, any m: weight tiles widened to bf16 in shared memory (exact), x rounded to bf16 (PerChannel:
// the row scale in the epilogue; Block128: the tile's scale folded into x, bf16(x * s)), mma.sync bf16 with
// fp32 accumulation.
Status fp8_dequant_gemm(Stream stream, float* y, const float* x, const Fp8Weight& w, const float* bias, int64_t m,
                        bool accumulate);
// The GEMV for m <= kFp8GemvMaxRows, the GEMM otherwise.
Status fp8_linear(Stream stream, float* y, const float* x, const Fp8Weight& w, const float* bias, int64_t m, bool accumulate);

// Fused routed-expert MLP for decode: y[t] = sum_k w[t,k] * down_e(silu(gate_e x[t]) * up_e x[t]) with
// e = expert_ids[t, k] (an id outside [0, n_experts) contributes nothing) and w = expert_weights[t, k]
// (already normalised and scaled by the router). x, y: [n_tokens, hidden] fp32; y is overwritten.
// Expert weights stacked per expert like the checkpoint's per-expert tensors: gate/up [E, inter, hidden],
// down [E, hidden, inter]. hidden and inter multiples of 32. workspace: n_tokens * top_k * inter floats.
struct MoeDecodeArgs {
  int64_t n_tokens = 0, hidden = 0, inter = 0, n_experts = 0, top_k = 0;
};
int64_t moe_experts_decode_workspace_floats(const MoeDecodeArgs& args);
// MXFP4 experts: *_blocks [E, rows, cols/32, 16], *_scales [E, rows, cols/32].
struct Mxfp4Experts {
  const uint8_t *gate_blocks = nullptr, *gate_scales = nullptr, *up_blocks = nullptr, *up_scales = nullptr;
  const uint8_t *down_blocks = nullptr, *down_scales = nullptr;
};
Status moe_experts_decode_mxfp4(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                                const Mxfp4Experts& w, const MoeDecodeArgs& args, float* workspace, int64_t workspace_floats);
// FP8 experts (weight-only in this decode path: x stays fp32): gate/up/down E4M3 with scales per row
// [E, rows] (PerChannel) or per 128x128 block [E, ceil(rows/128), ceil(cols/128)] (Block128).
struct Fp8Experts {
  const uint8_t *gate = nullptr, *up = nullptr, *down = nullptr;
  const float *gate_scales = nullptr, *up_scales = nullptr, *down_scales = nullptr;
  Fp8Scaling scaling = Fp8Scaling::PerChannel;
};
Status moe_experts_decode_fp8(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                              const Fp8Experts& w, const MoeDecodeArgs& args, float* workspace, int64_t workspace_floats);

// ---------------------------------------------------------------------------------------------
// BF16 routed experts (issue 5). Weights stacked per expert: gate/up [E, inter, hidden], down
// [E, hidden, inter], bf16, 16-byte aligned.
// ---------------------------------------------------------------------------------------------
struct Bf16Experts {
  const uint16_t *gate = nullptr, *up = nullptr, *down = nullptr;
};
// Decode path (the MoeDecodeArgs contract above; fp32 x, weights widened exactly, fp32 sums).
Status moe_experts_decode_bf16(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                               const Bf16Experts& w, const MoeDecodeArgs& args, float* workspace, int64_t workspace_floats);

// Token grouping for the prefill expert GEMMs (moe_align.cu): over the n_tokens * top_k (token, pick)
// pairs, counts[E], offsets[E + 1], tile_offsets[E + 1] (kMoeTileRows-row tiles per expert, cumulative),
// slot_pair[pairs] (pairs sorted by expert, stable), pair_slot[pairs] (inverse; -1 for an id outside
// [0, E)). Deterministic. n_experts <= 1024.
constexpr int64_t kMoeTileRows = 64;
struct MoeAlignOut {
  int32_t *counts = nullptr, *offsets = nullptr, *tile_offsets = nullptr, *slot_pair = nullptr, *pair_slot = nullptr;
};
Status moe_align(Stream stream, const MoeAlignOut& out, const int32_t* expert_ids, int64_t n_tokens, int64_t top_k,
                 int64_t n_experts);

// Routed-expert MLP for BF16 experts, any n_tokens: y[t] = sum_k w[t,k] * down_e(silu(gate_e x_t) * up_e x_t)
// (y overwritten). n_tokens <= kMoeDecodeMaxTokens: the decode path. Otherwise tokens are grouped by
// expert (moe_align) and run through tensor-core GEMMs: gate+up with SiLU*mul fused (x rounded to bf16,
// the activation stored as bf16), down with the routing weight applied per row, then a per-token combine
// in pick order (deterministic, no atomics). hidden and inter multiples of 32, n_experts <= 1024.
constexpr int64_t kMoeDecodeMaxTokens = 4;
int64_t moe_experts_bf16_workspace_bytes(const MoeDecodeArgs& args);
Status moe_experts_bf16(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                        const Bf16Experts& w, const MoeDecodeArgs& args, void* workspace, int64_t workspace_bytes);

// The same for quantized experts (any n_tokens): the decode kernels above for n_tokens <= 4, else the
// grouped tensor-core path with each weight tile widened to bf16 in shared memory, exactly (FP8 scales go
// on the fp32 accumulators: per row in the epilogue, per 128-column block by rescaling). Workspace:
// moe_experts_bf16_workspace_bytes.
Status moe_experts_fp8(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                       const Fp8Experts& w, const MoeDecodeArgs& args, void* workspace, int64_t workspace_bytes);
Status moe_experts_mxfp4(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                         const Mxfp4Experts& w, const MoeDecodeArgs& args, void* workspace, int64_t workspace_bytes);

}  // namespace glm::cuda
