// Copy-on-write of a shared KV page: positions [0, n) of page src go to page dst in every layer, K and
// V, every kv head, with their FP8 scales (ops.h KvLayout, kv_rows.cuh). Runs between steps (the
// engine calls Backend::copy_kv_page before the step that writes dst), in one launch: a block per
// (layer, K|V x kv head) copies that head's n contiguous rows (n * row_bytes bytes, 16-byte words when
// the row width allows, else 4-byte ones) and its n scales. Before this kernel the backend issued one
// cudaMemcpyAsync per (layer, K|V, head): 2 x 46 x 8 = 736 small copies per page on GLM-4.5-Air.
#include "common.cuh"
#include "kv_rows.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 128;

GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) kv_copy_page_kernel(uint8_t* pool, float* scales, int64_t layer_bytes,
                                                                int64_t layer_scales, int n_kv_heads, int page_tokens,
                                                                int row_bytes, int src, int dst, int n) {
  const int layer = int(blockIdx.y), which = int(blockIdx.x) / n_kv_heads, head = int(blockIdx.x) % n_kv_heads;
  const int64_t rs = kv::row_index(src, which, head, 0, n_kv_heads, page_tokens);
  const int64_t rd = kv::row_index(dst, which, head, 0, n_kv_heads, page_tokens);
  const uint8_t* from = pool + layer * layer_bytes + rs * row_bytes;
  uint8_t* to = pool + layer * layer_bytes + rd * row_bytes;
  const int64_t bytes = int64_t(n) * row_bytes;
  if (row_bytes % 16 == 0) {  // grid-uniform
    for (int64_t i = threadIdx.x; i < bytes / 16; i += kThreads) reinterpret_cast<uint4*>(to)[i] = reinterpret_cast<const uint4*>(from)[i];
  } else {
    for (int64_t i = threadIdx.x; i < bytes / 4; i += kThreads) reinterpret_cast<uint32_t*>(to)[i] = reinterpret_cast<const uint32_t*>(from)[i];
  }
  if (scales) {
    const float* s = scales + layer * layer_scales + rs;
    float* d = scales + layer * layer_scales + rd;
    for (int i = int(threadIdx.x); i < n; i += kThreads) d[i] = s[i];
  }
}

}  // namespace

Status kv_copy_page(Stream stream, void* pool, float* scales, const KvLayout& L, int64_t n_layers, int32_t src, int32_t dst,
                    int64_t n) {
  constexpr const char* op = "kv_copy_page";
  if (!pool) return detail::invalid(op, "null pointer");
  if (L.type == KvElem::FP8 && !scales) return detail::invalid(op, "an FP8 pool needs its scales");
  if (L.n_kv_heads <= 0 || L.page_tokens <= 0 || L.n_pages <= 0 || n_layers <= 0) return detail::invalid(op, "bad dimensions");
  if (L.head_dim <= 0 || L.head_dim % 4) return detail::invalid(op, "head_dim must be a positive multiple of 4");
  if (src < 0 || dst < 0 || src >= L.n_pages || dst >= L.n_pages) return detail::invalid(op, "page id outside the pool");
  if (n < 0 || n > L.page_tokens) return detail::invalid(op, "n must be in [0, page_tokens]");
  if (!detail::aligned(pool, 16)) return detail::invalid(op, "pool must be 16-byte aligned");
  if (2 * L.n_kv_heads > 0x7fffffff || n_layers > 65535) return detail::invalid(op, "dimensions too large");
  if (n == 0 || src == dst) return Status::ok();
  const dim3 grid(unsigned(2 * L.n_kv_heads), unsigned(n_layers));
  return detail::launched(
      op, GLM_LAUNCH(kv_copy_page_kernel, grid, dim3(kThreads), 0, detail::to_stream(stream.handle), static_cast<uint8_t*>(pool),
                     L.type == KvElem::FP8 ? scales : nullptr, L.n_pages * L.page_bytes(), L.n_pages * L.page_scales(),
                     int(L.n_kv_heads), int(L.page_tokens), int(L.row_bytes()), int(src), int(dst), int(n)));
}

}  // namespace glm::cuda
