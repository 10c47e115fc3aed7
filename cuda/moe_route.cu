// MoE router on device (GLM-4.5 / DeepSeek-V3 "noaux_tc"), the CPU backend's CpuBackend::route() step
// for step: fp32 sigmoid scores, + correction bias for selection only (a NaN choice reads as -inf),
// group-limited top-k (a group's score is the sum of its two best biased scores; experts outside the
// best topk_group groups get choice 0.0, not -inf, as in HF), top-k with ties to the lowest index,
// weights from the unbiased scores, optional renormalisation (double sum, + 1e-20) and the routed
// scaling factor, rounded to fp32 once — so ids and weights match the CPU bit for bit.
//
// One warp per token, 4 tokens per block; a token's scores and choices live in shared memory. Each
// top-k pick is a warp argmax over (value, index) with the lower index winning ties, which is what the
// CPU's sequential "first strictly greater" scan returns when no value is NaN (choices never are; the
// group scores are sums of two choices and so are not NaN either, given a finite correction bias).
// The group stage (absent for GLM-4.5 and Air, n_group = 1) runs the CPU's sequential scans per group
// in one lane each: it is a few hundred compares.
//
// sigmoid uses exp in double rounded to fp32: correctly rounded except in double-rounding corner
// cases, so it agrees with the CPU's glibc expf (< 0.502 ulp) wherever both are correctly rounded; the
// GPU's own expf (2 ulp) would flip near-tied expert choices much more often.
#include <cmath>

#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kMaxExperts = 1024;

GLM_DEVICE float sigmoid_f32(float x) {
  const float e = float(exp(-double(x)));  // = expf(-x) correctly rounded
  return 1.0f / (1.0f + e);
}

// First index of the largest value among the not-taken entries (the CPU's argmax_excluding).
GLM_DEVICE int first_max(const float* v, int n, int skip) {
  int best = -1;
  for (int i = 0; i < n; ++i) {
    if (i == skip) continue;
    if (best < 0 || v[i] > v[best]) best = i;
  }
  return best;
}

// ptxas: hot moe_route_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) moe_route_kernel(int32_t* ids, float* weights, const float* logits,
                                                            const float* bias, int T, int E, int k, int groups,
                                                            int topk_group, int renormalize, double scaling) {
  GLM_DYNAMIC_SHARED(float, smem);  // per warp: score[E], choice[E], group_score[groups]
  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int t = int(blockIdx.x) * kWarps + warp;
  if (t >= T) return;  // no block barriers below: warps are independent
  float* score = smem + warp * (2 * E + groups);
  float* choice = score + E;
  float* gscore = choice + E;
  const float* lg = logits + int64_t(t) * E;
  for (int e = lane; e < E; e += 32) {
    const float s = sigmoid_f32(lg[e]);
    score[e] = s;
    const float c = s + (bias ? bias[e] : 0.0f);
    choice[e] = c != c ? -INFINITY : c;
  }
  __syncwarp();
  if (groups > 1) {
    const int per = E / groups;
    for (int g = lane; g < groups; g += 32) {
      const float* c = choice + g * per;
      const int a = first_max(c, per, -1);
      const int b = first_max(c, per, a);
      gscore[g] = c[a] + c[b];
    }
    __syncwarp();
    // Lane 0 picks the kept groups by the CPU's sequential scans; taken groups are marked by
    // overwriting their score with NaN (never greater than anything, never picked again: every pick
    // starts from a non-NaN candidate because at least groups - topk_group + 1 remain untaken).
    if (lane == 0) {
      for (int j = 0; j < topk_group; ++j) {
        int best = -1;
        for (int g = 0; g < groups; ++g) {
          if (gscore[g] != gscore[g]) continue;
          if (best < 0 || gscore[g] > gscore[best]) best = g;
        }
        gscore[best] = NAN;
      }
    }
    __syncwarp();
    for (int e = lane; e < E; e += 32) {
      const float gs = gscore[e / per];
      if (gs == gs) choice[e] = 0.0f;  // group not kept
    }
    __syncwarp();  // mutant-exempt: choice[e] is zeroed and then read by the same lane (e = lane + 32 i in both loops)
  }
  // Top-k: lane l owns experts l, l + 32, ...; bit i of `taken` marks expert l + 32 i.
  uint32_t taken = 0;
  double sum = 0.0;
  int32_t* out_ids = ids + int64_t(t) * k;
  float* out_w = weights + int64_t(t) * k;
  for (int j = 0; j < k; ++j) {
    float bv = -INFINITY;
    int bi = 0x7fffffff;  // "none": loses to any real candidate, -inf ones included
    for (int i = 0, e = lane; e < E; ++i, e += 32) {
      if ((taken >> i) & 1u) continue;
      if (bi == 0x7fffffff || choice[e] > bv) {
        bv = choice[e];
        bi = e;
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(dev::kFullMask, bv, off);
      const int oi = __shfl_xor_sync(dev::kFullMask, bi, off);
      if (oi != 0x7fffffff && (bi == 0x7fffffff || ov > bv || (ov == bv && oi < bi))) {
        bv = ov;
        bi = oi;
      }
    }
    if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
    const float s = score[bi];
    sum += double(s);  // every lane keeps the same sum, in the CPU's order
    if (lane == 0) {
      out_ids[j] = bi;
      out_w[j] = s;
    }
  }
  __syncwarp();  // mutant-exempt: lane 0 reads back only out_w it wrote itself; sum is per lane
  if (lane == 0) {
    const double norm = renormalize ? 1.0 / (sum + 1e-20) : 1.0;
    for (int j = 0; j < k; ++j) out_w[j] = float(double(out_w[j]) * norm * scaling);
  }
}

}  // namespace

Status moe_route(Stream stream, int32_t* expert_ids, float* expert_weights, const float* logits, const float* correction_bias,
                 const MoeRouteArgs& a) {
  const char* op = "moe_route";
  if (!expert_ids || !expert_weights || !logits) return detail::invalid(op, "null pointer");
  if (a.n_tokens < 0) return detail::invalid(op, "negative n_tokens");
  if (a.n_experts < 1 || a.n_experts > kMaxExperts) return detail::invalid(op, "n_experts must be in [1, 1024]");
  if (a.top_k < 1 || a.top_k > a.n_experts) return detail::invalid(op, "top_k must be in [1, n_experts]");
  const int64_t groups = a.n_group > 1 ? a.n_group : 1;
  if (groups > 1) {
    if (a.n_experts % groups != 0 || a.n_experts / groups < 2) return detail::invalid(op, "groups must split experts evenly, >= 2 each");
    if (a.topk_group < 1 || a.topk_group > groups) return detail::invalid(op, "topk_group must be in [1, n_group]");
  }
  if (a.n_tokens == 0) return Status::ok();
  if (a.n_tokens > int64_t(0x7fffffff) - kWarps) return detail::invalid(op, "too many tokens");
  const size_t smem = size_t(kWarps) * size_t(2 * a.n_experts + groups) * sizeof(float);  // <= 48 KiB for E <= 1024
  const dim3 grid(unsigned((a.n_tokens + kWarps - 1) / kWarps));
  return detail::launched(op, GLM_LAUNCH(moe_route_kernel, grid, dim3(kThreads), smem, detail::to_stream(stream.handle),
                                         expert_ids, expert_weights, logits, correction_bias, int(a.n_tokens),
                                         int(a.n_experts), int(a.top_k), int(groups), int(groups > 1 ? a.topk_group : 1),
                                         a.norm_topk_prob ? 1 : 0, a.routed_scaling_factor));
}

}  // namespace glm::cuda
