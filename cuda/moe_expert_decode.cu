// Fused routed-expert MLP for decode (issue 6): for each token t and each of its top_k experts e_k
// with routing weight w_k,
//   y[t] = sum_k w_k * down_e(silu(gate_e x_t) * up_e x_t)
// with MXFP4 or FP8 expert weights, dequantized in registers (no bf16 copy) and fp32 activations.
// Two launches: (1) gate+up for every (token, expert) pair, SiLU*mul in the epilogue, into a small
// workspace act[t, k, inter]; (2) down for every token, all its experts summed in registers with
// their routing weights (deterministic: no atomics). Both are GEMVs in the style of mxfp4_gemv: 4
// warps per block, 2 output rows per warp, 16 bytes of weights per lane per load, the vector staged in
// shared memory padded to 36 floats per 32 (conflict-free 16-byte reads).
//
// FP8 here is weight-only (W8A16): x stays fp32 instead of the per-token E4M3 the W8A8 GEMM uses,
// which is more accurate and free in a memory-bound GEMV. FP8 weight NaN codes are not propagated
// (fp8x4_to_float); the loader rejects non-finite scales.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kWarps = 4, kThreads = kWarps * 32, kRowsPerWarp = 2, kRowsPerBlock = kWarps * kRowsPerWarp;
constexpr int kXStride = 36;

GLM_DEVICE const float* staged(const float* xs, int elem) { return xs + (elem >> 5) * kXStride + (elem & 31); }

// MXFP4 rows: chunk = one 32-element block.
struct Mx4Src {
  const uint8_t* blocks;
  const uint8_t* scales;
  int rows, cols;  // per expert
  static constexpr int kChunk = 32;
  GLM_DEVICE float chunk(int e, int row, int c, const float* xs) const {
    const int nb = cols / 32;
    const int64_t i = (int64_t(e) * rows + row) * nb + c;
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(blocks + i * 16));
    const float s = dev::e8m0_to_float(__ldg(scales + i));
    const float* xb = xs + c * kXStride;
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      uint32_t v[4];
      dev::mxfp4_word_to_bf16x2(words[j], v);
      const float4 lo = *reinterpret_cast<const float4*>(xb + 8 * j), hi = *reinterpret_cast<const float4*>(xb + 8 * j + 4);
      sum = fmaf(dev::bf16x2_lo(v[0]), lo.x, sum);
      sum = fmaf(dev::bf16x2_hi(v[0]), lo.y, sum);
      sum = fmaf(dev::bf16x2_lo(v[1]), lo.z, sum);
      sum = fmaf(dev::bf16x2_hi(v[1]), lo.w, sum);
      sum = fmaf(dev::bf16x2_lo(v[2]), hi.x, sum);
      sum = fmaf(dev::bf16x2_hi(v[2]), hi.y, sum);
      sum = fmaf(dev::bf16x2_lo(v[3]), hi.z, sum);
      sum = fmaf(dev::bf16x2_hi(v[3]), hi.w, sum);
    }
    return sum * s;
  }
};

// FP8 rows: chunk = 16 elements (16 bytes); the scale is per row (PerChannel) or per 128x128 block.
struct Fp8Src {
  const uint8_t* data;
  const float* scales;
  int rows, cols;
  bool block;
  static constexpr int kChunk = 16;
  GLM_DEVICE float chunk(int e, int row, int c, const float* xs) const {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(data + (int64_t(e) * rows + row) * cols + 16 * c));
    float s;
    if (block) {
      const int rb = (rows + 127) / 128, cb = (cols + 127) / 128;
      s = __ldg(scales + (int64_t(e) * rb + row / 128) * cb + (16 * c) / 128);
    } else {
      s = __ldg(scales + int64_t(e) * rows + row);
    }
    const float* xb = staged(xs, 16 * c);  // 16 consecutive floats inside one padded 32-block
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
    float sum = 0.0f;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      float w[4];
      dev::fp8x4_to_float(words[j], w);
      const float4 xv = *reinterpret_cast<const float4*>(xb + 4 * j);
      sum = fmaf(w[0], xv.x, sum);
      sum = fmaf(w[1], xv.y, sum);
      sum = fmaf(w[2], xv.z, sum);
      sum = fmaf(w[3], xv.w, sum);
    }
    return sum * s;
  }
};

