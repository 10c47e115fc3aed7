// Microbenchmark of the CPU matmul kernels (not built by CMake). Prints, per ISA and thread count:
//   - measured memory read bandwidth (the roofline for decode),
//   - GEMV (T = 1) GB/s of weights streamed, as a fraction of that bandwidth,
//   - GEMM (T = 128) GFLOP/s.
// Build (x86), from the repo root:
//   d=/tmp/kbench; mkdir -p $d; F="-std=c++17 -O3 -DGLM_X86=1 -Icpp"
//   g++ $F -mavx2 -mfma -mf16c -c cpp/cpu/kernels_avx2.cc -o $d/a2.o
//   g++ $F -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c -mavx2 -c cpp/cpu/kernels_avx512.cc -o $d/a5.o
//   g++ $F bench/kernels_bench.cc cpp/cpu/kernels_dispatch.cc cpp/cpu/kernels_generic.cc cpp/cpu/thread_pool.cc \
//       $d/a2.o $d/a5.o -pthread -o $d/kernels_bench && $d/kernels_bench
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "cpu/kernels.h"

using namespace glm::cpu;
using glm::DType;

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Best-of-reps time of fn(), in seconds, after one warm-up call.
template <class F>
double best_time(int reps, F fn) {
  fn();
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now_s();
    fn();
    best = std::min(best, now_s() - t0);
  }
  return best;
}

// Read bandwidth: every thread sums its slice of a buffer far larger than the caches (integer adds
// vectorise freely and cost nothing next to the loads).
double read_bandwidth_gbs(ThreadPool& pool, const std::vector<uint64_t>& buf) {
  std::vector<uint64_t> sink(64 * 8);
  const double t = best_time(5, [&] {
    pool.parallel_for(int64_t(buf.size()), 1 << 16, [&](int64_t b, int64_t e) {
      uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (int64_t i = b; i + 4 <= e; i += 4) { s0 += buf[i]; s1 += buf[i + 1]; s2 += buf[i + 2]; s3 += buf[i + 3]; }
      sink[size_t(b % 64) * 8] += s0 + s1 + s2 + s3;
    });
  });
  return double(buf.size() * sizeof(uint64_t)) / t / 1e9;
}

}  // namespace

int main() {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::printf("detected ISA: %s\n", isa_name(detected_isa()));

  std::vector<uint64_t> big(size_t(512) << 20 >> 3, 1);  // 512 MB
  std::vector<Isa> isas{Isa::Generic};
  if (detected_isa() != Isa::Generic) isas.push_back(Isa::Avx2);
  if (detected_isa() == Isa::Avx512) isas.push_back(Isa::Avx512);

  // GEMV shapes (N × K) with enough copies of each matrix that one pass over all copies exceeds the
  // caches (≥ 256 MB), so the numbers are DRAM-bound like a real decode step.
  struct GemvShape { int64_t N, K; };
  const GemvShape gemv_shapes[] = {{4096, 1024}, {4096, 4096}, {1536, 4096}, {4096, 12288}};

  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    const double bw = read_bandwidth_gbs(pool, big);
    std::printf("\n== %d thread(s): memory read bandwidth %.1f GB/s\n", threads, bw);
    {
      // Dispatch latency of a near-empty parallel_for, back to back (workers spinning): the fixed cost
      // every kernel call of a decode step pays.
      std::atomic<int64_t> sink{0};
      const int calls = 100000;
      const double t = best_time(3, [&] {
        for (int i = 0; i < calls; ++i) pool.parallel_for(threads, 1, [&](int64_t b, int64_t e) { sink += e - b; });
      });
      std::printf("  pool: %.2f us per parallel_for (back to back)\n", t / calls * 1e6);
    }
    for (Isa isa : isas) {
      set_isa_for_testing(isa);
      for (const auto& s : gemv_shapes) {
        const int64_t bytes = s.N * s.K * 2;
        const int copies = int(std::max<int64_t>(1, (int64_t(256) << 20) / bytes));
        std::vector<uint16_t> w(size_t(s.N * s.K) * copies);
        for (size_t i = 0; i < w.size(); i += 7) w[i] = glm::f32_to_bf16(dist(rng));
        std::vector<float> x(size_t(s.K)), y(size_t(s.N));
        for (auto& v : x) v = dist(rng);
        const double t = best_time(3, [&] {
          for (int c = 0; c < copies; ++c)
            matmul(pool, x.data(), 1, s.K, w.data() + size_t(c) * s.N * s.K, DType::BF16, s.N, s.K, nullptr,
                   y.data(), s.N);
        }) / copies;
        const double gbs = double(bytes) / t / 1e9;
        std::printf("  %-7s GEMV bf16 %5lld x %-5lld  %7.1f us  %6.1f GB/s  (%3.0f%% of read bw)\n", isa_name(isa),
                    (long long)s.N, (long long)s.K, t * 1e6, gbs, 100.0 * gbs / bw);
      }
      for (DType wt : {DType::BF16, DType::F32}) {
        const int64_t T = 128, N = 4096, K = 4096;
        std::vector<uint8_t> w(size_t(N * K) * (wt == DType::F32 ? 4 : 2), 0);
        if (wt == DType::F32) { auto* p = reinterpret_cast<float*>(w.data()); for (int64_t i = 0; i < N * K; ++i) p[i] = dist(rng); }
        else { auto* p = reinterpret_cast<uint16_t*>(w.data()); for (int64_t i = 0; i < N * K; ++i) p[i] = glm::f32_to_bf16(dist(rng)); }
        std::vector<float> x(size_t(T * K)), y(size_t(T * N));
        for (auto& v : x) v = dist(rng);
        const int reps = isa == Isa::Generic ? 1 : 3;
        const double t = best_time(reps, [&] { matmul(pool, x.data(), T, K, w.data(), wt, N, K, nullptr, y.data(), N); });
        std::printf("  %-7s GEMM %-4s T=%lld %lldx%lld  %8.2f ms  %6.1f GFLOP/s\n", isa_name(isa), glm::dtype_name(wt),
                    (long long)T, (long long)N, (long long)K, t * 1e3, 2.0 * T * N * K / t / 1e9);
      }
    }
  }
  return 0;
}
