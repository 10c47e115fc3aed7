#include "engine/quantize_calibrate.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <thread>

#include "cpu/kernels.h"
#include "cpu/routing_config.h"
#include "cpu/thread_pool.h"
#include "engine/model.h"

namespace glm::quant {

namespace {

// Tokens of a layer over which the all-token fallback of every expert's down_proj input is gathered:
// enough for a stable mean square, bounded so calibration costs about one extra MoE pass, not E of them.
constexpr int64_t kFallbackTokens = 1024;

float silu(float v) { return v / (1.0f + std::exp(-v)); }

class Collector {
 public:
  Collector(const ModelConfig& cfg, const ModelWeights& w, cpu::ThreadPool& pool, bool covariance, CalibrationStats* out)
      : cfg_(cfg), w_(w), pool_(pool), covariance_(covariance), out_(out) {}

  void on_activation(const char* name, int64_t layer, const float* x, int64_t rows, int64_t cols) {
    if (layer < 0 || layer >= cfg_.num_hidden_layers) return;  // model-level tensors and the MTP layer
    const std::string L = "model.layers." + std::to_string(layer);
    const std::string n = name;
    if (n == "attn_norm") add(L + ".attn_norm", x, rows, cols);
    else if (n == "attn_out") add(L + ".attn_out", x, rows, cols);
    else if (n == "ffn_norm") ffn(L, w_.layers[size_t(layer)], x, rows, cols);
  }

 private:
  void add(const std::string& key, const float* x, int64_t rows, int64_t cols) {
    ChannelStats& s = out_->inputs[key];
    if (s.sum_sq.empty()) s.sum_sq.assign(size_t(cols), 0.0);
    for (int64_t t = 0; t < rows; ++t) {
      const float* r = x + t * cols;
      for (int64_t c = 0; c < cols; ++c) s.sum_sq[size_t(c)] += double(r[c]) * double(r[c]);
    }
    s.tokens += rows;
    if (!covariance_ || rows == 0) return;
    // Σ x xᵀ of this batch as one fp32 product (xᵀ · (xᵀ)ᵀ on the CPU kernels), added in float64.
    if (s.sum_xx.empty()) s.sum_xx.assign(size_t(cols * cols), 0.0);
    xt_.resize(size_t(cols * rows));
    for (int64_t t = 0; t < rows; ++t)
      for (int64_t c = 0; c < cols; ++c) xt_[size_t(c * rows + t)] = x[t * cols + c];
    xx_.resize(size_t(cols * cols));
    cpu::matmul(pool_, xt_.data(), cols, rows, xt_.data(), DType::F32, cols, rows, nullptr, xx_.data(), cols, false);
    for (size_t i = 0; i < xx_.size(); ++i) s.sum_xx[i] += double(xx_[i]);
  }

  // act(gate(x)) * up(x) for the rows of x: down_proj's input.
  void mlp_mid(const MlpWeights& m, const float* x, int64_t rows, std::vector<float>& mid) {
    const int64_t I = m.gate.rows;
    mid.resize(size_t(rows * I));
    up_.resize(size_t(rows * I));
    cpu::matmul(pool_, x, rows, m.gate.cols, m.gate, nullptr, mid.data(), I, false);
    cpu::matmul(pool_, x, rows, m.up.cols, m.up, nullptr, up_.data(), I, false);
    for (size_t i = 0; i < mid.size(); ++i) mid[i] = silu(mid[i]) * up_[i];
  }

