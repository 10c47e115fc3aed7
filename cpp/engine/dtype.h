// Element types found in safetensors files. Only some are valid for a given weight slot; the weight
// table (weights.cc) decides, the loader only parses.
#pragma once
#include <cstdint>
#include <cstring>
#include <string_view>

namespace glm {

enum class DType : uint8_t { F64, F32, F16, BF16, F8_E4M3, F8_E5M2, I64, I32, I16, I8, U8, BOOL, U16, U32, U64 };

// Bits per element (all whole bytes for the types above).
inline int dtype_bits(DType t) {
  switch (t) {
    case DType::F64: case DType::I64: case DType::U64: return 64;
    case DType::F32: case DType::I32: case DType::U32: return 32;
    case DType::F16: case DType::BF16: case DType::I16: case DType::U16: return 16;
    case DType::F8_E4M3: case DType::F8_E5M2: case DType::I8: case DType::U8: case DType::BOOL: return 8;
  }
  return 0;
}

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::F64: return "F64"; case DType::F32: return "F32"; case DType::F16: return "F16";
    case DType::BF16: return "BF16"; case DType::F8_E4M3: return "F8_E4M3"; case DType::F8_E5M2: return "F8_E5M2";
    case DType::I64: return "I64"; case DType::I32: return "I32"; case DType::I16: return "I16";
    case DType::I8: return "I8"; case DType::U8: return "U8"; case DType::BOOL: return "BOOL";
    case DType::U16: return "U16"; case DType::U32: return "U32"; case DType::U64: return "U64";
  }
  return "?";
}

// Parses a safetensors dtype string; false for anything unknown (the caller reports it).
inline bool parse_dtype(std::string_view s, DType* out) {
  static constexpr struct { const char* name; DType type; } kTable[] = {
      {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"F8_E4M3", DType::F8_E4M3}, {"F8_E5M2", DType::F8_E5M2}, {"I64", DType::I64}, {"I32", DType::I32},
      {"I16", DType::I16}, {"I8", DType::I8}, {"U8", DType::U8}, {"BOOL", DType::BOOL},
      {"U16", DType::U16}, {"U32", DType::U32}, {"U64", DType::U64}};
  for (const auto& e : kTable) {
    if (s == e.name) { *out = e.type; return true; }
  }
  return false;
}

// Exact widening conversions used by every backend and by tests.
inline float bf16_to_f32(uint16_t h) {
  uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Round-to-nearest-even, NaN kept quiet (used by fixtures/tests on the C++ side).
inline uint16_t f32_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while ((mant & 0x400u) == 0) { mant <<= 1; --exp; }
      mant &= 0x3ffu;
      bits = sign | (exp << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace glm
