// Decode/prefill benchmark of the CUDA backend on a synthetic model with GLM-4.5-Air's exact layer
// shapes (hidden 4096, 96 q / 8 kv heads x 128, 128 experts top-8 of 1408, 1 shared expert, vocab
// 151552), cut to a few layers (GLM_BENCH_LAYERS, default 3: 1 dense + 2 MoE) so it loads in seconds.
// Built only with the real CUDA runtime and run by scripts/gpu-check.sh; never by CI.
//
// The weights are random BF16 values built in memory (no checkpoint on disk): each matrix points at its
// own slice of a few shared host pools, so the upload streams ~10 GB without writing any of it to disk.
// Values only matter for routing, which the random router spreads over the experts.
//
// GLM_BENCH_FORMAT picks the weight format: bf16 (default); fp8 (every projection FP8 E4M3 with per-row
// scales, as GLM-4.5-Air-FP8: embeddings, lm_head and the router stay BF16); fp8-block (the same with
// 128x128 block scales); mxfp4 (routed experts MXFP4, the rest BF16, as lib/quantize.ts writes). Random
// codes (FP8 exponents kept small, no NaN codes; any E2M1 nibble) with scales near the BF16 values' size.
//
// GLM_BENCH_KV picks the KV cache type: f32 (default, the numbers before issue 18), bf16 or fp8; the KV
// bytes a decode token reads are counted in that type (FP8: + 4 bytes of scale per row).
//
// Reports (stdout, and JSON to argv[1] when given): decode tokens/s at context 0 and 4096 with CUDA
// graphs on and off side by side (greedy token selected on the device, as generation does; the graph
// counters show the steps were replayed), prefill tokens/s for a 2048-token prompt, and the bytes a
// decode token must read (active weights + KV) as achieved GB/s — the number to hold against the
// device's copy bandwidth (issue 5 target: >= 75%).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda_backend/cuda_backend.h"
#include "engine/cuda_factory.h"
#include "engine/forward.h"