// BF16 rows (issue 5): chunk = 8 elements (16 bytes), widened exactly; x stays fp32.
struct Bf16Src {
  const uint16_t* data;
  int rows, cols;
  static constexpr int kChunk = 8;
  GLM_DEVICE float chunk(int e, int row, int c, const float* xs) const {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(data + (int64_t(e) * rows + row) * cols + 8 * c));
    const float* xb = staged(xs, 8 * c);  // 8 consecutive floats inside one padded 32-block
    const float4 lo = *reinterpret_cast<const float4*>(xb), hi = *reinterpret_cast<const float4*>(xb + 4);
    float sum = 0.0f;
    sum = fmaf(dev::bf16x2_lo(q.x), lo.x, sum);
    sum = fmaf(dev::bf16x2_hi(q.x), lo.y, sum);
    sum = fmaf(dev::bf16x2_lo(q.y), lo.z, sum);
    sum = fmaf(dev::bf16x2_hi(q.y), lo.w, sum);
    sum = fmaf(dev::bf16x2_lo(q.z), hi.x, sum);
    sum = fmaf(dev::bf16x2_hi(q.z), hi.y, sum);
    sum = fmaf(dev::bf16x2_lo(q.w), hi.z, sum);
    sum = fmaf(dev::bf16x2_hi(q.w), hi.w, sum);
    return sum;
  }
};

GLM_DEVICE void stage(float* xs, const float* x, int n, int tid) {
  for (int i = tid; i < n / 4; i += kThreads) {
    const float4 v = __ldg(reinterpret_cast<const float4*>(x) + i);
    *reinterpret_cast<float4*>(xs + (i >> 3) * kXStride + 4 * (i & 7)) = v;
  }
}

// ptxas: hot expert_gate_up_kernel
template <class Src>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) expert_gate_up_kernel(float* act, const float* x, const int32_t* ids, Src gate,
                                                                 Src up, int n_experts, int top_k) {
  GLM_DYNAMIC_SHARED(float, xs);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int t = int(blockIdx.z), kk = int(blockIdx.y);
  const int hidden = gate.cols, inter = gate.rows;
  stage(xs, x + int64_t(t) * hidden, hidden, tid);
  __syncthreads();
  const int row0 = int(blockIdx.x) * kRowsPerBlock + warp * kRowsPerWarp;
  if (row0 >= inter) return;
  const int e = ids[t * top_k + kk];
  const bool valid = e >= 0 && e < n_experts;
  const int chunks = hidden / Src::kChunk;
  float g[kRowsPerWarp] = {}, u[kRowsPerWarp] = {};
  if (valid) {
    for (int c = lane; c < chunks; c += 32) {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) {
        const int row = min(row0 + r, inter - 1);
        g[r] += gate.chunk(e, row, c, xs);
        u[r] += up.chunk(e, row, c, xs);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const float gs = dev::warp_sum(g[r]), us = dev::warp_sum(u[r]);
    if (lane == 0 && row0 + r < inter) act[(int64_t(t) * top_k + kk) * inter + row0 + r] = gs / (1.0f + expf(-gs)) * us;
  }
}

// ptxas: hot expert_down_kernel
template <class Src>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) expert_down_kernel(float* y, const float* act, const int32_t* ids,
                                                              const float* weights, Src down, int n_experts, int top_k) {
  GLM_DYNAMIC_SHARED(float, as);  // [top_k][inter padded]
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int t = int(blockIdx.y);
  const int hidden = down.rows, inter = down.cols, padded = inter / 32 * kXStride;
  for (int k = 0; k < top_k; ++k) stage(as + k * padded, act + (int64_t(t) * top_k + k) * inter, inter, tid);
  __syncthreads();
  const int row0 = int(blockIdx.x) * kRowsPerBlock + warp * kRowsPerWarp;
  if (row0 >= hidden) return;
  const int chunks = inter / Src::kChunk;
  float acc[kRowsPerWarp] = {};
  for (int k = 0; k < top_k; ++k) {
    const int e = ids[t * top_k + k];
    if (e < 0 || e >= n_experts) continue;
    const float wk = weights[t * top_k + k];
    for (int c = lane; c < chunks; c += 32) {
#pragma unroll
      for (int r = 0; r < kRowsPerWarp; ++r) acc[r] = fmaf(wk, down.chunk(e, min(row0 + r, hidden - 1), c, as + k * padded), acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    const float s = dev::warp_sum(acc[r]);
    if (lane == 0 && row0 + r < hidden) y[int64_t(t) * hidden + row0 + r] = s;
  }
}

template <class Src>
Status run(const char* op, float* y, const float* x, const int32_t* ids, const float* weights, Src gate, Src up, Src down,
           const MoeDecodeArgs& a, float* workspace, int64_t workspace_floats, cudaStream_t s) {
  if (!y || !x || !ids || !weights || !workspace) return detail::invalid(op, "null pointer");
  if (a.n_tokens < 0 || a.n_tokens > 65535 || a.top_k < 1 || a.top_k > 64 || a.n_experts < 1 || a.hidden <= 0 || a.inter <= 0 ||
      a.hidden % 32 || a.inter % 32 || a.hidden > (1 << 20) || a.inter > (1 << 20) || a.n_experts > (1 << 16))
    return detail::invalid(op, "bad dimensions (hidden and inter multiples of 32)");
  if (workspace_floats < moe_experts_decode_workspace_floats(a)) return detail::invalid(op, "workspace too small");
  if (!detail::aligned(x, 16) || !detail::aligned(workspace, 16)) return detail::invalid(op, "x and workspace must be 16-byte aligned");
  const size_t smem_up = size_t(a.hidden / 32) * kXStride * sizeof(float);
  const size_t smem_down = size_t(a.top_k) * size_t(a.inter / 32) * kXStride * sizeof(float);
  if (smem_up > 160 * 1024 || smem_down > 160 * 1024) return detail::invalid(op, "hidden or top_k * inter too large for the staged vectors");
  if (a.n_tokens == 0) return Status::ok();
  cudaError_t e = cudaSuccess;
  if (smem_up > 48 * 1024) e = cudaFuncSetAttribute(expert_gate_up_kernel<Src>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_up));
  if (e == cudaSuccess && smem_down > 48 * 1024)
    e = cudaFuncSetAttribute(expert_down_kernel<Src>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem_down));
  if (e != cudaSuccess) return detail::launched(op, e);
  const dim3 g1{unsigned((a.inter + kRowsPerBlock - 1) / kRowsPerBlock), unsigned(a.top_k), unsigned(a.n_tokens)};
  e = GLM_LAUNCH(expert_gate_up_kernel<Src>, g1, dim3(kThreads), smem_up, s, workspace, x, ids, gate, up, int(a.n_experts), int(a.top_k));
  if (e != cudaSuccess) return detail::launched(op, e);
  const dim3 g2{unsigned((a.hidden + kRowsPerBlock - 1) / kRowsPerBlock), unsigned(a.n_tokens)};
  return detail::launched(op, GLM_LAUNCH(expert_down_kernel<Src>, g2, dim3(kThreads), smem_down, s, y, workspace, ids, weights, down,
                                         int(a.n_experts), int(a.top_k)));
}

}  // namespace

