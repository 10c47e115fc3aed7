#include "cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>

#include "cpu/kernels.h"
#include "cpu/moe_routing.h"
#include "cpu/routing_config.h"

namespace glm::cpu {

namespace {

// Below this many rows an op runs on the calling thread: the pool's wake-up costs more than the work.
constexpr int64_t kRowsPerTask = 4;

float silu(float x) { return x / (1.0f + std::exp(-x)); }

void rmsnorm_row(const float* x, const float* w, int64_t n, float eps, float* out) {
  // Mean of squares in double: the row is short relative to a matmul and this keeps the norm exact
  // to fp32 rounding whatever the row length.
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * double(x[i]);
  const float inv = float(1.0 / std::sqrt(ss / double(n) + double(eps)));
  for (int64_t i = 0; i < n; ++i) out[i] = w[i] * (x[i] * inv);
}

}  // namespace

CpuBackend::CpuBackend(const ModelConfig& cfg, int n_threads) : cfg_(cfg), pool_(n_threads) {
  // inv_freq[i] = theta^(-2i / rotary_dim): the exponent's denominator is the rotary width, not head_dim
  // (spec §2). Computed in double; the fp32 HF table differs by < 1 ulp of fp32.
  const int64_t half = cfg.rotary_dim / 2;
  inv_freq_.resize(size_t(half));
  for (int64_t i = 0; i < half; ++i) {
    inv_freq_[size_t(i)] = 1.0 / std::pow(cfg.rope_theta, double(2 * i) / double(cfg.rotary_dim));
  }
}

std::vector<float>& CpuBackend::buffer(size_t index, size_t elements) {
  if (internal_.size() <= index) internal_.resize(index + 1);
  if (internal_[index].size() < elements) internal_[index].resize(elements);
  return internal_[index];
}

Status CpuBackend::create(const ModelConfig& cfg, int n_threads, const KvPoolRequest& kv, std::unique_ptr<Backend>* out) {
  std::unique_ptr<CpuBackend> be(new CpuBackend(cfg, n_threads));
  GLM_TRY(KvStorage::create(cfg, kv, &be->kv_));
  *out = std::move(be);
  return Status::ok();
}

Status CpuBackend::copy_kv_page(PageId src, PageId dst, int64_t n) {
  kv_->copy_page(src, dst, n);
  return Status::ok();
}

Status CpuBackend::scratch(int slot, int64_t rows, int64_t cols, Act* out) {
  if (slot < 0) return Status::error(ErrorCode::Internal, "negative scratch slot");
  if (slots_.size() <= size_t(slot)) slots_.resize(size_t(slot) + 1);
  const size_t need = size_t(rows) * size_t(cols);
  auto& buf = slots_[size_t(slot)];
  if (buf.size() < need) {
    try {
      buf.resize(need);
    } catch (const std::bad_alloc&) {
      return Status::error(ErrorCode::InsufficientMemory,
                           "cpu backend: cannot allocate " + std::to_string(need * sizeof(float)) + " bytes of activations");
    }
  }
  *out = Act{buf.data(), rows, cols};
  return Status::ok();
}

uint64_t CpuBackend::scratch_bytes() const {
  uint64_t n = 0;
  for (const auto& b : slots_) n += b.capacity() * sizeof(float);
  for (const auto& b : internal_) n += b.capacity() * sizeof(float);
  return n;
}

void CpuBackend::embed(const Matrix& table, const int32_t* tokens, Act out) {
  const size_t row_bytes = size_t(table.cols) * size_t(dtype_bits(table.dtype) / 8);
  const auto* base = static_cast<const uint8_t*>(table.data);
  for (int64_t r = 0; r < out.rows; ++r) {
    convert_to_f32(base + size_t(tokens[r]) * row_bytes, table.dtype, out.data + r * out.cols, out.cols);
  }
}

void CpuBackend::rmsnorm(Act x, const std::vector<float>& w, float eps, Act out) {
  auto rows = [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) rmsnorm_row(x.data + r * x.cols, w.data(), x.cols, eps, out.data + r * out.cols);
  };
  if (x.rows <= kRowsPerTask) rows(0, x.rows);
  else pool_.parallel_for(x.rows, kRowsPerTask, rows);
}

void CpuBackend::linear(Act x, const Matrix& w, const std::vector<float>* bias, Act out, bool accumulate) {
  matmul(pool_, x.data, x.rows, x.cols, w, bias ? bias->data() : nullptr, out.data, out.cols, accumulate);
}

