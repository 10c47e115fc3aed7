// A sequence's attention cache: per layer, K and V rows [position][kv_heads * head_dim] in fp32,
// stored in fixed-size pages that are allocated as the sequence grows, so a session's memory follows
// its length while its capacity stays bounded by the session's contextLength.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/status.h"

namespace glm {

class KvCache {
 public:
  static constexpr int64_t kPageTokens = 256;

  KvCache(int64_t n_layers, int64_t row_width, int64_t capacity)
      : n_layers_(n_layers), row_width_(row_width), capacity_(capacity), pages_(size_t(n_layers)) {}

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  int64_t row_width() const { return row_width_; }

  // Makes room for positions [0, new_length); InsufficientMemory when an allocation fails.
  Status reserve(int64_t new_length);
  // Positions [0, n) stay valid; the rest become free to overwrite (pages are kept for reuse).
  void truncate(int64_t n) { length_ = n < length_ ? n : length_; }
  void set_length(int64_t n) { length_ = n; }

  // Row pointers for one layer and position (position < reserved length).
  float* key(int64_t layer, int64_t pos) { return page(layer, pos) + (pos % kPageTokens) * 2 * row_width_; }
  float* value(int64_t layer, int64_t pos) { return key(layer, pos) + row_width_; }
  const float* key(int64_t layer, int64_t pos) const {
    return const_cast<KvCache*>(this)->key(layer, pos);
  }
  const float* value(int64_t layer, int64_t pos) const {
    return const_cast<KvCache*>(this)->value(layer, pos);
  }

  uint64_t allocated_bytes() const;
  static uint64_t bytes_per_token(int64_t n_layers, int64_t row_width) {
    return uint64_t(n_layers) * 2 * uint64_t(row_width) * sizeof(float);
  }

 private:
  float* page(int64_t layer, int64_t pos) { return pages_[size_t(layer)][size_t(pos / kPageTokens)].get(); }

  int64_t n_layers_, row_width_, capacity_;
  int64_t length_ = 0;
  // pages_[layer][p] holds kPageTokens rows of interleaved K|V (one page = K and V of 256 positions).
  std::vector<std::vector<std::unique_ptr<float[]>>> pages_;
};

}  // namespace glm
