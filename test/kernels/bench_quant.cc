// Throughput of the quantized GEMMs at GLM-4.5-Air shapes (issue 6, item 7; fp8w-*: the CUDA backend's
// weight-only FP8 projections fp8_linear, issue 5), run on a lent GPU by
// scripts/gpu-check.sh (GLM_QUANT_BENCH=1 glm_kernel_tests_gpu bench_quant). On the harness, and on the
// GPU without the variable, it does nothing. Prints one line per (kernel, shape): median time over 20
// launches after 3 warm-ups (CUDA events), TFLOPS (2*M*N*K) and GB/s (weight + activation + output
// bytes, each once), and writes the rows to $GLM_QUANT_BENCH_JSON when set.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

TEST(bench_quant_gemm_air_shapes) {
#if defined(GLM_TEST_ON_GPU)
  if (!std::getenv("GLM_QUANT_BENCH")) return;
  struct Shape { const char* what; int64_t n, k; };
  // GLM-4.5-Air: hidden 4096, q_proj 96*128 = 12288 outputs, routed expert intermediate 1408.
  const Shape shapes[] = {{"q_proj", 12288, 4096}, {"expert gate|up", 1408, 4096}, {"expert down", 4096, 1408}};
  const int64_t ms[] = {1, 2048};
  std::string json = "[";
  std::mt19937 rng(7);
  std::printf("%-10s %-15s %6s %6s %6s %10s %8s %8s\n", "kernel", "shape", "M", "N", "K", "us", "TFLOPS", "GB/s");
  for (const Shape& s : shapes) {
    const int64_t n = s.n, k = s.k, mmax = 2048;
    std::vector<uint8_t> w8(size_t(n * k)), blocks(size_t(n * k / 2)), mscales(size_t(n * k / 32));
    for (auto& v : w8) { v = uint8_t(rng()); if ((v & 0x7f) == 0x7f) v = 0x3f; }
    for (auto& v : blocks) v = uint8_t(rng());
    for (auto& v : mscales) v = uint8_t(120 + rng() % 8);
    const auto x = random_floats(rng, size_t(mmax * k));
    DeviceBuffer<uint8_t> d_w8(w8), d_blocks(blocks), d_ms(mscales), d_xq(size_t(mmax * k));
    DeviceBuffer<float> d_x(x), d_y(size_t(mmax * n)), d_xs(size_t(mmax * ((k + 127) / 128))),
        d_wsc(std::vector<float>(size_t(n), 0.01f)), d_wsb(std::vector<float>(size_t(((n + 127) / 128) * ((k + 127) / 128)), 0.01f));
    for (int64_t m : ms) {
      struct Variant { const char* name; double weight_bytes; std::function<glm::Status()> run; bool x_fp32 = false; };
      const glm::cuda::Mxfp4Weight mw{d_blocks.get(), d_ms.get(), n, k};
      const glm::cuda::Fp8Weight fc{d_w8.get(), d_wsc.get(), n, k, glm::cuda::Fp8Scaling::PerChannel};
      const glm::cuda::Fp8Weight fb{d_w8.get(), d_wsb.get(), n, k, glm::cuda::Fp8Scaling::Block128};
      std::vector<Variant> vs = {
          {"mxfp4", double(n * k) * 17 / 32, [&] { return glm::cuda::mxfp4_matmul(Stream{}, d_y.get(), d_x.get(), mw, m); }, true},
          // The CUDA backend's FP8 dense path (issue 5): weight-only GEMV at m = 1, bf16-tile GEMM at 2048.
          {"fp8w-chan", double(n * k), [&] { return glm::cuda::fp8_linear(Stream{}, d_y.get(), d_x.get(), fc, nullptr, m, false); }, true},
          {"fp8w-blk", double(n * k), [&] { return glm::cuda::fp8_linear(Stream{}, d_y.get(), d_x.get(), fb, nullptr, m, false); }, true},
          {"fp8-chan", double(n * k), [&] { return glm::cuda::fp8_gemm(Stream{}, d_y.get(), d_xq.get(), d_xs.get(), fc, m); }},
          {"fp8-blk", double(n * k), [&] { return glm::cuda::fp8_gemm(Stream{}, d_y.get(), d_xq.get(), d_xs.get(), fb, m); }},
          {"actq-tok", 0, [&] { return glm::cuda::fp8_quantize_activations(Stream{}, d_xq.get(), d_xs.get(), d_x.get(), m, k, k); }},
      };
      if (glm::cuda::fp8_gemm_sm90_available()) {
        vs.push_back({"fp8-chan90", double(n * k), [&] { return glm::cuda::fp8_gemm_sm90(Stream{}, d_y.get(), d_xq.get(), d_xs.get(), fc, m); }});
        vs.push_back({"fp8-blk90", double(n * k), [&] { return glm::cuda::fp8_gemm_sm90(Stream{}, d_y.get(), d_xq.get(), d_xs.get(), fb, m); }});
      }
      // Valid activations for the fp8 kernels (per 128 group: the block-scale layout; the per-token
      // variant reads only column 0 of the scales, which is fine for timing).
      CHECK(glm::cuda::fp8_quantize_activations(Stream{}, d_xq.get(), d_xs.get(), d_x.get(), m, k, 128).is_ok());
      for (auto& v : vs) {
        std::vector<float> t;
        cudaEvent_t a, b;
        cudaEventCreate(&a);
        cudaEventCreate(&b);
        bool ok = true;
        for (int i = 0; i < 23 && ok; ++i) {
          cudaEventRecord(a);
          ok = v.run().is_ok();
          cudaEventRecord(b);
          cudaEventSynchronize(b);
          float ms_ = 0;
          cudaEventElapsedTime(&ms_, a, b);
          if (i >= 3) t.push_back(ms_);
        }
        cudaEventDestroy(a);
        cudaEventDestroy(b);
        CHECK(ok && device_ok(v.name)) << v.name << " failed at m " << m << " " << s.what;
        if (!ok) continue;
        std::sort(t.begin(), t.end());
        const double sec = t[t.size() / 2] * 1e-3;
        const bool actq = v.weight_bytes == 0;
        const double flops = actq ? 0 : 2.0 * double(m) * double(n) * double(k);
        const double bytes = actq ? double(m * k) * 5 : v.weight_bytes + double(m * k) * (v.x_fp32 ? 4 : 1) + double(m * n) * 4;
        std::printf("%-10s %-15s %6lld %6lld %6lld %10.1f %8.1f %8.0f\n", v.name, s.what, (long long)m, (long long)n, (long long)k,
                    sec * 1e6, flops / sec * 1e-12, bytes / sec * 1e-9);
        char row[256];
        std::snprintf(row, sizeof row, "%s{\"kernel\":\"%s\",\"shape\":\"%s\",\"m\":%lld,\"n\":%lld,\"k\":%lld,\"us\":%.2f,\"tflops\":%.2f,\"gbps\":%.1f}",
                      json.size() > 1 ? "," : "", v.name, s.what, (long long)m, (long long)n, (long long)k, sec * 1e6, flops / sec * 1e-12,
                      bytes / sec * 1e-9);
        json += row;
      }
    }
  }
  json += "]";
  if (const char* path = std::getenv("GLM_QUANT_BENCH_JSON")) {
    if (FILE* f = std::fopen(path, "w")) {
      std::fprintf(f, "%s\n", json.c_str());
      std::fclose(f);
    }
  }
#endif
}