  void ffn(const std::string& L, const LayerWeights& lw, const float* x, int64_t T, int64_t H) {
    add(L + ".ffn_norm", x, T, H);
    if (!lw.is_moe) {
      mlp_mid(lw.dense, x, T, mid_);
      add(L + ".mlp.down_in", mid_.data(), T, lw.dense.down.cols);
      return;
    }
    const MoeWeights& moe = lw.moe;
    mlp_mid(moe.shared, x, T, mid_);
    add(L + ".mlp.shared_experts.down_in", mid_.data(), T, moe.shared.down.cols);

    const int64_t E = cfg_.n_routed_experts, k = cfg_.num_experts_per_tok;
    std::vector<float> logits(size_t(T * E));
    cpu::matmul(pool_, x, T, H, moe.router, nullptr, logits.data(), E, false);  // mlp.gate (fp32)
    const cpu::RoutingParams p = cpu::routing_params(cfg_);
    std::vector<int32_t> chosen(static_cast<size_t>(k));
    std::vector<float> weight(static_cast<size_t>(k));
    std::vector<std::vector<int64_t>> rows_of(static_cast<size_t>(E));
    for (int64_t t = 0; t < T; ++t) {
      cpu::route_token(p, logits.data() + t * E, moe.correction_bias.data(), chosen.data(), weight.data());
      for (int64_t j = 0; j < k; ++j) rows_of[size_t(chosen[size_t(j)])].push_back(t);
    }
    ChannelStats& fb = out_->inputs[L + ".ffn_norm"];
    const bool fallback = fb.tokens - T < kFallbackTokens;  // this layer's all-token fallback still filling
    for (int64_t e = 0; e < E; ++e) {
      const MlpWeights& m = moe.experts[size_t(e)];
      const std::string prefix = L + ".mlp.experts." + std::to_string(e);
      const std::vector<int64_t>& rows = rows_of[size_t(e)];
      out_->expert_tokens[prefix] += int64_t(rows.size());
      if (!rows.empty()) {
        xe_.resize(rows.size() * size_t(H));
        for (size_t i = 0; i < rows.size(); ++i) std::copy(x + rows[i] * H, x + (rows[i] + 1) * H, xe_.begin() + long(i * size_t(H)));
        add(prefix + ".in", xe_.data(), int64_t(rows.size()), H);
        mlp_mid(m, xe_.data(), int64_t(rows.size()), mid_);
        add(prefix + ".down_in", mid_.data(), int64_t(rows.size()), m.down.cols);
      }
      if (fallback) {
        mlp_mid(m, x, T, mid_);
        add(prefix + ".down_in_all", mid_.data(), T, m.down.cols);
      }
    }
  }

  const ModelConfig& cfg_;
  const ModelWeights& w_;
  cpu::ThreadPool& pool_;
  bool covariance_;
  CalibrationStats* out_;
  std::vector<float> mid_, up_, xe_, xt_, xx_;
};

bool unquantized(const ModelWeights& w) {
  bool ok = true;
  for_each_matrix(w, [&](const Matrix& m) { ok = ok && m.quant == Quant::None; });
  return ok;
}

// Which input key each quantizable module reads (lib/quantize.ts decides which modules are quantized).
void map_modules(const ModelConfig& cfg, int64_t min_expert_tokens, CalibrationStats* out) {
  auto& m = out->module_input;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string L = "model.layers." + std::to_string(l);
    for (const char* p : {"q_proj", "k_proj", "v_proj"}) m[L + ".self_attn." + p] = L + ".attn_norm";
    m[L + ".self_attn.o_proj"] = L + ".attn_out";
    if (!cfg.is_moe_layer(l)) {
      m[L + ".mlp.gate_proj"] = m[L + ".mlp.up_proj"] = L + ".ffn_norm";
      m[L + ".mlp.down_proj"] = L + ".mlp.down_in";
      continue;
    }
    m[L + ".mlp.shared_experts.gate_proj"] = m[L + ".mlp.shared_experts.up_proj"] = L + ".ffn_norm";
    m[L + ".mlp.shared_experts.down_proj"] = L + ".mlp.shared_experts.down_in";
    for (int64_t e = 0; e < cfg.n_routed_experts; ++e) {
      const std::string P = L + ".mlp.experts." + std::to_string(e);
      const bool enough = out->expert_tokens[P] >= min_expert_tokens;
      m[P + ".gate_proj"] = m[P + ".up_proj"] = enough ? P + ".in" : L + ".ffn_norm";
      m[P + ".down_proj"] = enough ? P + ".down_in" : P + ".down_in_all";
    }
  }
  // Drop mappings to keys never filled (no calibration tokens at all): those modules fall back to
  // weight error in the quantizer.
  for (auto it = m.begin(); it != m.end();) {
    auto s = out->inputs.find(it->second);
    if (s == out->inputs.end() || s->second.tokens == 0) it = m.erase(it);
    else ++it;
  }
}

// Bytes of every Σ x xᵀ the collector would keep (float64), from the config alone.
uint64_t covariance_bytes(const ModelConfig& cfg) {
  auto sq = [](int64_t c) { return double(c) * double(c); };
  double n = 0;
  const int64_t H = cfg.hidden_size, A = cfg.num_attention_heads * cfg.head_dim, I = cfg.moe_intermediate_size;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    n += 2 * sq(H) + sq(A);  // attn_norm, ffn_norm, attn_out
    if (!cfg.is_moe_layer(l)) n += sq(cfg.intermediate_size);
    else n += sq(I * cfg.n_shared_experts) + double(cfg.n_routed_experts) * (sq(H) + 2 * sq(I));
  }
  return n * 8 > 1e19 ? ~uint64_t(0) : uint64_t(n * 8);
}

}  // namespace

