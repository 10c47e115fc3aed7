// How the KV cache stores keys and values: element type, page size, pool size. The engine sizes the
// pool (a load option) and every backend lays its pages out from a KvPoolSpec.
//
// Element types (LoadOptions::kv_type):
//   F32   exactly what the forward pass computed (the pre-pool engine's results, bit for bit).
//   BF16  round-to-nearest-even; half the bytes. Relative error 2^-9 per element.
//   FP8   OCP E4M3 with one fp32 scale per (position, head) row of head_dim values: scale =
//         max|row| / 448, so the row's largest value is exact and nothing saturates; codes round to
//         nearest even. A per-row scale needs no calibration and follows K's outlier channels row by
//         row (a per-tensor scale of 1.0, the usual uncalibrated default, loses small rows to E4M3's
//         2^-9 floor). A quarter of F32's bytes plus 4 bytes per 128 values.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "engine/dtype.h"

namespace glm {

enum class KvType : uint8_t { F32, BF16, FP8 };

inline const char* kv_type_name(KvType t) {
  switch (t) {
    case KvType::F32: return "f32";
    case KvType::BF16: return "bf16";
    case KvType::FP8: return "fp8";
  }
  return "?";
}

inline bool parse_kv_type(const std::string& s, KvType* out) {
  if (s == "f32") *out = KvType::F32;
  else if (s == "bf16") *out = KvType::BF16;
  else if (s == "fp8") *out = KvType::FP8;
  else return false;
  return true;
}

inline int64_t kv_type_bytes(KvType t) { return t == KvType::F32 ? 4 : t == KvType::BF16 ? 2 : 1; }

// What the model asks of its backend's pool (Model::load fills it from LoadOptions).
struct KvPoolRequest {
  KvType type = KvType::BF16;
  int64_t page_tokens = 16;
  uint64_t bytes = 0;  // pool size; 0: the backend's default (documented in README)
  int64_t layers = 0;  // KV layers per page: the trunk's, plus the MTP layer's when it runs (0: the trunk's)
};

// The pool a backend made: n_pages pages of page_tokens positions each, every layer.
struct KvPoolSpec {
  KvType type = KvType::BF16;
  int64_t page_tokens = 16;
  int64_t n_pages = 0;
  uint64_t page_bytes = 0;  // one page id, all layers, K and V (and FP8 scales)
  uint64_t pool_bytes() const { return uint64_t(n_pages) * page_bytes; }
};

// Bytes of one page id: 2 (K, V) x layers x kv heads x page_tokens x (head_dim elements + an FP8 scale).
inline uint64_t kv_page_bytes(KvType t, int64_t n_layers, int64_t n_kv_heads, int64_t head_dim, int64_t page_tokens) {
  const uint64_t row = uint64_t(head_dim) * uint64_t(kv_type_bytes(t)) + (t == KvType::FP8 ? 4 : 0);
  return 2 * uint64_t(n_layers) * uint64_t(n_kv_heads) * uint64_t(page_tokens) * row;
}

// fp32 -> E4M3 code, round to nearest even, |x| clamped to 448 (the largest finite code); NaN -> 0x7f.
inline uint8_t f32_to_e4m3(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  const uint8_t sign = uint8_t((bits >> 24) & 0x80);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return 0x7f;
  float a = std::fabs(x);
  if (a >= 448.0f) return uint8_t(sign | 0x7e);
  if (a < 0.015625f) {  // below the smallest normal 2^-6: multiples of 2^-9 (8 of them is 2^-6 itself, code 0x08)
    const float m = std::nearbyint(a * 512.0f);  // the default rounding mode: to nearest even
    return uint8_t(sign | uint8_t(m));
  }
  std::memcpy(&bits, &a, 4);
  int e = int(bits >> 23) - 127 + 7;  // 1..15
  uint32_t m = (bits >> 20) & 7u;
  const uint32_t rest = bits & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (m & 1u))) {
    if (++m == 8) m = 0, ++e;
  }
  if (e > 15 || (e == 15 && m == 7)) return uint8_t(sign | 0x7e);
  return uint8_t(sign | uint8_t(e << 3) | uint8_t(m));
}

}  // namespace glm
