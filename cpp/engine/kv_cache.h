// A sequence's attention cache in fp32, stored in fixed-size pages allocated as the sequence grows, so
// a session's memory follows its length while its capacity stays bounded by its contextLength.
//
// Page layout (one page per layer per 256 positions): [K | V][kv_head][position in page][head_dim].
// Positions of one head are contiguous, so attention streams each head's keys and values linearly
// (a position-major layout would put every key of a head 4 KiB apart and defeat the prefetchers).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/status.h"

namespace glm {

class KvCache {
 public:
  static constexpr int64_t kPageTokens = 256;

  KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t capacity)
      : n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim), capacity_(capacity),
        pages_(size_t(n_layers)) {}

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  int64_t head_dim() const { return head_dim_; }

  // Makes room for positions [0, new_length); ContextOverflow past capacity, InsufficientMemory when
  // an allocation fails.
  Status reserve(int64_t new_length);
  // Positions [0, n) stay valid; the rest become free to overwrite (pages are kept for reuse).
  void truncate(int64_t n) { length_ = n < length_ ? n : length_; }
  void set_length(int64_t n) { length_ = n; }

  // The head_dim floats of one head at one position (position < reserved length). Within a page,
  // the next position of the same head follows directly: stride head_dim.
  float* key(int64_t layer, int64_t kv_head, int64_t pos) { return row(layer, kv_head, pos, 0); }
  float* value(int64_t layer, int64_t kv_head, int64_t pos) { return row(layer, kv_head, pos, 1); }
  const float* key(int64_t layer, int64_t kv_head, int64_t pos) const {
    return const_cast<KvCache*>(this)->row(layer, kv_head, pos, 0);
  }
  const float* value(int64_t layer, int64_t kv_head, int64_t pos) const {
    return const_cast<KvCache*>(this)->row(layer, kv_head, pos, 1);
  }

  uint64_t allocated_bytes() const;

 private:
  int64_t page_floats() const { return 2 * n_kv_heads_ * kPageTokens * head_dim_; }
  float* row(int64_t layer, int64_t kv_head, int64_t pos, int which) {
    float* page = pages_[size_t(layer)][size_t(pos / kPageTokens)].get();
    return page + ((which * n_kv_heads_ + kv_head) * kPageTokens + pos % kPageTokens) * head_dim_;
  }

  int64_t n_layers_, n_kv_heads_, head_dim_, capacity_;
  int64_t length_ = 0;
  std::vector<std::vector<std::unique_ptr<float[]>>> pages_;  // [layer][page]
};

}  // namespace glm
