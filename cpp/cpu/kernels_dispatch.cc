// Run-time ISA selection and the shared tiling / threading of matmul. Built for baseline x86-64 (or any
// target): nothing here executes ISA-specific instructions.
#include <algorithm>
#include <vector>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <unistd.h>

#include "cpu/kernels.h"

namespace glm::cpu {
namespace {

using detail::BlockFn;
using detail::QBlockFn;
using detail::KernelTable;

const KernelTable* table_for(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return detail::avx512_kernels();
    case Isa::Avx2: return detail::avx2_kernels();
    case Isa::Generic: return detail::generic_kernels();
  }
  return detail::generic_kernels();
}

bool cpu_supports(Isa isa) {
  if (isa == Isa::Generic) return true;
  if (!table_for(isa)) return false;  // not compiled in (non-x86 build)
#if defined(GLM_X86) && (defined(__GNUC__) || defined(__clang__))
  // libgcc's checks include the OS having enabled the register state (XCR0), not only cpuid bits.
  // Every flag the ISA's translation unit is compiled with must be present, since the compiler may
  // emit any of them.
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c");
  if (isa == Isa::Avx2) return avx2;
  if (isa == Isa::Avx512)
    return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  return false;
}

Isa detect() {
  if (cpu_supports(Isa::Avx512)) return Isa::Avx512;
  if (cpu_supports(Isa::Avx2)) return Isa::Avx2;
  return Isa::Generic;
}

// GLM_CPU_ISA=generic|avx2|avx512 lowers the choice (for debugging and A/B timing); a value the CPU
// cannot run, or an unknown one, is ignored.
Isa initial_isa() {
  Isa isa = detect();
  if (const char* env = std::getenv("GLM_CPU_ISA")) {
    for (Isa candidate : {Isa::Generic, Isa::Avx2, Isa::Avx512}) {
      if (std::strcmp(env, isa_name(candidate)) == 0 && cpu_supports(candidate)) isa = candidate;
    }
  }
  return isa;
}

std::atomic<const KernelTable*>& active_table() {
  static std::atomic<const KernelTable*> table{table_for(initial_isa())};
  return table;
}

const KernelTable& kernels() { return *active_table().load(std::memory_order_relaxed); }

// A token chunk's activations (T_chunk × K fp32) should stay in L2 while every weight row of the
// chunk's row range is swept over it; half of a typical 1–2 MB L2 leaves room for the weight rows.
constexpr int64_t kXChunkBytes = 512 * 1024;
// Minimum multiply-adds per thread's chunk: 64 rows of a 4096-wide GEMV (~10–25 µs), well above the
// pool's dispatch cost (~1 µs warm). Anything smaller runs inline on the caller.
constexpr int64_t kMinChunkMacs = int64_t(1) << 18;

// GEMV row-at-a-time limit: X (K fp32) uses at most half of a 32 KB L1.
constexpr int64_t kGemvSingleRowMaxK = 4096;
// Up to this many tokens the GEMV's single-row order is kept (see plan_tiles).
constexpr int64_t kStreamingMaxTokens = 4;

struct MatmulArgs {
  const float* X; int64_t T, ldx; const Matrix* W; const float* bias;
  float* Y; int64_t ldy; bool accumulate;
};

// Computes Y for tokens [t0, t1) and rows [n0, n1) block by block: each weight block stays in L1
// while it meets every token of the chunk; each loaded X vector is reused across the block's rows.
void run_tile(const KernelTable& kt, const MatmulArgs& a, int rows, int cols, int64_t t0, int64_t t1,
              int64_t n0, int64_t n1) {
  const Matrix& w = *a.W;
  const int64_t row_bytes = w.row_bytes();
  const uint8_t* base = static_cast<const uint8_t*>(w.data);
  const bool grouped = w.quant == Quant::Fp8Block || w.quant == Quant::Mxfp4;
  const float* row_scale = w.quant == Quant::Fp8Channel ? static_cast<const float*>(w.scales) : nullptr;
  float out[detail::kMaxBlockOutputs];
  const void* row_scales[detail::kMaxBlockOutputs];
  for (int64_t n = n0; n < n1; n += rows) {
    const int r = int(std::min<int64_t>(rows, n1 - n));
    if (grouped) {
      for (int ri = 0; ri < r; ++ri) {
        const int64_t row = n + ri;
        row_scales[ri] = w.quant == Quant::Mxfp4
                             ? static_cast<const void*>(static_cast<const uint8_t*>(w.scales) + row * w.mx_groups())
                             : static_cast<const void*>(static_cast<const float*>(w.scales) +
                                                        (row / kFp8BlockSize) * w.block_cols());
      }
    }
    BlockFn full = grouped ? nullptr : kt.block(w.dtype, r, cols);
    QBlockFn qfull = grouped ? kt.qblock(w.quant, r, cols) : nullptr;
    for (int64_t t = t0; t < t1; t += cols) {
      const int c = int(std::min<int64_t>(cols, t1 - t));
      if (grouped) {
        QBlockFn fn = c == cols ? qfull : kt.qblock(w.quant, r, c);
        fn(a.X + t * a.ldx, a.ldx, base + n * row_bytes, row_bytes, row_scales, w.cols, out);
      } else {
        BlockFn fn = c == cols ? full : kt.block(w.dtype, r, c);
        fn(a.X + t * a.ldx, a.ldx, base + n * row_bytes, w.cols, out);
      }
      for (int ci = 0; ci < c; ++ci) {
        float* y = a.Y + (t + ci) * a.ldy + n;
        for (int ri = 0; ri < r; ++ri) {
          float v = out[ri * c + ci];
          if (row_scale) v *= row_scale[n + ri];  // per-output-channel FP8: y = s[n] · Σ e4m3(w)·x
          if (a.bias) v += a.bias[n + ri];
          y[ri] = a.accumulate ? y[ri] + v : v;
        }
      }
    }
  }
}

// Degenerate shapes and unsupported types, kept out of the hot path.
void matmul_without_kernel(const MatmulArgs& a, float value) {
  for (int64_t t = 0; t < a.T; ++t) {
    float* y = a.Y + t * a.ldy;
    for (int64_t n = 0; n < a.W->rows; ++n) {
      const float v = value + (a.bias ? a.bias[n] : 0.0f);
      y[n] = a.accumulate ? y[n] + v : v;
    }
  }
}

// Whether the matrix's storage is one this build has kernels for (a caller bug otherwise: the
// loader only produces these combinations).
bool supported(const KernelTable& kt, const Matrix& w) {
  switch (w.quant) {
    case Quant::None: return kt.block(w.dtype, 1, 1) != nullptr && w.dtype != DType::F8_E4M3;
    case Quant::Fp8Channel: return w.dtype == DType::F8_E4M3 && w.scales;
    case Quant::Fp8Block: return w.dtype == DType::F8_E4M3 && w.scales;
    case Quant::Mxfp4: return w.dtype == DType::U8 && w.scales;
  }
  return false;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Generic: return "generic";
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
  }
  return "?";
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() { return kernels().isa; }

void set_isa_for_testing(Isa isa) {
  if (cpu_supports(isa)) active_table().store(table_for(isa), std::memory_order_relaxed);
}

bool weights_stay_cached(uint64_t weight_bytes) {
  // GLM_CPU_CACHE_RESIDENT=0 keeps every model on the streaming path (A/B timing, like GLM_CPU_ISA).
  if (const char* env = std::getenv("GLM_CPU_CACHE_RESIDENT"); env && std::strcmp(env, "0") == 0) return false;
  // 32 MiB: one Zen 4 CCD's L3, a few MB below a recent Xeon's; the default model is 15.4 MiB. (Larger
  // models measured here stream faster one row at a time: the 1.2 GB bench model decodes 14% slower
  // with blocked rows.)
  uint64_t limit = uint64_t(32) << 20;
#ifdef _SC_LEVEL3_CACHE_SIZE
  const long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);  // glibc: from cpuid; 0 or -1 where unknown
  if (llc > 0) limit = std::min(limit, uint64_t(llc));
#endif
  return weight_bytes <= limit;
}

