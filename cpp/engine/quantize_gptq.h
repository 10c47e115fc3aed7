// GPTQ-style error feedback for the checkpoint quantizer (engine/quantize.h): each row is rounded one
// input column at a time, and the rounding error of a column is pushed onto the columns not yet rounded
// in proportion to how the calibration inputs correlate with it, so the row's output error
// (w_q − w)ᵀ E[x xᵀ] (w_q − w) is what gets minimised, not each weight's own error. (Idea from Frantar
// et al., "GPTQ", 2022; written here from the paper's description.)
#pragma once
#include "engine/quantize.h"

namespace glm::quant {

// p.covariance and p.channel_weight must be set. All scales (FP8 per row / per 128×128 block, MXFP4 per
// 32-group) are chosen first as the calibrated search does, on the original weights; the columns are then
// rounded in act order (descending E[x_c²]) unless p.act_order is false. err2 / werr2 are measured
// against the original weights. Falls back to plain calibrated rounding when the covariance is not
// positive definite even after damping.
Status quantize_gptq(const double* w, int64_t rows, int64_t cols, const QuantizeParams& p, cpu::ThreadPool* pool,
                     QuantizedMatrix* out);

}  // namespace glm::quant
