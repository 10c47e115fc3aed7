// The CPU backend's KV page pool: one anonymous mapping reserved at load and committed by the OS page
// by page as pages are first written, so a large pool costs address space, not memory, until used.
//
// Layout, layer-major: [layer][page][K|V][kv_head][position in page][head_dim] elements of the pool's
// KvType, then (FP8 only) [layer][page][K|V][kv_head][position in page] fp32 scales. Positions of one
// head are contiguous within a page, so attention streams a head's keys and values page by page.
#pragma once
#include <cstdint>
#include <memory>

#include "engine/config.h"
#include "engine/kv_format.h"
#include "engine/kv_pool.h"
#include "engine/status.h"

namespace glm::cpu {

class KvStorage {
 public:
  // Reserves the pool; spec gets its page count and sizes. request.bytes == 0: the default size,
  // half of the memory available now, at most 64 contexts of max_position_embeddings tokens.
  static Status create(const ModelConfig& cfg, const KvPoolRequest& request, std::unique_ptr<KvStorage>* out);
  ~KvStorage();
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;

  const KvPoolSpec& spec() const { return spec_; }
  KvType type() const { return spec_.type; }

  // The page's rows of one head (which: 0 = K, 1 = V), position 0 first, head_dim elements apart.
  const void* rows(int64_t layer, PageId page, int which, int64_t head) const {
    return base_ + block_offset(layer, page) + uint64_t((which * n_kv_heads_ + head) * page_tokens_) * row_bytes_;
  }
  // FP8: the rows' scales, position 0 first.
  const float* scales(int64_t layer, PageId page, int which, int64_t head) const {
    return reinterpret_cast<const float*>(base_ + block_offset(layer, page) + data_bytes_) + (which * n_kv_heads_ + head) * page_tokens_;
  }
  // Stores one row (head_dim fp32 values) at a position of a page, converted to the pool's type.
  void write(int64_t layer, PageId page, int64_t pos, int which, int64_t head, const float* src);
  // Reads one row back as fp32 (tests and the copy check).
  void read(int64_t layer, PageId page, int64_t pos, int which, int64_t head, float* dst) const;
  // Copies positions [0, n) of page src to page dst in every layer (copy-on-write of a shared page).
  void copy_page(PageId src, PageId dst, int64_t n);

 private:
  KvStorage() = default;
  uint64_t block_offset(int64_t layer, PageId page) const { return (uint64_t(layer) * uint64_t(spec_.n_pages) + uint64_t(page)) * block_bytes_; }

  KvPoolSpec spec_;
  int64_t n_layers_ = 0, n_kv_heads_ = 0, head_dim_ = 0, page_tokens_ = 0;
  uint64_t row_bytes_ = 0;    // one row's elements
  uint64_t data_bytes_ = 0;   // a (layer, page) block's elements
  uint64_t block_bytes_ = 0;  // a (layer, page) block: elements + scales
  uint8_t* base_ = nullptr;
  uint64_t mapped_bytes_ = 0;
};

}  // namespace glm::cpu
