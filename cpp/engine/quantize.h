// The checkpoint quantizer's numerics (`glm-node quantize`): one weight matrix in, its FP8 per-channel,
// FP8 128×128-block or MXFP4 encoding out (layouts in matrix.h), rows spread over a thread pool.
// lib/quantize.ts owns the files (reading shards, writing safetensors, config); this file owns the math.
//
// Without activation statistics the result is bit for bit what lib/quantize.ts's JavaScript reference
// writes (same candidates, same float64 arithmetic in the same order, same tie-breaking); the test
// compares the two on the fixtures. With per-input-channel statistics (quantize_calibrate.h) the scale
// of each row / block / group minimises the activation-weighted error Σ_c a_c·(q(w_c) − w_c)², a_c the
// mean squared activation of input channel c: the expected squared output error of the row when
// channels are uncorrelated.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/dtype.h"
#include "engine/status.h"

namespace glm {
namespace cpu {
class ThreadPool;
}

namespace quant {

enum class Target : uint8_t { Fp8Channel, Fp8Block, Mxfp4 };

// How the input weight is stored: plain floats, or FP8 with its own scales (converting FP8 to MXFP4).
enum class InputScheme : uint8_t { None, Fp8Channel, Fp8Block };

struct QuantizedMatrix {
  std::vector<uint8_t> data;    // F8_E4M3 [rows, cols] or MXFP4 blocks U8 [rows, ceil(cols/32), 16]
  std::vector<uint8_t> scales;  // F32 [rows] / F32 [ceil(rows/128), ceil(cols/128)] / E8M0 U8 [rows, ceil(cols/32)]
  double err2 = 0;              // Σ (w_q − w)²
  double ref2 = 0;              // Σ w²
  double werr2 = 0;             // Σ a_c (w_q − w)²  (with statistics; else equal to err2)
  double wref2 = 0;             // Σ a_c w²
};

struct QuantizeParams {
  Target target = Target::Fp8Channel;
  // Mean squared activation per input channel [cols], or nullptr: weight error only (the JS reference's
  // candidates, bit-exact). Negative or non-finite entries are an error.
  const float* channel_weight = nullptr;
  // With channel_weight: the full input covariance E[x xᵀ] [cols, cols] (its diagonal is channel_weight)
  // turns on GPTQ-style error feedback along each row (quantize_gptq.cc); nullptr: per-element rounding.
  const float* covariance = nullptr;
  // With a covariance: round columns by descending E[x_c²] (act order); false keeps their natural order
  // (for comparisons: act order measured better in every format).
  bool act_order = true;
};

// Decodes `bytes` (dtype F32/BF16/F16, or F8_E4M3 with `in_scales` in the input scheme's layout) into
// float64 [rows, cols] at the start of *out (grown when too small, never shrunk: reuse it across
// tensors). Checks sizes; non-finite weights are an error (they would poison a scale).
Status decode_weight(const uint8_t* bytes, size_t n_bytes, DType dtype, int64_t rows, int64_t cols, InputScheme scheme,
                     const float* in_scales, size_t n_in_scales, cpu::ThreadPool* pool, std::vector<double>* out);

// Quantizes w [rows, cols]. pool may be null (runs on the calling thread).
Status quantize_matrix(const double* w, int64_t rows, int64_t cols, const QuantizeParams& params, cpu::ThreadPool* pool,
                       QuantizedMatrix* out);

// decode_weight then quantize_matrix, as one step: for FP8 targets without a covariance the rows are
// decoded by the threads that quantize them and the float64 matrix is never built (faster; the same
// bytes). *scratch is the float64 buffer for the other targets (reuse it across tensors).
Status quantize_input(const uint8_t* bytes, size_t n_bytes, DType dtype, int64_t rows, int64_t cols, InputScheme scheme,
                      const float* in_scales, size_t n_in_scales, const QuantizeParams& params, cpu::ThreadPool* pool,
                      std::vector<double>* scratch, QuantizedMatrix* out);

// Exposed for tests: nearest E4M3 code (ties to even, saturating at ±448) and E2M1 code (ties to even).
uint8_t e4m3_encode(double v);
uint8_t e2m1_encode(double v);

}  // namespace quant
}  // namespace glm
