// Greedy token selection on device: tokens[r] = argmax over logits[r, :vocab], ties to the lowest id,
// NaN never wins, -1 when every value is NaN — engine/sampler.cc's argmax_token, so greedy decoding
// needs no logits copy to the host. One block per row: each thread scans a strided slice (coalesced),
// then a warp and a cross-warp reduction over (value, id) with the same order.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// (v, i) beats (bv, bi): bi < 0 is "none"; NaN values never enter (filtered by the scan).
GLM_DEVICE bool beats(float v, int i, float bv, int bi) {
  return i >= 0 && (bi < 0 || v > bv || (v == bv && i < bi));
}

// ptxas: hot argmax_tokens_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) argmax_tokens_kernel(int32_t* tokens, const float* logits, int vocab) {
  GLM_SHARED(float, wv, kWarps);
  GLM_SHARED(int, wi, kWarps);
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const float* row = logits + int64_t(blockIdx.x) * vocab;
  float bv = 0.0f;
  int bi = -1;
  for (int i = tid; i < vocab; i += kThreads) {  // increasing i: a strict > keeps the lowest id of a tie
    const float v = row[i];
    if (v == v && (bi < 0 || v > bv)) {
      bv = v;
      bi = i;
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(dev::kFullMask, bv, off);
    const int oi = __shfl_xor_sync(dev::kFullMask, bi, off);
    if (beats(ov, oi, bv, bi)) {
      bv = ov;
      bi = oi;
    }
  }
  if (lane == 0) {
    wv[warp] = bv;
    wi[warp] = bi;
  }
  __syncthreads();
  if (tid == 0) {
    for (int w = 1; w < kWarps; ++w) {
      if (beats(wv[w], wi[w], bv, bi)) {
        bv = wv[w];
        bi = wi[w];
      }
    }
    tokens[blockIdx.x] = bi;
  }
}

}  // namespace

Status argmax_tokens(Stream stream, int32_t* tokens, const float* logits, int64_t rows, int64_t vocab) {
  const char* op = "argmax_tokens";
  if (!tokens || !logits) return detail::invalid(op, "null pointer");
  if (rows < 0 || rows > 0x7fffffff || vocab <= 0 || vocab > 0x7fffffff) return detail::invalid(op, "bad rows / vocab");
  if (rows == 0) return Status::ok();
  return detail::launched(op, GLM_LAUNCH(argmax_tokens_kernel, dim3(unsigned(rows)), dim3(kThreads), 0,
                                         detail::to_stream(stream.handle), tokens, logits, int(vocab)));
}

}  // namespace glm::cuda