float dot(const float* a, const float* b, int64_t n) { return n > 0 ? kernels().dot(a, b, n) : 0.0f; }

void axpy(float a, const float* x, float* y, int64_t n) {
  if (n > 0) kernels().axpy(a, x, y, n);
}

void dot_rows(const float* q, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  if (n > 0) kernels().dot_rows(q, rows, rt, n, d, out);
}

void weighted_row_sum(const float* w, const void* const* rows, DType rt, int64_t n, int64_t d, float* out) {
  if (n > 0 && d > 0) kernels().weighted_row_sum(w, rows, rt, n, d, out);
}

void convert_to_f32(const void* src, DType t, float* dst, int64_t n) {
  if (n <= 0) return;
  if (t != DType::F32 && t != DType::BF16 && t != DType::F16) {
    std::fill(dst, dst + n, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  kernels().convert_to_f32(src, t, dst, n);
}

namespace {

// How one product is cut into work items: (token chunk, row block), token-chunk major, so a thread's
// contiguous range is a run of row blocks over one X chunk that both threads' L2s hold while they
// split its rows.
struct TilePlan {
  MatmulArgs a;
  int rows = 1, cols = 1;
  int64_t t_chunk = 0, n_rblocks = 0, items = 0, grain = 1;
};

// False when the product needs no kernel (empty, K == 0, or an unsupported format: handled inline).
bool plan_tiles(const KernelTable& kt, const MatmulArgs& a, TilePlan* p) {
  const int64_t N = a.W->rows, K = a.W->cols;
  if (a.T <= 0 || N <= 0) return false;
  if (K <= 0) {
    matmul_without_kernel(a, 0.0f);
    return false;
  }
  if (!supported(kt, *a.W)) {
    matmul_without_kernel(a, std::numeric_limits<float>::quiet_NaN());
    return false;
  }
  p->a = a;
  // Decode (T == 1) streams weights. While X fits comfortably in L1 (K <= 4096), one row at a time
  // reads the matrix as a single sequential stream, which the hardware prefetchers follow best
  // (measured on Zen 4: ~21 GB/s vs ~12 GB/s for 8 interleaved 2 KB rows). Longer rows would re-read
  // X from L2 for every row, so there several rows share each X load.
  // Prefill reuses each weight vector across the block's tokens.
  // A few tokens (a decode step's routed experts: 2-3 tokens each) are still memory-bound: one weight
  // row at a time, reused across all of them, streams like the GEMV (measured here, 1024-wide BF16
  // rows, 2 threads: ~30 GB/s of weights for 2 tokens against ~8 GB/s with 4 interleaved rows).
  // Weights that stay in the caches are not memory-bound: there one row's single FMA chain is the limit
  // (latency, ~16 MACs per 4 cycles), so several rows per block keep several chains in flight.
  const bool streaming = !a.W->cache_resident && a.T <= kStreamingMaxTokens && a.T <= kt.gemm_cols && K <= kGemvSingleRowMaxK;
  p->rows = streaming ? 1 : a.T == 1 ? kt.gemv_rows : kt.gemm_rows;
  p->cols = streaming ? int(a.T) : kt.gemm_cols;
  p->t_chunk = a.T;
  if (a.T > p->cols) {
    p->t_chunk = std::max<int64_t>(p->cols, kXChunkBytes / (K * int64_t(sizeof(float))) / p->cols * p->cols);
    p->t_chunk = std::min(p->t_chunk, a.T);
  }
  const int64_t n_tchunks = (a.T + p->t_chunk - 1) / p->t_chunk;
  p->n_rblocks = (N + p->rows - 1) / p->rows;
  p->items = n_tchunks * p->n_rblocks;
  const int64_t item_macs = int64_t(p->rows) * p->t_chunk * K;
  p->grain = std::max<int64_t>(1, (kMinChunkMacs + item_macs - 1) / item_macs);
  return true;
}

// Runs items [begin, end) of one plan.
void run_items(const KernelTable& kt, const TilePlan& p, int64_t begin, int64_t end) {
  while (begin < end) {
    const int64_t tc = begin / p.n_rblocks, rb0 = begin % p.n_rblocks;
    const int64_t rb1 = std::min(p.n_rblocks, rb0 + (end - begin));
    const int64_t t0 = tc * p.t_chunk, t1 = std::min(p.a.T, t0 + p.t_chunk);
    run_tile(kt, p.a, p.rows, p.cols, t0, t1, rb0 * p.rows, std::min(p.a.W->rows, rb1 * p.rows));
    begin += rb1 - rb0;
  }
}

}  // namespace

void matmul(ThreadPool& pool, const float* X, int64_t T, int64_t ldx, const void* W, DType wt,
            int64_t N, int64_t K, const float* bias, float* Y, int64_t ldy, bool accumulate) {
  Matrix m;
  m.data = W;
  m.dtype = wt;
  m.rows = N;
  m.cols = K;
  matmul(pool, X, T, ldx, m, bias, Y, ldy, accumulate);
}

void matmul(ThreadPool& pool, const float* X, int64_t T, int64_t ldx, const Matrix& W, const float* bias, float* Y,
            int64_t ldy, bool accumulate) {
  const KernelTable& kt = kernels();
  TilePlan plan;
  if (!plan_tiles(kt, MatmulArgs{X, T, ldx, &W, bias, Y, ldy, accumulate}, &plan)) return;
  struct Ctx { const KernelTable* kt; const TilePlan* p; } ctx{&kt, &plan};
  // Captures one pointer so std::function stores it inline (no allocation per call).
  pool.parallel_for(plan.items, plan.grain, [c = &ctx](int64_t b, int64_t e) { run_items(*c->kt, *c->p, b, e); });
}

void matmul_many(ThreadPool& pool, const MatmulJob* jobs, size_t n_jobs) {
  const KernelTable& kt = kernels();
  std::vector<TilePlan> plans;
  std::vector<int64_t> first;  // first global item of each plan
  plans.reserve(n_jobs);
  int64_t total = 0, grain = INT64_MAX;
  for (size_t j = 0; j < n_jobs; ++j) {
    const MatmulJob& m = jobs[j];
    TilePlan p;
    if (!plan_tiles(kt, MatmulArgs{m.X, m.T, m.ldx, m.W, m.bias, m.Y, m.ldy, m.accumulate}, &p)) continue;
    first.push_back(total);
    total += p.items;
    grain = std::min(grain, p.grain);
    plans.push_back(p);
  }
  if (total == 0) return;
  struct Ctx { const KernelTable* kt; const std::vector<TilePlan>* plans; const std::vector<int64_t>* first; } ctx{&kt, &plans, &first};
  // One dispatch over the concatenated item ranges: a chunk may span the end of one product and the
  // start of the next.
  pool.parallel_for(total, grain, [c = &ctx](int64_t b, int64_t e) {
    size_t j = size_t(std::upper_bound(c->first->begin(), c->first->end(), b) - c->first->begin()) - 1;
    while (b < e) {
      const int64_t start = (*c->first)[j], stop = start + (*c->plans)[j].items;
      const int64_t end_here = std::min(e, stop);
      run_items(*c->kt, (*c->plans)[j], b - start, end_here - start);
      b = end_here;
      ++j;
    }
  });
}

}  // namespace glm::cpu