int64_t moe_experts_decode_workspace_floats(const MoeDecodeArgs& a) { return a.n_tokens * a.top_k * a.inter; }

Status moe_experts_decode_mxfp4(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                                const Mxfp4Experts& w, const MoeDecodeArgs& a, float* workspace, int64_t workspace_floats) {
  const char* op = "moe_experts_decode_mxfp4";
  if (!w.gate_blocks || !w.gate_scales || !w.up_blocks || !w.up_scales || !w.down_blocks || !w.down_scales)
    return detail::invalid(op, "null weight pointer");
  if (!detail::aligned(w.gate_blocks, 16) || !detail::aligned(w.up_blocks, 16) || !detail::aligned(w.down_blocks, 16))
    return detail::invalid(op, "blocks must be 16-byte aligned");
  const int h = int(a.hidden), i = int(a.inter);
  return run(op, y, x, expert_ids, expert_weights, Mx4Src{w.gate_blocks, w.gate_scales, i, h}, Mx4Src{w.up_blocks, w.up_scales, i, h},
             Mx4Src{w.down_blocks, w.down_scales, h, i}, a, workspace, workspace_floats, detail::to_stream(stream.handle));
}

Status moe_experts_decode_fp8(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                              const Fp8Experts& w, const MoeDecodeArgs& a, float* workspace, int64_t workspace_floats) {
  const char* op = "moe_experts_decode_fp8";
  if (!w.gate || !w.gate_scales || !w.up || !w.up_scales || !w.down || !w.down_scales) return detail::invalid(op, "null weight pointer");
  if (!detail::aligned(w.gate, 16) || !detail::aligned(w.up, 16) || !detail::aligned(w.down, 16))
    return detail::invalid(op, "weights must be 16-byte aligned");
  const int h = int(a.hidden), i = int(a.inter);
  const bool b = w.scaling == Fp8Scaling::Block128;
  return run(op, y, x, expert_ids, expert_weights, Fp8Src{w.gate, w.gate_scales, i, h, b}, Fp8Src{w.up, w.up_scales, i, h, b},
             Fp8Src{w.down, w.down_scales, h, i, b}, a, workspace, workspace_floats, detail::to_stream(stream.handle));
}

Status moe_experts_decode_bf16(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                               const Bf16Experts& w, const MoeDecodeArgs& a, float* workspace, int64_t workspace_floats) {
  const char* op = "moe_experts_decode_bf16";
  if (!w.gate || !w.up || !w.down) return detail::invalid(op, "null weight pointer");
  if (!detail::aligned(w.gate, 16) || !detail::aligned(w.up, 16) || !detail::aligned(w.down, 16))
    return detail::invalid(op, "weights must be 16-byte aligned");
  const int h = int(a.hidden), i = int(a.inter);
  return run(op, y, x, expert_ids, expert_weights, Bf16Src{w.gate, i, h}, Bf16Src{w.up, i, h}, Bf16Src{w.down, h, i}, a,
             workspace, workspace_floats, detail::to_stream(stream.handle));
}

}  // namespace glm::cuda
