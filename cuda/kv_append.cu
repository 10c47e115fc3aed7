// Appends the new tokens' K and V rows to the paged device cache (layout: ops.h KvLayout, the
// head-major page layout of engine/kv_cache.h). One block per (token, kv head); 16-byte copies.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 64;

// ptxas: hot kv_append_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) kv_append_kernel(float* pool, const float* k, const float* v,
                                                             const int32_t* slots, int n_kv_heads, int head_dim,
                                                             int page_tokens, int64_t n_pages) {
  const int64_t row = blockIdx.x;
  const int head = int(blockIdx.y);
  const int32_t slot = slots[row];
  if (slot < 0 || int64_t(slot) >= n_pages * page_tokens) return;  // padding row / outside the pool
  const int64_t page = slot / page_tokens, in_page = slot % page_tokens;
  const int64_t page_floats = int64_t(2) * n_kv_heads * page_tokens * head_dim;
  float* dk = pool + page * page_floats + (int64_t(head) * page_tokens + in_page) * head_dim;
  float* dv = dk + int64_t(n_kv_heads) * page_tokens * head_dim;
  const float* sk = k + (row * n_kv_heads + head) * head_dim;
  const float* sv = v + (row * n_kv_heads + head) * head_dim;
  const int n4 = head_dim / 4;  // head_dim % 4 == 0 and 16-byte aligned bases: checked by the launcher
  for (int i = int(threadIdx.x); i < n4; i += int(blockDim.x)) {
    reinterpret_cast<float4*>(dk)[i] = reinterpret_cast<const float4*>(sk)[i];
    reinterpret_cast<float4*>(dv)[i] = reinterpret_cast<const float4*>(sv)[i];
  }
}

}  // namespace

Status kv_append(Stream stream, float* pool, const KvLayout& L, const float* k, const float* v, const int32_t* slots,
                 int64_t rows) {
  constexpr const char* op = "kv_append";
  if (!pool || !k || !v || !slots) return detail::invalid(op, "null pointer");
  if (rows < 0 || L.n_kv_heads <= 0 || L.page_tokens <= 0 || L.n_pages <= 0) return detail::invalid(op, "bad dimensions");
  if (L.head_dim <= 0 || L.head_dim % 4) return detail::invalid(op, "head_dim must be a positive multiple of 4");
  if (!detail::aligned(pool, 16) || !detail::aligned(k, 16) || !detail::aligned(v, 16)) return detail::invalid(op, "pool, k and v must be 16-byte aligned");
  if (rows > 0x7fffffff || L.n_kv_heads > 65535 || L.n_pages * L.page_tokens > 0x7fffffff) return detail::invalid(op, "dimensions too large");
  if (rows == 0) return Status::ok();
  const dim3 grid(unsigned(rows), unsigned(L.n_kv_heads));
  const cudaError_t err = GLM_LAUNCH(kv_append_kernel, grid, dim3(kThreads), 0, detail::to_stream(stream.handle), pool, k, v,
                                     slots, int(L.n_kv_heads), int(L.head_dim), int(L.page_tokens), L.n_pages);
  return detail::launched(op, err);
}

}  // namespace glm::cuda
