// self_attn q_norm / k_norm (per head, over head_dim) followed by partial NeoX RoPE (spec §2), in place
// on the q and k projections of each token. One warp per head: the head's values go through a
// per-warp shared-memory row so a lane can read its rotation partner (i, i + rotary_dim/2), which
// lives in another lane.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kMaxHeadDim = 256;

// ptxas: hot qk_norm_rope_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kWarps * 32) qk_norm_rope_kernel(float* q, float* k, const float* q_norm_w,
                                                                   const float* k_norm_w, const int32_t* positions,
                                                                   const double* inv_freq, int n_q_heads,
                                                                   int n_kv_heads, int head_dim, int rotary_dim,
                                                                   float eps) {
  GLM_SHARED(float, cos_t, kMaxHeadDim / 2);
  GLM_SHARED(float, sin_t, kMaxHeadDim / 2);
  GLM_SHARED(float, head_row, kWarps * kMaxHeadDim);
  const int64_t row = blockIdx.x;
  const int half = rotary_dim / 2;
  // cos/sin of this token's angles, once per block. The angle is formed in double: pos * inv_freq
  // reaches ~1e5 rad at long contexts, where an fp32 product would already be off by ~1e-2 rad.
  const double pos = double(positions[row]);
  for (int i = int(threadIdx.x); i < half; i += int(blockDim.x)) {
    const double angle = pos * inv_freq[i];
    cos_t[i] = float(cos(angle));
    sin_t[i] = float(sin(angle));
  }
  __syncthreads();

  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int head = int(blockIdx.y) * kWarps + warp;
  if (head >= n_q_heads + n_kv_heads) return;  // whole warp; no block barrier follows
  const bool is_q = head < n_q_heads;
  float* h = is_q ? q + (row * n_q_heads + head) * head_dim : k + (row * n_kv_heads + (head - n_q_heads)) * head_dim;
  const float* norm_w = is_q ? q_norm_w : k_norm_w;
  float* buf = head_row + warp * kMaxHeadDim;

  float ss = 0.0f;
  for (int i = lane; i < head_dim; i += 32) {
    const float v = h[i];
    buf[i] = v;
    ss += v * v;
  }
  if (norm_w) {
    const float inv = rsqrtf(dev::warp_sum(ss) / float(head_dim) + eps);
    for (int i = lane; i < head_dim; i += 32) buf[i] = norm_w[i] * (buf[i] * inv);
  }
  __syncwarp();  // partners are written by other lanes
  for (int i = lane; i < head_dim; i += 32) {
    float v = buf[i];
    if (i < half) v = v * cos_t[i] - buf[i + half] * sin_t[i];
    else if (i < rotary_dim) v = v * cos_t[i - half] + buf[i - half] * sin_t[i - half];
    h[i] = v;
  }
}

}  // namespace

Status qk_norm_rope(Stream stream, float* q, float* k, const float* q_norm_w, const float* k_norm_w,
                    const int32_t* positions, const double* inv_freq, QkRopeDims d, float eps) {
  constexpr const char* op = "qk_norm_rope";
  if (!q || !k || !positions || !inv_freq) return detail::invalid(op, "null pointer");
  if (!q_norm_w != !k_norm_w) return detail::invalid(op, "q_norm and k_norm weights must both be given or both null");
  if (d.rows < 0 || d.n_q_heads <= 0 || d.n_kv_heads <= 0) return detail::invalid(op, "bad dimensions");
  if (d.head_dim <= 0 || d.head_dim > kMaxHeadDim || d.head_dim % 2) return detail::invalid(op, "head_dim must be even and <= 256");
  if (d.rotary_dim < 0 || d.rotary_dim > d.head_dim || d.rotary_dim % 2) return detail::invalid(op, "rotary_dim must be even and <= head_dim");
  if (d.rows > 0x7fffffff || d.n_q_heads + d.n_kv_heads > 65535 * kWarps) return detail::invalid(op, "dimensions too large");
  if (!(eps >= 0.0f)) return detail::invalid(op, "eps must be >= 0");
  if (d.rows == 0) return Status::ok();
  const dim3 grid(unsigned(d.rows), unsigned((d.n_q_heads + d.n_kv_heads + kWarps - 1) / kWarps));
  const cudaError_t err = GLM_LAUNCH(qk_norm_rope_kernel, grid, dim3(kWarps * 32), 0, detail::to_stream(stream.handle), q, k,
                                     q_norm_w, k_norm_w, positions, inv_freq, int(d.n_q_heads), int(d.n_kv_heads),
                                     int(d.head_dim), int(d.rotary_dim), eps);
  return detail::launched(op, err);
}

}  // namespace glm::cuda
