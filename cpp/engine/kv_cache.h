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

// A sequence's KV storage as the engine sees it: a length within a fixed capacity, grown by reserve().
// Where the pages live is the backend's business (Backend::create_kv): host pages for the CPU backend
// (KvCache below), pages of a device pool for the CUDA backend. Only the backend that created a store
// reads its contents.
class KvStore {
 public:
  static constexpr int64_t kPageTokens = 256;

  explicit KvStore(int64_t capacity) : capacity_(capacity) {}
  virtual ~KvStore() = default;
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  int64_t capacity() const { return capacity_; }
  int64_t length() const { return length_; }
  // Positions [0, n) stay valid; the rest become free to overwrite (pages are kept for reuse).
  void truncate(int64_t n) { length_ = n < length_ ? n : length_; }
  void set_length(int64_t n) { length_ = n; }

  // Makes room for positions [0, new_length); ContextOverflow past capacity, InsufficientMemory when
  // an allocation fails.
  virtual Status reserve(int64_t new_length) = 0;
  virtual uint64_t allocated_bytes() const = 0;

 protected:
  Status check_capacity(int64_t new_length) const;
  int64_t capacity_;
  int64_t length_ = 0;
};

// The CPU backend's store: host pages, one per layer per 256 positions.
class KvCache final : public KvStore {
 public:
  KvCache(int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t capacity)
      : KvStore(capacity), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
        pages_(size_t(n_layers)) {}

  int64_t head_dim() const { return head_dim_; }

  Status reserve(int64_t new_length) override;

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

  uint64_t allocated_bytes() const override;

 private:
  int64_t page_floats() const { return 2 * n_kv_heads_ * kPageTokens * head_dim_; }
  float* row(int64_t layer, int64_t kv_head, int64_t pos, int which) {
    float* page = pages_[size_t(layer)][size_t(pos / kPageTokens)].get();
    return page + ((which * n_kv_heads_ + kv_head) * kPageTokens + pos % kPageTokens) * head_dim_;
  }

  int64_t n_layers_, n_kv_heads_, head_dim_;
  std::vector<std::vector<std::unique_ptr<float[]>>> pages_;  // [layer][page]
};

}  // namespace glm
