// The CUDA backend's quantized weights (spec §5, §10; engine/matrix.h): FP8 E4M3 matrices with per-row
// or 128x128-block fp32 scales, and FP8 / MXFP4 routed experts. Kept out of cuda_backend.cc so the
// dispatch there stays a few lines (upload_matrix, linear, run_experts call into here).
//
// Weights go to the device as stored (never a widened copy): E4M3 bytes + the fp32 scales the loader
// made at load (checkpoint BF16/F16 scale tensors are converted to fp32 there, engine/weights.cc),
// MXFP4 blocks + E8M0 scale bytes. Dense FP8: fp8_gemv for steps of <= 4 rows (weight-only, fp32 x:
// the CPU backend's math up to fp32 summation order), fp8_dequant_gemm otherwise (bf16 tensor cores
// over weight tiles widened in shared memory; cuda/README.md says why not W8A8). MXFP4 occurs only in
// routed experts (the loader binds it nowhere else).
#include "cuda_backend/cuda_backend.h"
#include "cuda_backend/runtime.h"

namespace glm::cuda_backend {

namespace {

constexpr uint64_t kAlign = 256;  // cudaMalloc's alignment, as in the plan of cuda_backend.cc
uint64_t round_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
uint64_t data_bytes(const Matrix& m) { return uint64_t(m.rows) * uint64_t(m.row_bytes()); }
uint64_t scale_bytes(const Matrix& m) { return m.bytes() - data_bytes(m); }

cuda::Fp8Scaling fp8_scaling(Quant q) { return q == Quant::Fp8Block ? cuda::Fp8Scaling::Block128 : cuda::Fp8Scaling::PerChannel; }

}  // namespace

uint64_t CudaBackend::device_matrix_bytes(const Matrix& m) {
  const uint64_t s = scale_bytes(m);
  return round_up(data_bytes(m)) + (s ? round_up(s) : 0);
}

uint64_t CudaBackend::device_experts_bytes(const MoeWeights& moe) {
  // upload_experts: one allocation per projection for the stacked data and one for the stacked scales.
  const uint64_t E = moe.experts.size();
  uint64_t b = 0;
  for (const Matrix* m : {&moe.experts[0].gate, &moe.experts[0].up, &moe.experts[0].down}) {
    b += round_up(data_bytes(*m) * E);
    if (const uint64_t s = scale_bytes(*m)) b += round_up(s * E);
  }
  return b;
}

Status CudaBackend::upload_quant_matrix(const Matrix& m, const char* what) {
  if (m.quant == Quant::Mxfp4) {
    // Never produced: the MXFP4 format (glm-node-mxfp4) covers routed experts only.
    return Status::error(ErrorCode::UnsupportedFormat, std::string("CUDA backend: ") + what +
                                                           " is mxfp4; MXFP4 runs only in routed experts on CUDA");
  }
  if ((m.quant != Quant::Fp8Channel && m.quant != Quant::Fp8Block) || m.dtype != DType::F8_E4M3 || !m.scales) {
    return Status::error(ErrorCode::UnsupportedFormat, std::string("CUDA backend: ") + what + " is " + quant_name(m.quant) + " " +
                                                           dtype_name(m.dtype) + "; FP8 matrices must be F8_E4M3 with scales");
  }
  // fp8_gemv / fp8_dequant_gemm read rows in 16-byte chunks.
  if (m.cols % 16 != 0) {
    return Status::error(ErrorCode::UnsupportedFormat, std::string("CUDA backend: ") + what + " has " + std::to_string(m.cols) +
                                                           " input features; FP8 matrices need a multiple of 16");
  }
  DeviceMatrix dm;
  dm.quant = m.quant;
  dm.type = cuda::WeightType::BF16;  // unused for quantized matrices
  void* p = nullptr;
  GLM_TRY(upload(m.data, data_bytes(m), &p, what));
  dm.data = p;
  GLM_TRY(upload(m.scales, scale_bytes(m), &p, what));
  dm.scales = static_cast<const float*>(p);
  matrices_[m.data] = dm;
  return Status::ok();
}

// (x and out come padded from linear(): their rows are the kernels' rows.)
void CudaBackend::linear_quant(Act x, const DeviceMatrix& dm, const Matrix& w, const std::vector<float>* bias, Act out,
                               bool accumulate) {
  if (!running()) return;
  const float* b = vec(bias);
  if (!running()) return;
  const cuda::Fp8Weight fw{static_cast<const uint8_t*>(dm.data), dm.scales, w.rows, w.cols, fp8_scaling(dm.quant)};
  record(cuda::fp8_linear(stream(), out.data, x.data, fw, b, x.rows, accumulate));
}

Status CudaBackend::run_quant_experts(Act x, const DeviceExperts& de, const int32_t* ids, const float* weights, float* y, void* ws,
                                      int64_t ws_bytes) {
  cuda::MoeDecodeArgs a;
  a.n_tokens = pad(x).rows;  // (a graph-bucketed decode step's padding rows too)
  a.hidden = x.cols;
  a.inter = de.inter;
  a.n_experts = cfg_.n_routed_experts;
  a.top_k = cfg_.num_experts_per_tok;
  if (de.quant == Quant::Mxfp4) {
    cuda::Mxfp4Experts e;
    e.gate_blocks = static_cast<const uint8_t*>(de.gate), e.gate_scales = static_cast<const uint8_t*>(de.gate_scales);
    e.up_blocks = static_cast<const uint8_t*>(de.up), e.up_scales = static_cast<const uint8_t*>(de.up_scales);
    e.down_blocks = static_cast<const uint8_t*>(de.down), e.down_scales = static_cast<const uint8_t*>(de.down_scales);
    return cuda::moe_experts_mxfp4(stream(), y, x.data, ids, weights, e, a, ws, ws_bytes);
  }
  cuda::Fp8Experts e;
  e.gate = static_cast<const uint8_t*>(de.gate), e.gate_scales = static_cast<const float*>(de.gate_scales);
  e.up = static_cast<const uint8_t*>(de.up), e.up_scales = static_cast<const float*>(de.up_scales);
  e.down = static_cast<const uint8_t*>(de.down), e.down_scales = static_cast<const float*>(de.down_scales);
  e.scaling = fp8_scaling(de.quant);
  return cuda::moe_experts_fp8(stream(), y, x.data, ids, weights, e, a, ws, ws_bytes);
}

}  // namespace glm::cuda_backend
