#include "engine/kv_cache.h"

#include <new>
#include <string>

namespace glm {

Status KvStore::check_capacity(int64_t new_length) const {
  if (new_length > capacity_) {
    return Status::error(ErrorCode::ContextOverflow, "KV cache: " + std::to_string(new_length) +
                                                         " positions exceed the context length " +
                                                         std::to_string(capacity_));
  }
  return Status::ok();
}

Status KvCache::reserve(int64_t new_length) {
  GLM_TRY(check_capacity(new_length));
  const size_t pages_needed = size_t((new_length + kPageTokens - 1) / kPageTokens);
  for (auto& layer_pages : pages_) {
    while (layer_pages.size() < pages_needed) {
      float* p = new (std::nothrow) float[size_t(page_floats())];
      if (!p) {
        return Status::error(ErrorCode::InsufficientMemory, "KV cache: could not allocate a page of " +
                                                                std::to_string(page_floats() * sizeof(float)) + " bytes");
      }
      layer_pages.emplace_back(p);
    }
  }
  return Status::ok();
}

uint64_t KvCache::allocated_bytes() const {
  uint64_t pages = 0;
  for (const auto& layer_pages : pages_) pages += layer_pages.size();
  return pages * uint64_t(page_floats()) * sizeof(float);
}

}  // namespace glm
