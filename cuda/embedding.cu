// model.embed_tokens: gathers one table row per token and widens it to fp32.
// Bandwidth-bound (reads hidden * elem bytes, writes hidden * 4 per token): one block per token, and
// when rows are 16-byte aligned each thread moves 16 bytes of the table per step.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 256;

// ptxas: hot embedding_kernel
template <class Elem>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) embedding_kernel(float* out, const Elem* table, const int32_t* tokens,
                                                             int64_t vocab, int64_t hidden, bool vec16) {
  const int64_t row = blockIdx.x;
  const int32_t token = tokens[row];
  float* o = out + row * hidden;
  if (token < 0 || token >= vocab) {
    for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) o[i] = __uint_as_float(0x7fc00000u);
    return;
  }
  const Elem* src = table + int64_t(token) * hidden;
  constexpr int kPer16 = int(16 / sizeof(Elem));  // elements per 16-byte load
  if (vec16) {
    const uint4* s4 = reinterpret_cast<const uint4*>(src);
    for (int64_t c = threadIdx.x; c < hidden / kPer16; c += blockDim.x) {
      const uint4 u = s4[c];
      const uint32_t w[4] = {u.x, u.y, u.z, u.w};
      float* dst = o + c * kPer16;
      if constexpr (sizeof(Elem) == 2) {
        for (int i = 0; i < 4; ++i) {
          dst[2 * i] = dev::bf16_to_float(uint16_t(w[i] & 0xffffu));
          dst[2 * i + 1] = dev::bf16_to_float(uint16_t(w[i] >> 16));
        }
      } else {
        for (int i = 0; i < 4; ++i) dst[i] = __uint_as_float(w[i]);
      }
    }
    return;
  }
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) {
    if constexpr (sizeof(Elem) == 2) o[i] = dev::bf16_to_float(src[i]);
    else o[i] = src[i];
  }
}

}  // namespace

Status embedding_gather(Stream stream, float* out, const void* table, TableType table_type, int64_t vocab,
                        int64_t hidden, const int32_t* tokens, int64_t n_tokens) {
  constexpr const char* op = "embedding_gather";
  if (!out || !table || !tokens) return detail::invalid(op, "null pointer");
  if (vocab <= 0 || hidden <= 0 || n_tokens < 0) return detail::invalid(op, "non-positive dimension");
  if (n_tokens > 0x7fffffff || vocab > 0x7fffffff) return detail::invalid(op, "dimension too large");
  if (n_tokens == 0) return Status::ok();
  const int64_t elem = table_type == TableType::BF16 ? 2 : 4;
  const bool vec16 = (hidden * elem) % 16 == 0 && detail::aligned(table, 16);
  const int64_t units = vec16 ? hidden / (16 / elem) : hidden;  // work items per row
  const int threads = int(units < kThreads ? (units + 31) / 32 * 32 : kThreads);
  const dim3 grid = dim3(unsigned(n_tokens));
  cudaError_t err;
  if (table_type == TableType::BF16) {
    err = GLM_LAUNCH(embedding_kernel<uint16_t>, grid, dim3(unsigned(threads)), 0, detail::to_stream(stream.handle), out,
                     static_cast<const uint16_t*>(table), tokens, vocab, hidden, vec16);
  } else {
    err = GLM_LAUNCH(embedding_kernel<float>, grid, dim3(unsigned(threads)), 0, detail::to_stream(stream.handle), out,
                     static_cast<const float*>(table), tokens, vocab, hidden, vec16);
  }
  return detail::launched(op, err);
}

}  // namespace glm::cuda
