// A weight matrix as the forward pass and the kernels see it: one struct whatever the storage format,
// so the layer loop never branches on dtype (DESIGN.md rule 2); the backend's matmul dispatches on it.
//
// Formats (glm45-spec.md §5, §10):
//   Quant::None        data = F32/BF16/F16 [rows, cols], row-major.
//   Quant::Fp8Channel  data = F8_E4M3 [rows, cols]; scales = float[rows]:  W[r,k] = e4m3(data[r,k]) * scales[r]
//                      (compressed-tensors "channel" strategy, the official GLM-4.5(-Air)-FP8 layout).
//   Quant::Fp8Block    data = F8_E4M3 [rows, cols]; scales = float[ceil(rows/128) * ceil(cols/128)]:
//                      W[r,k] = e4m3(data[r,k]) * scales[(r/128) * ceil(cols/128) + k/128]
//                      (DeepSeek-V3 "weight_scale_inv", 128×128 blocks, edge blocks partial).
//   Quant::Mxfp4       data = U8 [rows, ceil(cols/32), 16]: 32 E2M1 codes per group, byte j holds
//                      elements 2j (low nibble) and 2j+1 (high nibble); scales = uint8 E8M0
//                      [rows, ceil(cols/32)]: W[r,k] = e2m1(code) * 2^(scales[r, k/32] - 127). cols
//                      need not be a multiple of 32: the last group is padded with codes that are
//                      never multiplied by anything but zero.
// Scales of FP8 matrices are fp32 copies made (and checked finite, >= 0) at load; MXFP4 scales point
// into the mapping (checked for the NaN code 0xFF at load). Weight data always stays in the mapping.
#pragma once
#include <cstdint>

#include "engine/dtype.h"

namespace glm {

enum class Quant : uint8_t { None, Fp8Channel, Fp8Block, Mxfp4 };

constexpr int64_t kFp8BlockSize = 128;  // DeepSeek-style block scales: 128 rows × 128 cols
constexpr int64_t kMxfp4Group = 32;     // MXFP4: one E8M0 scale per 32 consecutive inputs

inline const char* quant_name(Quant q) {
  switch (q) {
    case Quant::None: return "none";
    case Quant::Fp8Channel: return "fp8-channel";
    case Quant::Fp8Block: return "fp8-block128";
    case Quant::Mxfp4: return "mxfp4";
  }
  return "?";
}

struct Matrix {
  const void* data = nullptr;
  DType dtype = DType::BF16;   // element storage; F8_E4M3 for Fp8*, U8 for Mxfp4
  int64_t rows = 0;            // out features
  int64_t cols = 0;            // in features (the reduction length K)
  Quant quant = Quant::None;
  const void* scales = nullptr;  // see the table above; nullptr for Quant::None
  // The whole model's weights fit in the CPU caches (set at load, cpu::weights_stay_cached): a decode
  // step's product is then bound by FMA latency, not memory, and the CPU kernels block several rows
  // per pass instead of streaming one row at a time. Results are bit-identical either way.
  bool cache_resident = false;

  int64_t mx_groups() const { return (cols + kMxfp4Group - 1) / kMxfp4Group; }
  int64_t block_cols() const { return (cols + kFp8BlockSize - 1) / kFp8BlockSize; }
  int64_t block_rows() const { return (rows + kFp8BlockSize - 1) / kFp8BlockSize; }
  // Bytes from one row's data to the next.
  int64_t row_bytes() const { return quant == Quant::Mxfp4 ? mx_groups() * 16 : cols * (dtype_bits(dtype) / 8); }
  // Bytes a full pass over the matrix reads (weights + scales): the decode-time byte budget.
  uint64_t bytes() const {
    const uint64_t data_bytes = uint64_t(rows) * uint64_t(row_bytes());
    switch (quant) {
      case Quant::None: return data_bytes;
      case Quant::Fp8Channel: return data_bytes + uint64_t(rows) * 4;
      case Quant::Fp8Block: return data_bytes + uint64_t(block_rows() * block_cols()) * 4;
      case Quant::Mxfp4: return data_bytes + uint64_t(rows * mx_groups());
    }
    return data_bytes;
  }
};

// Exact decoders shared by the kernels' scalar paths and the loader (the SIMD paths have their own
// in-register equivalents, tested against these).
// OCP E4M3 ("e4m3fn"): bias 7, no infinities, S.1111.111 is NaN, max ±448, subnormals m·2^-9.
inline float e4m3_to_f32(uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 15 && m == 7) return __builtin_nanf("");
  if (e == 0) v = float(m) * (1.0f / 512.0f);
  else v = (1.0f + float(m) / 8.0f) * float(e >= 7 ? double(1 << (e - 7)) : 1.0 / double(1 << (7 - e)));
  return (b & 0x80) ? -v : v;
}
// E2M1 code -> value (spec §10 table).
inline float e2m1_to_f32(uint8_t nibble) {
  static constexpr float kLut[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                     -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  return kLut[nibble & 15];
}
// E8M0 -> 2^(code-127); 0x00 is 2^-127 (an fp32 subnormal), 0xFF is NaN.
inline float e8m0_to_f32(uint8_t code) {
  uint32_t bits = code == 0 ? 0x00400000u : code == 255 ? 0x7fc00000u : uint32_t(code) << 23;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace glm