void CpuBackend::linear_many(Act x, const Projection* outs, size_t n) {
  std::vector<MatmulJob> jobs;
  jobs.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    jobs.push_back({x.data, x.rows, x.cols, outs[i].w, outs[i].bias ? outs[i].bias->data() : nullptr,
                    outs[i].out.data, outs[i].out.cols, false});
  }
  matmul_many(pool_, jobs.data(), jobs.size());
}

void CpuBackend::qk_norm_rope(Act q, Act k, const AttentionWeights& w, const int32_t* positions) {
  const int64_t d = cfg_.head_dim;
  const int64_t half = cfg_.rotary_dim / 2;
  const float eps = float(cfg_.rms_norm_eps);
  const bool qk_norm = cfg_.use_qk_norm;
  auto rows = [&](int64_t begin, int64_t end) {
    std::vector<float> cos_t(static_cast<size_t>(half)), sin_t(static_cast<size_t>(half));
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(positions[r]) * inv_freq_[size_t(i)];
        cos_t[size_t(i)] = float(std::cos(angle));
        sin_t[size_t(i)] = float(std::sin(angle));
      }
      auto head = [&](float* h, const std::vector<float>& norm_w) {
        if (qk_norm) rmsnorm_row(h, norm_w.data(), d, eps, h);  // self_attn.q_norm / k_norm, per head
        // NeoX rotate_half on the rotary slice: pairs (i, i + half); dims >= rotary_dim pass through.
        for (int64_t i = 0; i < half; ++i) {
          const float x1 = h[i], x2 = h[i + half];
          h[i] = x1 * cos_t[size_t(i)] - x2 * sin_t[size_t(i)];
          h[i + half] = x2 * cos_t[size_t(i)] + x1 * sin_t[size_t(i)];
        }
      };
      for (int64_t h = 0; h < cfg_.num_attention_heads; ++h) head(q.data + r * q.cols + h * d, w.q_norm);
      for (int64_t h = 0; h < cfg_.num_key_value_heads; ++h) head(k.data + r * k.cols + h * d, w.k_norm);
    }
  };
  if (q.rows <= kRowsPerTask) rows(0, q.rows);
  else pool_.parallel_for(q.rows, kRowsPerTask, rows);
}

