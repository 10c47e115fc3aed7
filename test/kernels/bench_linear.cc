// Throughput of the dense BF16 `linear` (issue 5) at GLM-4.5-Air shapes, run on a lent GPU by
// scripts/gpu-check.sh (GLM_LINEAR_BENCH=1 glm_kernel_tests_gpu bench_linear). On the harness, and on
// the GPU without the variable, it does nothing. Decode m = 1 (the GEMV: judge by GB/s against the
// measured copy bandwidth) and prefill m = 2048 (the mma.sync GEMM and, where the device runs it, the
// sm_90a wgmma twin linear_gemm_sm90: judge by TFLOPS against the bf16 matrix rate gpu-check measures).
// Median of 20 launches after 3 warm-ups (CUDA events); bytes = bf16 weights + fp32 x and y once each. Rows go to $GLM_LINEAR_BENCH_JSON when set. Unverified until a GPU is lent.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

TEST(bench_linear_air_shapes) {
#if defined(GLM_TEST_ON_GPU)
  if (!std::getenv("GLM_LINEAR_BENCH")) return;
  struct Shape { const char* what; int64_t n, k; };
  // GLM-4.5-Air: hidden 4096, q 96 x 128 = 12288, k/v 8 x 128 = 1024, routed expert intermediate 1408.
  // The shared expert has the routed experts' shape (intermediate 1408); q|k|v fused is 12288 + 2 x 1024.
  const Shape shapes[] = {{"q_proj", 12288, 4096}, {"k|v_proj", 1024, 4096}, {"q|k|v fused", 14336, 4096},
                          {"o_proj", 4096, 12288}, {"shared gate|up", 1408, 4096}, {"shared down", 4096, 1408}};
  std::string json = "[";
  std::mt19937 rng(8);
  std::printf("%-11s %-15s %6s %6s %6s %10s %8s %8s\n", "kernel", "shape", "M", "N", "K", "us", "TFLOPS", "GB/s");
  for (const Shape& s : shapes) {
    const int64_t n = s.n, k = s.k, mmax = 2048;
    std::vector<uint16_t> w(size_t(n * k));
    for (auto& v : w) v = to_bf16(float(int(rng() % 2001) - 1000) * 1e-4f);
    DeviceBuffer<uint16_t> d_w(w);
    DeviceBuffer<float> d_x(random_floats(rng, size_t(mmax * k))), d_y(size_t(mmax * n));
    glm::cuda::LinearWeight lw;
    lw.data = d_w.get();
    lw.type = glm::cuda::WeightType::BF16;
    lw.n = n;
    lw.k = k;
    // Runs: `linear` at m = 1 (GEMV) and 2048 (mma.sync GEMM), then the sm_90a wgmma twin at 2048 when
    // this device runs it.
    for (int run = 0; run < 3; ++run) {
      const int64_t m = run == 0 ? 1 : 2048;
      const bool sm90 = run == 2;
      if (sm90 && !glm::cuda::linear_gemm_sm90_available()) continue;
      glm::cuda::LinearArgs args;
      args.m = m;
      std::vector<float> t;
      cudaEvent_t a, b;
      cudaEventCreate(&a);
      cudaEventCreate(&b);
      bool ok = true;
      for (int i = 0; i < 23 && ok; ++i) {
        cudaEventRecord(a);
        ok = (sm90 ? glm::cuda::linear_gemm_sm90 : glm::cuda::linear)(Stream{}, d_y.get(), d_x.get(), lw, args).is_ok();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms_ = 0;
        cudaEventElapsedTime(&ms_, a, b);
        if (i >= 3) t.push_back(ms_);
      }
      cudaEventDestroy(a);
      cudaEventDestroy(b);
      CHECK(ok && device_ok(s.what)) << "linear failed at m " << m << " " << s.what;
      if (!ok) continue;
      std::sort(t.begin(), t.end());
      const double sec = t[t.size() / 2] * 1e-3;
      const double flops = 2.0 * double(m) * double(n) * double(k);
      const double bytes = double(n * k) * 2 + double(m * k) * 4 + double(m * n) * 4;
      std::printf("%-11s %-15s %6lld %6lld %6lld %10.1f %8.1f %8.0f\n", sm90 ? "linear-sm90" : "linear-bf16", s.what, (long long)m, (long long)n, (long long)k, sec * 1e6,
                  flops / sec * 1e-12, bytes / sec * 1e-9);
      char row[256];
      std::snprintf(row, sizeof row, "%s{\"kernel\":\"%s\",\"shape\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"us\":%.2f,\"tflops\":%.2f,\"gbps\":%.1f}",
                    json.size() > 1 ? "," : "", sm90 ? "linear-sm90" : "linear-bf16", s.what, (long long)m, (long long)n, (long long)k, sec * 1e6, flops / sec * 1e-12,
                    bytes / sec * 1e-9);
      json += row;
    }
  }
  json += "]";
  if (const char* path = std::getenv("GLM_LINEAR_BENCH_JSON")) {
    if (FILE* f = std::fopen(path, "w")) {
      std::fprintf(f, "%s\n", json.c_str());
      std::fclose(f);
    }
  }
#endif
}
