// Portable kernels: plain C++ that compiles on any target (and auto-vectorises where it can). They are
// the fallback on CPUs without AVX2 and the baseline the vectorised kernels are timed against.
#include <array>
#include <utility>

#include "cpu/kernels.h"

namespace glm::cpu {
namespace {

using detail::BlockFn;
using detail::QBlockFn;

constexpr int kLanes = 8;     // independent partial sums per output (breaks the FMA dependency chain)
constexpr int kKChunk = 256;  // weights widened to fp32 this many at a time, on the stack

// All 256 E4M3 codes as fp32 (exact), built once.
struct E4m3Table {
  float v[256];
  E4m3Table() { for (int b = 0; b < 256; ++b) v[b] = e4m3_to_f32(uint8_t(b)); }
};
const E4m3Table& e4m3_table() {
  static const E4m3Table table;
  return table;
}

template <DType WT>
inline float widen(const void* w, int64_t i) {
  if constexpr (WT == DType::F8_E4M3) {
    return e4m3_table().v[static_cast<const uint8_t*>(w)[i]];
  } else if constexpr (WT == DType::F32) {
    return static_cast<const float*>(w)[i];
  } else if constexpr (WT == DType::BF16) {
    return bf16_to_f32(static_cast<const uint16_t*>(w)[i]);
  } else {
    return f16_to_f32(static_cast<const uint16_t*>(w)[i]);
  }
}

template <DType WT, int R, int C>
void block(const float* X, int64_t ldx, const void* W, int64_t K, float* out) {
  float acc[R][C][kLanes] = {};
  float wbuf[R][kKChunk];
  for (int64_t k0 = 0; k0 < K; k0 += kKChunk) {
    const int kb = int(K - k0 < kKChunk ? K - k0 : kKChunk);
    for (int r = 0; r < R; ++r)
      for (int k = 0; k < kb; ++k) wbuf[r][k] = widen<WT>(W, r * K + k0 + k);
    const int kv = kb / kLanes * kLanes;
    for (int c = 0; c < C; ++c) {
      const float* x = X + c * ldx + k0;
      for (int r = 0; r < R; ++r) {
        float* s = acc[r][c];
        for (int k = 0; k < kv; k += kLanes)
          for (int l = 0; l < kLanes; ++l) s[l] += wbuf[r][k + l] * x[k + l];
        for (int k = kv; k < kb; ++k) s[k - kv] += wbuf[r][k] * x[k];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float sum = 0.0f;
      for (int l = 0; l < kLanes; ++l) sum += acc[r][c][l];
      out[r * C + c] = sum;
    }
}

// Group-scaled formats: each group's weights are decoded and scaled onto the stack (one group, not the
// matrix), then accumulated exactly like the unquantized block above.
template <Quant Q, int R, int C>
void qblock(const float* X, int64_t ldx, const uint8_t* W, int64_t row_bytes, const void* const* row_scales,
            int64_t K, float* out) {
  constexpr int G = Q == Quant::Fp8Block ? int(kFp8BlockSize) : int(kMxfp4Group);
  constexpr int GB = Q == Quant::Fp8Block ? G : G / 2;  // bytes per group
  float acc[R][C][kLanes] = {};
  float wbuf[R][G];
  const E4m3Table& e4m3 = e4m3_table();
  int64_t g = 0;
  for (int64_t k0 = 0; k0 < K; k0 += G, ++g) {
    const int kb = int(K - k0 < G ? K - k0 : G);
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = W + r * row_bytes + g * GB;
      if constexpr (Q == Quant::Fp8Block) {
        const float s = static_cast<const float*>(row_scales[r])[g];
        for (int k = 0; k < kb; ++k) wbuf[r][k] = e4m3.v[p[k]] * s;
      } else {
        const float s = e8m0_to_f32(static_cast<const uint8_t*>(row_scales[r])[g]);
        for (int k = 0; k < kb; ++k) wbuf[r][k] = e2m1_to_f32(uint8_t((k & 1) ? p[k >> 1] >> 4 : p[k >> 1] & 15)) * s;
      }
    }
    const int kv = kb / kLanes * kLanes;
    for (int c = 0; c < C; ++c) {
      const float* x = X + c * ldx + k0;
      for (int r = 0; r < R; ++r) {
        float* s = acc[r][c];
        for (int k = 0; k < kv; k += kLanes)
          for (int l = 0; l < kLanes; ++l) s[l] += wbuf[r][k + l] * x[k + l];
        for (int k = kv; k < kb; ++k) s[k - kv] += wbuf[r][k] * x[k];
      }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) {
      float sum = 0.0f;
      for (int l = 0; l < kLanes; ++l) sum += acc[r][c][l];
      out[r * C + c] = sum;
    }
}

constexpr int kRows = 4, kCols = 4;
static_assert(kRows * kCols <= detail::kMaxBlockOutputs, "run_tile's output buffer");

template <DType WT, int C, int... Rs>
constexpr std::array<BlockFn, sizeof...(Rs)> row_fns(std::integer_sequence<int, Rs...>) {
  return {&block<WT, Rs + 1, C>...};
}
template <DType WT, int... Cs>
constexpr std::array<std::array<BlockFn, kRows>, sizeof...(Cs)> make_table(std::integer_sequence<int, Cs...>) {
  return {row_fns<WT, Cs + 1>(std::make_integer_sequence<int, kRows>())...};
}

template <Quant Q, int C, int... Rs>
constexpr std::array<QBlockFn, sizeof...(Rs)> qrow_fns(std::integer_sequence<int, Rs...>) {
  return {&qblock<Q, Rs + 1, C>...};
}
template <Quant Q, int... Cs>
constexpr std::array<std::array<QBlockFn, kRows>, sizeof...(Cs)> make_qtable(std::integer_sequence<int, Cs...>) {
  return {qrow_fns<Q, Cs + 1>(std::make_integer_sequence<int, kRows>())...};
}

QBlockFn pick_qblock(Quant q, int rows, int cols) {
  static constexpr auto kFp8Block = make_qtable<Quant::Fp8Block>(std::make_integer_sequence<int, kCols>());
  static constexpr auto kMxfp4 = make_qtable<Quant::Mxfp4>(std::make_integer_sequence<int, kCols>());
  if (rows < 1 || rows > kRows || cols < 1 || cols > kCols) return nullptr;
  switch (q) {
    case Quant::Fp8Block: return kFp8Block[cols - 1][rows - 1];
    case Quant::Mxfp4: return kMxfp4[cols - 1][rows - 1];
    default: return nullptr;
  }
}

BlockFn pick_block(DType wt, int rows, int cols) {
  static constexpr auto kF8 = make_table<DType::F8_E4M3>(std::make_integer_sequence<int, kCols>());
  static constexpr auto kF32 = make_table<DType::F32>(std::make_integer_sequence<int, kCols>());
  static constexpr auto kBF16 = make_table<DType::BF16>(std::make_integer_sequence<int, kCols>());
  static constexpr auto kF16 = make_table<DType::F16>(std::make_integer_sequence<int, kCols>());
  if (rows < 1 || rows > kRows || cols < 1 || cols > kCols) return nullptr;
  switch (wt) {
    case DType::F32: return kF32[cols - 1][rows - 1];
    case DType::BF16: return kBF16[cols - 1][rows - 1];
    case DType::F16: return kF16[cols - 1][rows - 1];
    case DType::F8_E4M3: return kF8[cols - 1][rows - 1];
    default: return nullptr;
  }
}

float dot_generic(const float* a, const float* b, int64_t n) {
  float s[kLanes] = {};
  const int64_t nv = n / kLanes * kLanes;
  for (int64_t i = 0; i < nv; i += kLanes)
    for (int l = 0; l < kLanes; ++l) s[l] += a[i + l] * b[i + l];
  for (int64_t i = nv; i < n; ++i) s[i - nv] += a[i] * b[i];
  float sum = 0.0f;
  for (int l = 0; l < kLanes; ++l) sum += s[l];
  return sum;
}

void axpy_generic(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void convert_generic(const void* src, DType t, float* dst, int64_t n) {
  switch (t) {
    case DType::F32:
      for (int64_t i = 0; i < n; ++i) dst[i] = widen<DType::F32>(src, i);
      break;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = widen<DType::BF16>(src, i);
      break;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) dst[i] = widen<DType::F16>(src, i);
      break;
    default:
      break;
  }
}

// Cached rows of a narrower type are widened onto the stack first (head_dim is at most a few hundred).
template <DType RT>
const float* widen_row(const void* row, int64_t d, float* buf) {
  if constexpr (RT == DType::F32) return static_cast<const float*>(row);
  for (int64_t i = 0; i < d; ++i) buf[i] = widen<RT>(row, i);
  return buf;
}

template <DType RT>
void dot_rows_t(const float* q, const void* const* rows, int64_t n, int64_t d, float* out) {
  float buf[kKChunk];
  for (int64_t j = 0; j < n; ++j) {
    float sum = 0.0f;
    for (int64_t k0 = 0; k0 < d; k0 += kKChunk) {  // (one chunk for any real head_dim)
      const int64_t kb = d - k0 < kKChunk ? d - k0 : kKChunk;
      const float* r = widen_row<RT>(static_cast<const char*>(rows[j]) + k0 * (RT == DType::F32 ? 4 : RT == DType::BF16 ? 2 : 1), kb, buf);
      sum += dot_generic(q + k0, r, kb);
    }
    out[j] = sum;
  }
}

void dot_rows_generic(const float* q, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  switch (rt) {
    case DType::F32:
      for (int64_t j = 0; j < n; ++j) out[j] = dot_generic(q, static_cast<const float*>(rows[j]), d);
      return;
    case DType::BF16: return dot_rows_t<DType::BF16>(q, rows, n, d, out);
    case DType::F8_E4M3: return dot_rows_t<DType::F8_E4M3>(q, rows, n, d, out);
    default: return;
  }
}

template <DType RT>
void weighted_row_sum_t(const float* w, const void* const* rows, int64_t n, int64_t d, float* out) {
  float buf[kKChunk];
  for (int64_t j = 0; j < n; ++j) {
    for (int64_t k0 = 0; k0 < d; k0 += kKChunk) {
      const int64_t kb = d - k0 < kKChunk ? d - k0 : kKChunk;
      const float* r = widen_row<RT>(static_cast<const char*>(rows[j]) + k0 * (RT == DType::F32 ? 4 : RT == DType::BF16 ? 2 : 1), kb, buf);
      axpy_generic(w[j], r, out + k0, kb);
    }
  }
}

void weighted_row_sum_generic(const float* w, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  switch (rt) {
    case DType::F32:
      for (int64_t j = 0; j < n; ++j) axpy_generic(w[j], static_cast<const float*>(rows[j]), out, d);
      return;
    case DType::BF16: return weighted_row_sum_t<DType::BF16>(w, rows, n, d, out);
    case DType::F8_E4M3: return weighted_row_sum_t<DType::F8_E4M3>(w, rows, n, d, out);
    default: return;
  }
}

constexpr detail::KernelTable kGeneric = {
    Isa::Generic, kRows, kRows, kCols, pick_block, pick_qblock, dot_generic, axpy_generic, convert_generic,
    dot_rows_generic, weighted_row_sum_generic,
};

}  // namespace

namespace detail {
const KernelTable* generic_kernels() { return &kGeneric; }
}  // namespace detail
}  // namespace glm::cpu
