// Device token selection at GLM's vocab (151552), rows 1 and 8, run on a lent GPU by scripts/gpu-check.sh
// (GLM_SAMPLE_BENCH=1 glm_kernel_tests_gpu bench_sample); on the harness, and on the GPU without the
// variable, it does nothing. Times argmax_tokens (greedy), sample_tokens at temperature 0.7 + top-p 0.9
// with penalties over a 300-token history, the same with 20 top logprobs, temperature 1 + top-k 50, and plain temperature 1 (the whole
// vocab kept), against the copy of the logits rows to the host that device selection replaces. Median of
// 20 after 3 warm-ups, host clock around a synchronised launch (so it includes the launch latency a
// decode step pays). Rows go to $GLM_SAMPLE_BENCH_JSON when set. Unverified until a GPU is lent.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

TEST(bench_sample_tokens_vocab_151552) {
#if defined(GLM_TEST_ON_GPU)
  if (!std::getenv("GLM_SAMPLE_BENCH")) return;
  const int64_t vocab = 151552;
  std::mt19937 rng(31);
  std::string json = "[";
  std::printf("%-28s %5s %10s\n", "case", "rows", "us");
  for (int64_t rows : {1, 8}) {
    std::vector<float> l(static_cast<size_t>(rows * vocab));
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (auto& v : l) v = nd(rng);
    DeviceBuffer<float> d_l(l), d_work(static_cast<size_t>(rows * vocab));
    DeviceBuffer<int32_t> d_t(static_cast<size_t>(rows));
    std::vector<int32_t> hist;
    for (int i = 0; i < 300; ++i) hist.push_back(i * 499), hist.push_back(i % 3);
    DeviceBuffer<int32_t> d_h(hist);
    std::vector<float> host(static_cast<size_t>(rows * vocab));
    auto time_us = [&](const std::function<void()>& fn) {
      std::vector<double> t;
      for (int it = 0; it < 23; ++it) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        cudaDeviceSynchronize();
        const auto t1 = std::chrono::steady_clock::now();
        if (it >= 3) t.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      }
      std::sort(t.begin(), t.end());
      return t[t.size() / 2];
    };
    auto report = [&](const char* what, double us) {
      std::printf("%-28s %5lld %10.1f\n", what, (long long)rows, us);
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s{\"case\":\"%s\",\"rows\":%lld,\"us\":%.2f}", json.size() > 1 ? "," : "", what,
                    (long long)rows, us);
      json += buf;
    };
    report("copy logits to host", time_us([&] {
             cudaMemcpy(host.data(), d_l.get(), host.size() * sizeof(float), cudaMemcpyDeviceToHost);
           }));
    report("argmax_tokens", time_us([&] { CHECK(glm::cuda::argmax_tokens(Stream{}, d_t.get(), d_l.get(), rows, vocab).is_ok()); }));
    struct Case { const char* what; double t, p; int64_t k; bool pen; int32_t top_lp; };
    for (const Case& c : {Case{"T0.7 top_p0.9 penalties", 0.7, 0.9, 0, true, -1},
                          Case{"T0.7 top_p0.9 + 20 logprobs", 0.7, 0.9, 0, false, 20},
                          Case{"T1 top_k50", 1, 1, 50, false, -1}, Case{"T1 full vocab", 1, 1, 0, false, -1}}) {
      std::vector<glm::cuda::SampleParams> ps(static_cast<size_t>(rows));
      for (auto& p : ps) {
        p.temperature = c.t;
        p.top_p = c.p;
        p.top_k = c.k;
        p.u = 0.5;
        p.top_logprobs = c.top_lp;
        if (c.pen) p.repetition_penalty = 1.1, p.frequency_penalty = 0.3, p.history_count = 300;
      }
      DeviceBuffer<glm::cuda::SampleParams> d_p(ps);
      DeviceBuffer<float> d_chosen(static_cast<size_t>(rows)), d_top(static_cast<size_t>(rows * 20));
      DeviceBuffer<int32_t> d_top_ids(static_cast<size_t>(rows * 20));
      const glm::cuda::SampleLogprobs lp{d_chosen.get(), d_top_ids.get(), d_top.get(), 20};
      report(c.what, time_us([&] {
               CHECK(glm::cuda::sample_tokens(Stream{}, d_t.get(), d_l.get(), rows, vocab, d_p.get(), d_h.get(),
                                              d_work.get(), &lp).is_ok());
             }));
    }
    CHECK(device_ok("bench_sample"));
  }
  json += "]";
  if (const char* path = std::getenv("GLM_SAMPLE_BENCH_JSON")) {
    if (FILE* f = std::fopen(path, "w")) {
      std::fputs(json.c_str(), f);
      std::fclose(f);
    }
  }
#endif
}
