// Portable kernels: plain C++ that compiles on any target (and auto-vectorises where it can). They are
// the fallback on CPUs without AVX2 and the baseline the vectorised kernels are timed against.
#include <array>
#include <utility>

#include "cpu/kernels.h"

namespace glm::cpu {
namespace {

using detail::BlockFn;

constexpr int kLanes = 8;     // independent partial sums per output (breaks the FMA dependency chain)
constexpr int kKChunk = 256;  // weights widened to fp32 this many at a time, on the stack

template <DType WT>
inline float widen(const void* w, int64_t i) {
  if constexpr (WT == DType::F32) {
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

BlockFn pick_block(DType wt, int rows, int cols) {
  static constexpr auto kF32 = make_table<DType::F32>(std::make_integer_sequence<int, kCols>());
  static constexpr auto kBF16 = make_table<DType::BF16>(std::make_integer_sequence<int, kCols>());
  static constexpr auto kF16 = make_table<DType::F16>(std::make_integer_sequence<int, kCols>());
  if (rows < 1 || rows > kRows || cols < 1 || cols > kCols) return nullptr;
  switch (wt) {
    case DType::F32: return kF32[cols - 1][rows - 1];
    case DType::BF16: return kBF16[cols - 1][rows - 1];
    case DType::F16: return kF16[cols - 1][rows - 1];
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

void dot_rows_generic(const float* q, const float* rows, int64_t stride, int64_t n, int64_t d, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = dot_generic(q, rows + j * stride, d);
}

void weighted_row_sum_generic(const float* w, const float* rows, int64_t stride, int64_t n, int64_t d, float* out) {
  for (int64_t j = 0; j < n; ++j) axpy_generic(w[j], rows + j * stride, out, d);
}

constexpr detail::KernelTable kGeneric = {
    Isa::Generic, kRows, kRows, kCols, pick_block, dot_generic, axpy_generic, convert_generic,
    dot_rows_generic, weighted_row_sum_generic,
};

}  // namespace

namespace detail {
const KernelTable* generic_kernels() { return &kGeneric; }
}  // namespace detail
}  // namespace glm::cpu