void CpuBackend::attention(const StepPlan& plan, int64_t layer, Act q, Act k, Act v, Act out) {
  const int64_t d = cfg_.head_dim;
  const int64_t n_heads = cfg_.num_attention_heads;
  const int64_t group = n_heads / cfg_.num_key_value_heads;
  const int64_t kv_w = cfg_.kv_width();
  const int64_t P = kv_->spec().page_tokens;
  const float scale = float(1.0 / std::sqrt(double(d)));
  const KvType type = kv_->type();
  const DType row_type = type == KvType::F32 ? DType::F32 : type == KvType::BF16 ? DType::BF16 : DType::F8_E4M3;
  const uint64_t row_bytes = uint64_t(d) * uint64_t(kv_type_bytes(type));

  // self_attn: the new K/V rows join each sequence's pages first (in the pool's type), so a row
  // attends to itself and to the rows before it in the same step (causal prefill) exactly as a later
  // decode step would, and reads back what the cache holds.
  for (const auto& s : plan.sequences) {
    for (int64_t i = 0; i < s.n_rows; ++i) {
      const int64_t row = s.row_begin + i, pos = s.start_pos + i;
      const PageId page = s.pages[pos / P];
      for (int64_t h = 0; h < cfg_.num_key_value_heads; ++h) {
        kv_->write(layer, page, pos % P, 0, h, k.data + row * kv_w + h * d);
        kv_->write(layer, page, pos % P, 1, h, v.data + row * kv_w + h * d);
      }
    }
  }

  // One work item per (row, kv head): the query heads sharing that K/V head (GQA) are handled together
  // so each cached row is fetched from memory once for the whole group. Keys are handed to the kernels
  // 256 at a time by row pointers (the pages need not be adjacent); the grouping into runs of 256
  // positions fixes the summation order of V, whatever the page size.
  constexpr int64_t kRun = 256;
  std::vector<int32_t> row_seq(size_t(plan.rows()));
  for (size_t si = 0; si < plan.sequences.size(); ++si) {
    const auto& s = plan.sequences[si];
    for (int64_t i = 0; i < s.n_rows; ++i) row_seq[size_t(s.row_begin + i)] = int32_t(si);
  }
  const int64_t n_kv = cfg_.num_key_value_heads;
  auto items = [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores, weights;
    thread_local std::vector<const void*> ptrs;
    thread_local std::vector<float> row_scales;
    ptrs.resize(size_t(kRun));
    row_scales.resize(size_t(kRun));
    for (int64_t it = begin; it < end; ++it) {
      const int64_t row = it / n_kv, kvh = it % n_kv;
      const auto& s = plan.sequences[size_t(row_seq[size_t(row)])];
      const int64_t key0 = plan.first_key;                                     // the MTP layer skips slot 0
      const int64_t n_keys = s.start_pos + (row - s.row_begin) + 1 - key0;  // causal: keys key0..pos
      if (int64_t(scores.size()) < group * n_keys) scores.resize(size_t(group * n_keys));
      // The rows of positions [pos, pos + n) of one head (K: which 0, V: 1), and their FP8 scales.
      auto gather = [&](int which, int64_t pos, int64_t n) {
        for (int64_t j = 0; j < n; ++j) {
          const PageId page = s.pages[(key0 + pos + j) / P];
          const int64_t slot = (key0 + pos + j) % P;
          ptrs[size_t(j)] = static_cast<const uint8_t*>(kv_->rows(layer, page, which, kvh)) + uint64_t(slot) * row_bytes;
          if (type == KvType::FP8) row_scales[size_t(j)] = kv_->scales(layer, page, which, kvh)[slot];
        }
      };
      for (int64_t pos = 0; pos < n_keys; pos += kRun) {
        const int64_t n = std::min(kRun, n_keys - pos);
        gather(0, pos, n);
        for (int64_t g = 0; g < group; ++g) {
          float* sc = scores.data() + g * n_keys + pos;
          dot_rows(q.data + row * q.cols + (kvh * group + g) * d, ptrs.data(), row_type, n, d, sc);
          if (type == KvType::FP8) {
            for (int64_t j = 0; j < n; ++j) sc[j] *= row_scales[size_t(j)];
          }
        }
      }
      for (int64_t g = 0; g < group; ++g) {
        float* sc = scores.data() + g * n_keys;
        // softmax(q k^T * d^-0.5) in fp32 with the max subtracted; the sum in double.
        float max_score = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < n_keys; ++j) max_score = std::max(max_score, sc[j] *= scale);
        double sum = 0;
        for (int64_t j = 0; j < n_keys; ++j) sum += sc[j] = std::exp(sc[j] - max_score);
        const float inv_sum = float(1.0 / sum);
        for (int64_t j = 0; j < n_keys; ++j) sc[j] *= inv_sum;
        float* oh = out.data + row * out.cols + (kvh * group + g) * d;
        std::fill(oh, oh + d, 0.0f);
      }
      for (int64_t pos = 0; pos < n_keys; pos += kRun) {
        const int64_t n = std::min(kRun, n_keys - pos);
        gather(1, pos, n);
        for (int64_t g = 0; g < group; ++g) {
          const float* w = scores.data() + g * n_keys + pos;
          if (type == KvType::FP8) {  // the V rows' scales join the softmax weights
            weights.resize(size_t(n));
            for (int64_t j = 0; j < n; ++j) weights[size_t(j)] = w[j] * row_scales[size_t(j)];
            w = weights.data();
          }
          weighted_row_sum(w, ptrs.data(), row_type, n, d, out.data + row * out.cols + (kvh * group + g) * d);
        }
      }
    }
  };
  pool_.parallel_for(plan.rows() * n_kv, 1, items);
}

void CpuBackend::swiglu_mlp(Act x, const MlpWeights& w, Act out, bool accumulate) {
  const int64_t T = x.rows, I = w.gate.rows;
  float* g = buffer(0, size_t(T * I)).data();
  float* u = buffer(1, size_t(T * I)).data();
  // Each matmul dispatches on the matrix's format (BF16, FP8, MXFP4 experts, ...): no format branches here.
  matmul(pool_, x.data, T, x.cols, w.gate, nullptr, g, I, false);  // gate_proj
  matmul(pool_, x.data, T, x.cols, w.up, nullptr, u, I, false);    // up_proj
  for (int64_t i = 0; i < T * I; ++i) g[i] = silu(g[i]) * u[i];    // act_fn(gate) * up
  matmul(pool_, g, T, I, w.down, nullptr, out.data, out.cols, accumulate);  // down_proj
}

void CpuBackend::route(const float* logits, const std::vector<float>& bias, int32_t* experts, float* weights) const {
  route_token(routing_params(cfg_), logits, bias.data(), experts, weights);
}