namespace {

using namespace glm;

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Pool {
  std::vector<uint16_t> data;
  size_t used = 0;
  // A distinct slice of `n` bf16 values (wrapping to reuse the random bytes when the pool is full:
  // distinct host pointers are what the backend keys uploads on; the values may repeat).
  const void* take(size_t n) {
    if (used + n > data.size()) used = 0;
    const void* p = data.data() + used;
    used += n + 64;  // keeps slices 128-byte aligned and distinct
    return p;
  }
};

Matrix bf16(Pool& pool, int64_t rows, int64_t cols) {
  Matrix m;
  m.dtype = DType::BF16;
  m.rows = rows, m.cols = cols;
  m.data = pool.take(size_t(rows * cols));
  return m;
}

enum class Format { Bf16, Fp8, Fp8Block, Mxfp4 };
// Host scales shared by every quantized matrix (only data pointers key the uploads): FP8 0.015 (codes
// up to ~1.9 -> ~0.03), MXFP4 2^-7 (E2M1 up to 6 -> ~0.05).
std::vector<float> g_fp8_scales(size_t(1) << 18, 0.015f);
std::vector<uint8_t> g_mx_scales(size_t(1408) * 4096 / 32 + 4096, uint8_t(120));

// A matrix in `f` whose data is a slice of `pool` (bytes reinterpreted; the pool is random).
Matrix quantized(Pool& pool, Format f, int64_t rows, int64_t cols) {
  if (f == Format::Bf16) return bf16(pool, rows, cols);
  Matrix m;
  m.rows = rows, m.cols = cols;
  if (f == Format::Mxfp4) {
    m.dtype = DType::U8, m.quant = Quant::Mxfp4, m.scales = g_mx_scales.data();
  } else {
    m.dtype = DType::F8_E4M3, m.quant = f == Format::Fp8 ? Quant::Fp8Channel : Quant::Fp8Block, m.scales = g_fp8_scales.data();
  }
  m.data = pool.take(size_t(m.rows * m.row_bytes() + 1) / 2);
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t layers = std::getenv("GLM_BENCH_LAYERS") ? std::atoi(std::getenv("GLM_BENCH_LAYERS")) : 3;
  const std::string fmt_name = std::getenv("GLM_BENCH_FORMAT") ? std::getenv("GLM_BENCH_FORMAT") : "bf16";
  const Format fmt = fmt_name == "fp8" ? Format::Fp8 : fmt_name == "fp8-block" ? Format::Fp8Block
                   : fmt_name == "mxfp4" ? Format::Mxfp4 : Format::Bf16;
  KvType kv_type = KvType::F32;
  if (const char* e = std::getenv("GLM_BENCH_KV"); e && !parse_kv_type(e, &kv_type)) {
    std::fprintf(stderr, "bench_air: GLM_BENCH_KV must be f32, bf16 or fp8\n");
    return 1;
  }
  const Format dense_fmt = fmt == Format::Mxfp4 ? Format::Bf16 : fmt;  // MXFP4 covers routed experts only
  ModelConfig c;
  c.hidden_size = 4096, c.num_hidden_layers = layers, c.num_attention_heads = 96, c.num_key_value_heads = 8;
  c.head_dim = 128, c.partial_rotary_factor = 0.5, c.rotary_dim = 64, c.rope_theta = 1e6, c.rms_norm_eps = 1e-5;
  c.vocab_size = 151552, c.intermediate_size = 10944, c.moe_intermediate_size = 1408, c.n_routed_experts = 128;
  c.n_shared_experts = 1, c.num_experts_per_tok = 8, c.n_group = 1, c.topk_group = 1, c.routed_scaling_factor = 1.0;
  c.norm_topk_prob = true, c.first_k_dense_replace = 1, c.use_qk_norm = false, c.attention_bias = true;
  c.max_position_embeddings = 131072;

  // Random bf16 in [-0.03, 0.03] (about the checkpoint's scale), as raw bits.
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-0.03f, 0.03f);
  auto random_pool = [&](size_t n) {
    Pool p;
    p.data.resize(n);
    for (auto& v : p.data) {
      float f = u(rng);
      uint32_t b;
      std::memcpy(&b, &f, 4);
      v = uint16_t(b >> 16);
    }
    return p;
  };
  Pool big = random_pool(size_t(1) << 28);  // 512 MiB: embeddings, attention, dense MLP
  Pool experts = random_pool(size_t(1408) * 4096 * 8);
  if (fmt != Format::Bf16) {
    // FP8 codes with the exponent's top bit clear (|v| < 2, never the NaN code); E2M1 nibbles are all valid.
    for (Pool* p : {&big, &experts}) {
      if (fmt == Format::Mxfp4 && p == &big) continue;
      for (auto& v : p->data) v = fmt == Format::Mxfp4 ? v : uint16_t(v & 0xBFBF);
    }
  }
  std::vector<float> ones(size_t(4096), 1.0f), small_bias(size_t(12288), 0.01f);

  ModelWeights w;
  w.embed_tokens = bf16(big, c.vocab_size, c.hidden_size);
  w.lm_head = bf16(big, c.vocab_size, c.hidden_size);
  w.final_norm = ones;
  w.layers.resize(size_t(layers));
  for (int64_t l = 0; l < layers; ++l) {
    LayerWeights& L = w.layers[size_t(l)];
    L.input_norm = ones, L.post_attention_norm = ones;
    L.attn.q = quantized(big, dense_fmt, c.q_width(), c.hidden_size);
    L.attn.k = quantized(big, dense_fmt, c.kv_width(), c.hidden_size);
    L.attn.v = quantized(big, dense_fmt, c.kv_width(), c.hidden_size);
    L.attn.o = quantized(big, dense_fmt, c.hidden_size, c.q_width());
    L.attn.q_bias.assign(size_t(c.q_width()), 0.01f);
    L.attn.k_bias.assign(size_t(c.kv_width()), 0.01f);
    L.attn.v_bias.assign(size_t(c.kv_width()), 0.01f);
    L.is_moe = c.is_moe_layer(l);
    if (!L.is_moe) {
      L.dense = {quantized(big, dense_fmt, c.intermediate_size, c.hidden_size),
                 quantized(big, dense_fmt, c.intermediate_size, c.hidden_size),
                 quantized(big, dense_fmt, c.hidden_size, c.intermediate_size)};
      continue;
    }
    L.moe.router = bf16(big, c.n_routed_experts, c.hidden_size);
    L.moe.correction_bias.assign(size_t(c.n_routed_experts), 0.0f);
    L.moe.experts.resize(size_t(c.n_routed_experts));
    for (auto& e : L.moe.experts) {
      e = {quantized(experts, fmt, c.moe_intermediate_size, c.hidden_size),
           quantized(experts, fmt, c.moe_intermediate_size, c.hidden_size),
           quantized(experts, fmt, c.hidden_size, c.moe_intermediate_size)};
    }
    L.moe.shared = {quantized(big, dense_fmt, c.moe_intermediate_size, c.hidden_size),
                    quantized(big, dense_fmt, c.moe_intermediate_size, c.hidden_size),
                    quantized(big, dense_fmt, c.hidden_size, c.moe_intermediate_size)};
  }

