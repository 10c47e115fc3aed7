// The CPU backend's hot kernels: the weight matmul (GEMV for decode, GEMM for prefill) and a few
// vector helpers. One portable implementation plus AVX2+FMA+F16C and AVX-512 ones, chosen once at run
// time from cpuid (each ISA lives in its own translation unit built with that ISA's flags), so one
// binary runs on any x86-64 and non-x86 builds use the portable code.
//
// Numerics: activations stay fp32 (weights are widened exactly to fp32 in registers; we deliberately do
// not use AVX512-BF16 dot instructions, which would round activations to bf16). Every sum is
// accumulated in fp32 with several partial accumulators (one vector of lanes per output, combined at
// the end), so results differ between ISAs and from a sequential sum by normal fp32 rounding only.
#pragma once
#include <cstdint>

#include "cpu/thread_pool.h"
#include "engine/dtype.h"
#include "engine/matrix.h"

namespace glm::cpu {

// Y[t*ldy + n] (= or +=) sum_k X[t*ldx + k] * W[n*K + k]  (+ bias[n] when bias != nullptr),
// for t < T, n < N. With accumulate the bias is added too: Y += X·Wᵀ + bias.
// X: fp32, T rows of stride ldx >= K. W: row-major [N, K] (safetensors [out, in]), contiguous, in
// wt ∈ {F32, BF16, F16}; any other wt writes NaN to the outputs (a caller bug made loud, not a crash).
// Y: fp32, T rows of stride ldy >= N; must not overlap X, W or bias.
// Parallel over output rows (and over token chunks for long prompts) on `pool`; tiny problems run
// inline on the calling thread.
void matmul(ThreadPool& pool, const float* X, int64_t T, int64_t ldx, const void* W, DType wt,
            int64_t N, int64_t K, const float* bias, float* Y, int64_t ldy, bool accumulate = false);
// The same product for a weight matrix in any storage format (engine/matrix.h): N = W.rows, K = W.cols.
// Quantized formats are dequantized in registers, a few elements at a time (never a widened copy of
// the weights): FP8 per-channel accumulates Σ e4m3(w)·x per row and multiplies by the row scale once;
// FP8 128×128 blocks and MXFP4 multiply each decoded weight by its group's scale before the FMA, so
// every weight entering the sum is the format's exact value (E2M1·2^e is exact in fp32; e4m3·s is one
// fp32 rounding). Activations and sums stay fp32, as for unquantized weights.
void matmul(ThreadPool& pool, const float* X, int64_t T, int64_t ldx, const Matrix& W, const float* bias, float* Y,
            int64_t ldy, bool accumulate = false);

// One product of matmul_many: the same arguments as matmul.
struct MatmulJob {
  const float* X; int64_t T, ldx; const Matrix* W; const float* bias;
  float* Y; int64_t ldy; bool accumulate;
};
// Several independent products in one pool dispatch (q/k/v projections, a layer's experts): the
// threads share out the tiles of all of them, so small decode products do not each pay a hand-off.
void matmul_many(ThreadPool& pool, const MatmulJob* jobs, size_t n_jobs);

float dot(const float* a, const float* b, int64_t n);            // fp32 vectors, fp32 partial sums
void axpy(float a, const float* x, float* y, int64_t n);          // y += a*x
// Widens one row of F32/BF16/F16 to fp32, exactly (subnormals, ±0, inf and NaN included).
// Any other type writes NaN.
void convert_to_f32(const void* src, DType t, float* dst, int64_t n);
// Attention over cached rows, one call per run of keys instead of one per key. rows[j] points at row j
// (d elements of rt: F32, BF16 or F8_E4M3, widened exactly in registers; an E4M3 row's scale is the
// caller's to apply): out[j] = q · rows[j] for j < n ...
void dot_rows(const float* q, const void* const* rows, DType rt, int64_t n, int64_t d, float* out);
// ... and out[0..d) += sum_j w[j] * rows[j], accumulated in registers across j (one call's rows are
// summed before they join out, so how a caller groups keys into calls fixes the rounding).
void weighted_row_sum(const float* w, const void* const* rows, DType rt, int64_t n, int64_t d, float* out);

// Whether a model with this many bytes of weights keeps them in the CPU caches between decode steps
// (at most 32 MiB, and at most the last-level cache where the C library reports it): its products are
// then marked Matrix::cache_resident. GLM_CPU_CACHE_RESIDENT=0 in the environment makes it false.
bool weights_stay_cached(uint64_t weight_bytes);

enum class Isa { Generic, Avx2, Avx512 };
Isa detected_isa();              // best implementation this CPU supports (Generic on non-x86)
Isa active_isa();                // the one in use (process-wide: it describes the CPU, not a model)
void set_isa_for_testing(Isa);   // selects another implementation; one the CPU lacks is ignored
const char* isa_name(Isa);       // "generic", "avx2", "avx512"

namespace detail {

// What each ISA's translation unit provides. The tiling and threading of matmul is shared
// (kernels_dispatch.cc); an ISA only supplies register-blocked micro-kernels.
//
// A block computes out[r*cols + c] = sum_k X[c*ldx + k] * W[r*K + k] for r < rows, c < cols over the
// whole K, where W points at the block's first row (element type fixed by the kernel). rows and cols
// are compile-time constants inside the kernel, so accumulators live in registers.
// rows * cols never exceeds kMaxBlockOutputs (each ISA file static_asserts it).
constexpr int kMaxBlockOutputs = 64;
using BlockFn = void (*)(const float* X, int64_t ldx, const void* W, int64_t K, float* out);
// Blocks of group-scaled formats (Quant::Fp8Block: groups of 128 F8_E4M3 bytes, float scales;
// Quant::Mxfp4: groups of 16 bytes = 32 E2M1 codes, E8M0 scales): rows are row_bytes apart from W,
// row_scales[r] points at row r's scales (group g's is row_scales[r][g]: for 128×128 blocks the rows of
// one band share a pointer). Elements k >= K of the last group are multiplied by zero activations only.
using QBlockFn = void (*)(const float* X, int64_t ldx, const uint8_t* W, int64_t row_bytes,
                          const void* const* row_scales, int64_t K, float* out);

struct KernelTable {
  Isa isa;
  int gemv_rows;               // rows per block when T == 1 and K is long (X shared by several rows)
  int gemm_rows, gemm_cols;    // rows × tokens per block when T > 1 (compute-bound: register reuse)
  // The block for (wt, rows, cols) with rows <= max(gemv_rows, gemm_rows), cols <= gemm_cols;
  // nullptr for an unsupported dtype. F8_E4M3 blocks return the unscaled Σ e4m3(w)·x (per-channel FP8
  // applies its row scale afterwards).
  BlockFn (*block)(DType wt, int rows, int cols);
  // The same for Quant::Fp8Block and Quant::Mxfp4; nullptr for other formats.
  QBlockFn (*qblock)(Quant q, int rows, int cols);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float a, const float* x, float* y, int64_t n);
  void (*convert_to_f32)(const void* src, DType t, float* dst, int64_t n);  // F32/BF16/F16 only
  void (*dot_rows)(const float* q, const void* const* rows, DType rt, int64_t n, int64_t d, float* out);
  void (*weighted_row_sum)(const float* w, const void* const* rows, DType rt, int64_t n, int64_t d, float* out);
};

const KernelTable* generic_kernels();
const KernelTable* avx2_kernels();    // nullptr where not compiled (non-x86)
const KernelTable* avx512_kernels();  // nullptr where not compiled (non-x86)

}  // namespace detail
}  // namespace glm::cpu
