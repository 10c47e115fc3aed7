// Prefill attention throughput at GLM-4.5-Air's shapes (96 query heads, 8 kv heads, head_dim 128), run
// on a lent GPU by scripts/gpu-check.sh (GLM_ATTN_BENCH=1 glm_kernel_tests_gpu bench_attention); on the
// harness, and on the GPU without the variable, it does nothing. One 2048-token prompt from position 0
// (one prefill step, 256-token pages) and a mixed step (a 1024-token chunk after a 1024-token prefix,
// plus 64 decode rows at position 2047 of their own sequences), through the fp32 attention_prefill and the
// tensor-core attention_prefill_mma. FLOPs counted as the causal work 4 * sum_r (pos_r + 1) * head_dim *
// n_heads (QK^T and PV); the mma kernel's split S does twice that on tensor cores. The two outputs are
// compared (rel L2, expected ~2e-3) so a fast wrong kernel shows. Median of 10 after 2 warm-ups (CUDA
// events). Rows go to $GLM_ATTN_BENCH_JSON when set. Unverified until a GPU is lent.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <numeric>

#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

TEST(bench_attention_air_prefill) {
#if defined(GLM_TEST_ON_GPU)
  if (!std::getenv("GLM_ATTN_BENCH")) return;
  const int64_t n_heads = 96, n_kv = 8, d = 128, page = 256, max_len = 2048;
  struct Case { const char* what; std::vector<int32_t> seq, pos; };
  std::vector<Case> cases(2);
  cases[0].what = "prefill 2048";
  for (int p = 0; p < 2048; ++p) cases[0].seq.push_back(0), cases[0].pos.push_back(p);
  cases[1].what = "mixed 1024+64";
  for (int p = 1024; p < 2048; ++p) cases[1].seq.push_back(0), cases[1].pos.push_back(p);
  for (int b = 1; b <= 64; ++b) cases[1].seq.push_back(b), cases[1].pos.push_back(2047);
  const int64_t n_seqs = 65, pps = max_len / page;
  glm::cuda::KvLayout L{n_kv, d, page, n_seqs * pps};
  std::mt19937 rng(9);
  std::vector<int32_t> table(size_t(n_seqs * pps));
  std::iota(table.begin(), table.end(), 0);
  std::shuffle(table.begin(), table.end(), rng);
  DeviceBuffer<float> d_pool(random_floats(rng, size_t(L.n_pages * L.page_floats())));
  DeviceBuffer<int32_t> d_table(table);
  std::string json = "[";
  std::printf("%-16s %-22s %6s %10s %8s %10s\n", "case", "kernel", "rows", "ms", "TFLOPS", "relL2");
  for (const Case& c : cases) {
    const int64_t rows = int64_t(c.seq.size());
    DeviceBuffer<float> d_q(random_floats(rng, size_t(rows * n_heads * d), -1.5f, 1.5f));
    DeviceBuffer<float> d_ref(size_t(rows * n_heads * d)), d_out(size_t(rows * n_heads * d));
    DeviceBuffer<int32_t> d_seq(c.seq), d_pos(c.pos);
    glm::cuda::PrefillAttentionArgs a;
    a.rows = rows;
    a.n_heads = n_heads;
    a.pages_per_seq = pps;
    a.scale = 1.0f / std::sqrt(float(d));
    double flops = 0;
    for (int32_t p : c.pos) flops += 4.0 * double(p + 1) * double(d) * double(n_heads);
    std::vector<float> ref;
    for (int k = 0; k < 2; ++k) {
      const bool mma = k == 1;
      float* out = mma ? d_out.get() : d_ref.get();
      std::vector<float> t;
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      bool ok = true;
      for (int i = 0; i < 12 && ok; ++i) {
        cudaEventRecord(e0);
        ok = (mma ? glm::cuda::attention_prefill_mma : glm::cuda::attention_prefill)(Stream{}, out, d_q.get(), d_pool.get(), nullptr, L,
                                                                                   d_table.get(), d_seq.get(), d_pos.get(), a)
                 .is_ok();
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 2) t.push_back(ms);
      }
      cudaEventDestroy(e0);
      cudaEventDestroy(e1);
      CHECK(ok && device_ok(c.what)) << (mma ? "attention_prefill_mma" : "attention_prefill") << " failed: " << c.what;
      if (!ok) continue;
      std::sort(t.begin(), t.end());
      const double ms = t[t.size() / 2];
      double rel = 0;
      if (!mma) {
        ref = d_ref.download();
      } else {
        const auto got = d_out.download();
        double num = 0, den = 0;
        for (size_t i = 0; i < got.size(); ++i) num += double(got[i] - ref[i]) * (got[i] - ref[i]), den += double(ref[i]) * ref[i];
        rel = std::sqrt(num / std::max(den, 1e-30));
        CHECK(rel <= 4e-3) << c.what << ": attention_prefill_mma vs attention_prefill rel L2 " << rel;
      }
      const char* kernel = mma ? "attention_prefill_mma" : "attention_prefill";
      std::printf("%-16s %-22s %6lld %10.3f %8.1f %10.2e\n", c.what, kernel, (long long)rows, ms, flops / (ms * 1e-3) * 1e-12, rel);
      char row[256];
      std::snprintf(row, sizeof row, "%s{\"kernel\":\"%s\",\"case\":\"%s\",\"rows\":%lld,\"ms\":%.4f,\"tflops\":%.2f,\"rel_l2_vs_fp32\":%.3g}",
                    json.size() > 1 ? "," : "", kernel, c.what, (long long)rows, ms, flops / (ms * 1e-3) * 1e-12, rel);
      json += row;
    }
  }
  json += "]";
  if (const char* path = std::getenv("GLM_ATTN_BENCH_JSON")) {
    if (FILE* f = std::fopen(path, "w")) {
      std::fprintf(f, "%s\n", json.c_str());
      std::fclose(f);
    }
  }
#endif
}