  Status st = cuda_backend_available();
  if (!st.is_ok()) {
    std::fprintf(stderr, "bench_air: %s\n", st.message().c_str());
    return 1;
  }
  // Bytes a decode token reads: every dense weight once, top-8 routed + the shared expert per MoE layer,
  // the router, embeddings row, lm_head, and the KV of `ctx` positions (K and V in the KV type); weights counted
  // in their stored format (data + scales, Matrix::bytes).
  auto decode_bytes = [&](int64_t ctx) {
    const double H = double(c.hidden_size);
    double b = double(w.lm_head.bytes()) + H * 2;
    for (int64_t l = 0; l < layers; ++l) {
      const LayerWeights& L = w.layers[size_t(l)];
      b += double(L.attn.q.bytes() + L.attn.k.bytes() + L.attn.v.bytes() + L.attn.o.bytes());
      auto mlp = [](const MlpWeights& m) { return double(m.gate.bytes() + m.up.bytes() + m.down.bytes()); };
      if (L.is_moe) b += double(c.num_experts_per_tok) * mlp(L.moe.experts[0]) + mlp(L.moe.shared) + double(L.moe.router.bytes());
      else b += mlp(L.dense);
      b += double(ctx) * 2 * double(c.num_key_value_heads) *
           double(c.head_dim * kv_type_bytes(kv_type) + (kv_type == KvType::FP8 ? 4 : 0));
    }
    return b;
  };
  std::string json = "{";
  for (const bool graphs : {true, false}) {
    CudaBackendOptions o;
    o.max_step_rows = 2048;
    o.kv.type = kv_type;
    o.kv.page_tokens = 256;
    o.kv.bytes = uint64_t(4) << 30;
    o.graphs = graphs;
    std::unique_ptr<Backend> be;
    double t0 = now_s();
    st = create_cuda_backend(c, w, o, &be);
    if (!st.is_ok()) {
      std::fprintf(stderr, "bench_air: load: %s\n", st.message().c_str());
      return 1;
    }
    std::printf("== format %s, KV %s, CUDA graphs %s: load (upload) %.1f s\n", fmt_name.c_str(), kv_type_name(kv_type),
                graphs ? "on" : "off", now_s() - t0);

    std::vector<float> logits;
    int32_t greedy_token = -1;
    // One sequence's pages: ids handed out in order from the pool (nothing else runs here).
    struct Kv {
      std::vector<PageId> pages;
      int64_t length = 0;
    };
    const int64_t page_tokens = be->kv_pool().page_tokens;
    // Runs one step of `n` tokens on `kv` at its current length; returns seconds. verify: a speculative
    // verification step (every row's greedy token wanted, as the scheduler asks for the last verified
    // token plus its drafts), which leaves the length unchanged (the next one rewrites the same slots).
    auto step = [&](Kv& kv, int64_t n, bool verify = false) -> double {
      while (int64_t(kv.pages.size()) * page_tokens < kv.length + n) kv.pages.push_back(PageId(kv.pages.size()));
      StepPlan plan;
      StepPlan::Sequence s;
      s.pages = kv.pages.data(), s.n_pages = int64_t(kv.pages.size());
      s.row_begin = 0, s.n_rows = n, s.start_pos = kv.length;
      plan.sequences.push_back(s);
      for (int64_t i = 0; i < n; ++i) {
        plan.tokens.push_back(int32_t((kv.length + i) * 7919 % c.vocab_size));
        plan.positions.push_back(int32_t(kv.length + i));
      }
      for (int64_t i = verify ? 0 : n - 1; i < n; ++i) plan.logit_rows.push_back(i);
      plan.greedy_tokens = n == 1 || verify;  // decode: the token is selected on the device (Model::generate's greedy path)
      logits.resize(size_t(c.vocab_size) * plan.logit_rows.size());
      std::vector<int32_t> tokens(plan.logit_rows.size(), -1);
      Status r;
      const double a = now_s();
      if (r.is_ok()) r = forward_step(*be, c, w, plan, logits.data(), nullptr, nullptr, tokens.data());
      greedy_token = tokens.back();
      const double t = now_s() - a;
      if (!r.is_ok()) {
        std::fprintf(stderr, "bench_air: step: %s\n", r.message().c_str());
        std::exit(1);
      }
      if (!verify) kv.length += n;
      return t;
    };
    const char* tag = graphs ? "graphs_on" : "graphs_off";
    auto measure_decode = [&](int64_t ctx, const char* key) {
      Kv kv;
      for (int64_t filled = 0; filled < ctx;) {
        const int64_t n = std::min<int64_t>(2048, ctx - filled);
        step(kv, n);
        filled += n;
      }
      for (int i = 0; i < 3; ++i) step(kv, 1);  // warm-up
      double t = 0;
      const int n = 20;
      for (int i = 0; i < n; ++i) t += step(kv, 1);
      const double tps = n / t, gbs = decode_bytes(ctx) * tps / 1e9;
      std::printf("decode at context %lld (graphs %s): %.1f tokens/s, %.1f GB/s of active weights + KV (%.2f GB per token)\n",
                  static_cast<long long>(ctx), graphs ? "on" : "off", tps, gbs, decode_bytes(ctx) / 1e9);
      json += std::string(json.size() > 1 ? "," : "") + "\"" + key + "_" + tag + "\":{\"tokens_per_s\":" + std::to_string(tps) +
              ",\"gb_per_s\":" + std::to_string(gbs);
      // Speculative verification steps (issue 11) of k = 1 and 2 drafts at the same context: their time
      // over a decode step's is what a round costs before the MTP layer's own step, so break-even
      // acceptance per draft is about (ratio + mtp - 1) / k. Not graphed (two or more rows per sequence).
      for (int64_t k = 1; k <= 2; ++k) {
        step(kv, 1 + k, true);  // warm-up
        double tv = 0;
        for (int i = 0; i < 10; ++i) tv += step(kv, 1 + k, true);
        const double ratio = (tv / 10) / (t / n);
        std::printf("  verification step of 1 + %lld drafts: %.3f ms, %.2fx a decode step\n", static_cast<long long>(k), 1e3 * tv / 10, ratio);
        json += ",\"verify_k" + std::to_string(k) + "_ratio\":" + std::to_string(ratio);
      }
      json += "}";
    };
    measure_decode(0, "decode_ctx0");
    measure_decode(4096, "decode_ctx4096");
    if (auto* cb = dynamic_cast<cuda_backend::CudaBackend*>(be.get())) {
      const auto& gs = cb->graph_stats();
      std::printf("graphs: %llu captures, %llu replays, %llu eager decode steps, %llu failures %s\n",
                  (unsigned long long)gs.captures, (unsigned long long)gs.replays, (unsigned long long)gs.eager_decode_steps,
                  (unsigned long long)gs.capture_failures, gs.last_failure.c_str());
      json += std::string(",\"") + tag + "_stats\":{\"captures\":" + std::to_string(gs.captures) +
              ",\"replays\":" + std::to_string(gs.replays) + ",\"failures\":" + std::to_string(gs.capture_failures) + "}";
    }
    if (graphs) {
      Kv kv;
      step(kv, 2048);  // warm-up (buffers grow on the first large step)
      kv.length = 0;
      const double t = step(kv, 2048);
      std::printf("prefill 2048 tokens: %.1f tokens/s (%.3f s)\n", 2048 / t, t);
      json += ",\"prefill_2048\":{\"tokens_per_s\":" + std::to_string(2048 / t) + "}";
    }
  }
  json += ",\"layers\":" + std::to_string(layers) + ",\"format\":\"" + fmt_name + "\",\"kv\":\"" + kv_type_name(kv_type) + "\",\"decode_bytes_per_token\":" +
          std::to_string(decode_bytes(0)) + "}";
  if (argc > 1) {
    if (FILE* f = std::fopen(argv[1], "w")) {
      std::fputs(json.c_str(), f);
      std::fclose(f);
    }
  }
  return 0;
}