Status collect_activation_stats(Model& model, const std::vector<std::vector<int32_t>>& sequences,
                                const CalibrationOptions& opts, const std::atomic<bool>* cancel,
                                const CalibrationProgress& progress, CalibrationStats* out) {
  const ModelConfig& cfg = model.config();
  if (!unquantized(model.weights())) {
    return Status::error(ErrorCode::UnsupportedFormat,
                         "calibration runs the unquantized model: quantize from the BF16/F16/F32 checkpoint");
  }
  if (opts.min_expert_tokens < 0 || opts.batch_sequences < 1) return Status::error(ErrorCode::InvalidParam, "calibration: bad options");
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (sequences[i].empty()) return Status::error(ErrorCode::InvalidParam, "calibration sequence " + std::to_string(i) + " is empty");
  }
  *out = CalibrationStats();
  out->covariance = opts.covariance_budget_bytes > 0 && covariance_bytes(cfg) <= opts.covariance_budget_bytes;
  const int threads = opts.threads > 0 ? opts.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  cpu::ThreadPool pool(threads);
  Collector collector(cfg, model.weights(), pool, out->covariance, out);
  model.set_activation_hook([&collector](const char* name, int64_t layer, const float* data, int64_t rows, int64_t cols) {
    collector.on_activation(name, layer, data, rows, cols);
  });
  // The hook must not outlive this call (it points at locals).
  struct Unhook {
    Model& m;
    ~Unhook() { m.set_activation_hook(nullptr); }
  } unhook{model};

  const int64_t total = int64_t(sequences.size());
  for (int64_t b = 0; b < total; b += opts.batch_sequences) {
    if (cancel && cancel->load()) return Status::error(ErrorCode::Aborted, "calibration aborted");
    const int64_t e = std::min(total, b + opts.batch_sequences);
    std::vector<std::unique_ptr<Sequence>> seqs;
    std::vector<EvalRequest> reqs(size_t(e - b));
    std::vector<EvalRequest*> ptrs;
    Status st = Status::ok();
    for (int64_t i = b; i < e && st.is_ok(); ++i) {
      std::unique_ptr<Sequence> s;
      st = model.create_sequence(int64_t(sequences[size_t(i)].size()), &s);
      if (!st.is_ok()) break;
      EvalRequest& r = reqs[size_t(i - b)];
      r.sequence = s.get();
      r.tokens = sequences[size_t(i)];
      ptrs.push_back(&r);
      seqs.push_back(std::move(s));
      out->tokens += int64_t(sequences[size_t(i)].size());
    }
    if (st.is_ok()) st = model.evaluate(ptrs, cancel);
    for (auto& s : seqs) model.release_sequence(s);
    if (!st.is_ok()) return st;
    if (progress) progress(e, total);
  }
  map_modules(cfg, opts.min_expert_tokens, out);
  return Status::ok();
}

}  // namespace glm::quant
