#include "cpu/kv_storage.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include "engine/matrix.h"

namespace glm::cpu {

namespace {

// MemAvailable from /proc/meminfo (what the kernel can hand out without swapping), else free pages.
uint64_t available_memory_bytes() {
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kb = 0;
    bool found = false;
    while (std::fgets(line, sizeof line, f)) {
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
        found = true;
        break;
      }
    }
    std::fclose(f);
    if (found) return uint64_t(kb) * 1024;
  }
  const long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
  return pages > 0 && size > 0 ? uint64_t(pages) * uint64_t(size) : uint64_t(1) << 30;
}

// Sequences the default pool holds at full context: enough for heavy concurrency, small enough that
// a tiny model does not reserve gigabytes of bookkeeping.
constexpr uint64_t kDefaultFullContexts = 64;

}  // namespace

Status KvStorage::create(const ModelConfig& cfg, const KvPoolRequest& request, std::unique_ptr<KvStorage>* out) {
  std::unique_ptr<KvStorage> s(new KvStorage());
  s->n_layers_ = request.layers > 0 ? request.layers : cfg.num_hidden_layers;
  s->n_kv_heads_ = cfg.num_key_value_heads;
  s->head_dim_ = cfg.head_dim;
  s->page_tokens_ = request.page_tokens;
  s->row_bytes_ = uint64_t(cfg.head_dim) * uint64_t(kv_type_bytes(request.type));
  s->data_bytes_ = 2 * uint64_t(s->n_kv_heads_) * uint64_t(s->page_tokens_) * s->row_bytes_;
  s->block_bytes_ = s->data_bytes_ + (request.type == KvType::FP8 ? 2 * uint64_t(s->n_kv_heads_) * uint64_t(s->page_tokens_) * 4 : 0);
  KvPoolSpec& spec = s->spec_;
  spec.type = request.type;
  spec.page_tokens = request.page_tokens;
  spec.page_bytes = s->block_bytes_ * uint64_t(s->n_layers_);
  uint64_t bytes = request.bytes;
  if (bytes == 0) {
    const uint64_t per_token = spec.page_bytes / uint64_t(spec.page_tokens);
    const uint64_t contexts = kDefaultFullContexts * uint64_t(cfg.max_position_embeddings) * per_token;
    bytes = std::min(available_memory_bytes() / 2, contexts);
  }
  spec.n_pages = int64_t(std::min<uint64_t>(bytes / spec.page_bytes, 0x7fffffff));
  if (spec.n_pages < 1) {
    return Status::error(ErrorCode::InvalidParam, "kvCacheSize: " + std::to_string(bytes) + " bytes hold no KV page (one page of " +
                                                      std::to_string(spec.page_tokens) + " positions takes " +
                                                      std::to_string(spec.page_bytes) + " bytes)");
  }
  s->mapped_bytes_ = spec.pool_bytes();
  // Reserved, not committed: the kernel backs each 4 KiB page on first touch.
  void* p = mmap(nullptr, size_t(s->mapped_bytes_), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return Status::error(ErrorCode::InsufficientMemory, "KV cache: cannot reserve " + std::to_string(s->mapped_bytes_) +
                                                            " bytes of address space for the page pool");
  }
  s->base_ = static_cast<uint8_t*>(p);
  *out = std::move(s);
  return Status::ok();
}

KvStorage::~KvStorage() {
  if (base_) munmap(base_, size_t(mapped_bytes_));
}

void KvStorage::write(int64_t layer, PageId page, int64_t pos, int which, int64_t head, const float* src) {
  uint8_t* row = const_cast<uint8_t*>(static_cast<const uint8_t*>(rows(layer, page, which, head))) + uint64_t(pos) * row_bytes_;
  switch (spec_.type) {
    case KvType::F32:
      std::memcpy(row, src, size_t(head_dim_) * sizeof(float));
      break;
    case KvType::BF16: {
      auto* dst = reinterpret_cast<uint16_t*>(row);
      for (int64_t i = 0; i < head_dim_; ++i) dst[i] = f32_to_bf16(src[i]);
      break;
    }
    case KvType::FP8: {
      float amax = 0;
      for (int64_t i = 0; i < head_dim_; ++i) amax = std::max(amax, std::fabs(src[i]));
      // A zero (or non-finite) row stores scale 0 or NaN: it decodes to zeros or NaN, as it came.
      const float scale = amax / 448.0f;
      const float inv = scale > 0 && std::isfinite(scale) ? 1.0f / scale : 0.0f;
      for (int64_t i = 0; i < head_dim_; ++i) row[i] = f32_to_e4m3(std::isfinite(amax) ? src[i] * inv : src[i]);
      const_cast<float*>(scales(layer, page, which, head))[pos] = std::isfinite(amax) ? scale : 1.0f;
      break;
    }
  }
}

void KvStorage::read(int64_t layer, PageId page, int64_t pos, int which, int64_t head, float* dst) const {
  const uint8_t* row = static_cast<const uint8_t*>(rows(layer, page, which, head)) + uint64_t(pos) * row_bytes_;
  switch (spec_.type) {
    case KvType::F32:
      std::memcpy(dst, row, size_t(head_dim_) * sizeof(float));
      break;
    case KvType::BF16:
      for (int64_t i = 0; i < head_dim_; ++i) dst[i] = bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[i]);
      break;
    case KvType::FP8: {
      const float s = scales(layer, page, which, head)[pos];
      for (int64_t i = 0; i < head_dim_; ++i) dst[i] = e4m3_to_f32(row[i]) * s;
      break;
    }
  }
}

void KvStorage::copy_page(PageId src, PageId dst, int64_t n) {
  for (int64_t l = 0; l < n_layers_; ++l) {
    for (int which = 0; which < 2; ++which) {
      for (int64_t h = 0; h < n_kv_heads_; ++h) {
        std::memcpy(const_cast<void*>(rows(l, dst, which, h)), rows(l, src, which, h), size_t(uint64_t(n) * row_bytes_));
        if (spec_.type == KvType::FP8) {
          std::memcpy(const_cast<float*>(scales(l, dst, which, h)), scales(l, src, which, h), size_t(n) * sizeof(float));
        }
      }
    }
  }
}

}  // namespace glm::cpu