void CpuBackend::moe(Act x, const MoeWeights& w, Act out) {
  const int64_t T = x.rows, H = x.cols, E = cfg_.n_routed_experts, k = cfg_.num_experts_per_tok;
  // mlp.gate: router logits in fp32 (weights widened exactly, fp32 accumulation)
  float* logits = buffer(2, size_t(T * E)).data();
  matmul(pool_, x.data, T, H, w.router, nullptr, logits, E, false);

  std::vector<int32_t> chosen(size_t(T * k));
  std::vector<float> chosen_w(size_t(T * k));
  for (int64_t t = 0; t < T; ++t) route(logits + t * E, w.correction_bias, &chosen[size_t(t * k)], &chosen_w[size_t(t * k)]);

  // Group (token, weight) pairs by expert so each expert runs once over all its tokens.
  std::vector<std::vector<std::pair<int64_t, float>>> by_expert(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < k; ++j) by_expert[size_t(chosen[size_t(t * k + j)])].push_back({t, chosen_w[size_t(t * k + j)]});
  }
  // The active experts plus the shared expert (over all tokens, weight 1) run as one batch: all
  // gate/up products in one pool dispatch, SiLU·mul, then all down products in a second one.
  struct Run { const MlpWeights* mlp; const std::vector<std::pair<int64_t, float>>* tokens; int64_t n, in_off, mid_off, out_off; };
  std::vector<Run> runs;
  int64_t in_total = 0, mid_total = 0, out_total = 0;
  auto add_run = [&](const MlpWeights* m, const std::vector<std::pair<int64_t, float>>* toks, int64_t n) {
    runs.push_back({m, toks, n, in_total, mid_total, out_total});
    in_total += toks ? n * H : 0;  // the shared expert reads x directly
    mid_total += n * m->gate.rows;
    out_total += n * H;
  };
  for (int64_t e = 0; e < E; ++e) {
    if (!by_expert[size_t(e)].empty()) add_run(&w.experts[size_t(e)], &by_expert[size_t(e)], int64_t(by_expert[size_t(e)].size()));
  }
  add_run(&w.shared, nullptr, T);
  float* xin = buffer(3, size_t(std::max<int64_t>(in_total, 1))).data();
  float* g = buffer(0, size_t(mid_total)).data();
  float* u = buffer(1, size_t(mid_total)).data();
  float* y = buffer(4, size_t(out_total)).data();
  std::vector<MatmulJob> jobs;
  for (const Run& r : runs) {
    const float* src = x.data;
    if (r.tokens) {
      float* dst = xin + r.in_off;
      for (int64_t i = 0; i < r.n; ++i) std::memcpy(dst + i * H, x.data + (*r.tokens)[size_t(i)].first * H, size_t(H) * sizeof(float));
      src = dst;
    }
    const int64_t I = r.mlp->gate.rows;
    jobs.push_back({src, r.n, H, &r.mlp->gate, nullptr, g + r.mid_off, I, false});  // gate_proj
    jobs.push_back({src, r.n, H, &r.mlp->up, nullptr, u + r.mid_off, I, false});    // up_proj
  }
  matmul_many(pool_, jobs.data(), jobs.size());
  for (int64_t i = 0; i < mid_total; ++i) g[i] = silu(g[i]) * u[i];  // act_fn(gate) * up
  jobs.clear();
  for (const Run& r : runs) {
    const int64_t I = r.mlp->gate.rows;
    // The shared expert accumulates straight into the residual stream; routed outputs are combined below.
    if (r.tokens) jobs.push_back({g + r.mid_off, r.n, I, &r.mlp->down, nullptr, y + r.out_off, H, false});
    else jobs.push_back({g + r.mid_off, r.n, I, &r.mlp->down, nullptr, out.data, out.cols, true});
  }
  matmul_many(pool_, jobs.data(), jobs.size());  // down_proj (experts and shared expert)
  for (const Run& r : runs) {
    if (!r.tokens) continue;
    for (int64_t i = 0; i < r.n; ++i) {
      axpy((*r.tokens)[size_t(i)].second, y + r.out_off + i * H, out.data + (*r.tokens)[size_t(i)].first * out.cols, H);
    }
  }
}

void CpuBackend::gather_rows(Act x, const std::vector<int64_t>& rows, Act out) {
  for (size_t i = 0; i < rows.size(); ++i) {
    std::memmove(out.data + int64_t(i) * out.cols, x.data + rows[i] * x.cols, size_t(x.cols) * sizeof(float));
  }
}

void CpuBackend::concat_cols(Act a, Act b, Act out) {
  for (int64_t r = 0; r < a.rows; ++r) {
    std::memcpy(out.data + r * out.cols, a.data + r * a.cols, size_t(a.cols) * sizeof(float));
    std::memcpy(out.data + r * out.cols + a.cols, b.data + r * b.cols, size_t(b.cols) * sizeof(float));
  }
}

void CpuBackend::download(Act x, float* host) {
  std::memcpy(host, x.data, size_t(x.rows * x.cols) * sizeof(float));
}

}  // namespace glm::cpu
