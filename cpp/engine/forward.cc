#include "engine/forward.h"

#include <vector>

namespace glm {

namespace {

// Scratch slots of the step (one tensor each). kHidden outlives the trunk step (the MTP layer's input);
// kMtpOut outlives an MTP step (the next chained draft's input).
enum Slot : int { kX, kNormed, kQ, kK, kV, kAttn, kLastRows, kLogits, kHidden, kMtpHidden, kMtpEmbed, kMtpCat, kMtpOut, kSlotCount };

using Emit = std::function<void(const char*, int64_t, Act)>;

struct LayerActs {
  Act a, q, k, v, attn;
};

Status layer_acts(Backend& be, const ModelConfig& cfg, int64_t T, LayerActs* out) {
  GLM_TRY(be.scratch(kNormed, T, cfg.hidden_size, &out->a));
  GLM_TRY(be.scratch(kQ, T, cfg.q_width(), &out->q));
  GLM_TRY(be.scratch(kK, T, cfg.kv_width(), &out->k));
  GLM_TRY(be.scratch(kV, T, cfg.kv_width(), &out->v));
  return be.scratch(kAttn, T, cfg.q_width(), &out->attn);
}

// One decoder layer on x in place (spec §2; the MTP layer is one too, at KV layer `kv_layer`).
void decoder_layer(Backend& be, const ModelConfig& cfg, const LayerWeights& L, int64_t kv_layer, const StepPlan& plan,
                   const int32_t* rope_positions, Act x, const LayerActs& s, const Emit& emit) {
  const float eps = float(cfg.rms_norm_eps);
  const std::vector<float>* no_bias = nullptr;
  be.rmsnorm(x, L.input_norm, eps, s.a);  // input_layernorm
  emit("attn_norm", kv_layer, s.a);
  const Projection qkv[3] = {{&L.attn.q, cfg.attention_bias ? &L.attn.q_bias : no_bias, s.q},   // self_attn.q_proj
                             {&L.attn.k, cfg.attention_bias ? &L.attn.k_bias : no_bias, s.k},   // self_attn.k_proj
                             {&L.attn.v, cfg.attention_bias ? &L.attn.v_bias : no_bias, s.v}};  // self_attn.v_proj
  be.linear_many(s.a, qkv, 3);
  be.qk_norm_rope(s.q, s.k, L.attn, rope_positions);  // self_attn.{q,k}_norm + rotary_emb
  emit("q", kv_layer, s.q);
  emit("k", kv_layer, s.k);
  emit("v", kv_layer, s.v);
  be.attention(plan, kv_layer, s.q, s.k, s.v, s.attn);  // self_attn (softmax(q k^T / sqrt(d)) v over the cache)
  emit("attn_out", kv_layer, s.attn);
  be.linear(s.attn, L.attn.o, no_bias, x, true);  // x += self_attn.o_proj(attn)

  be.rmsnorm(x, L.post_attention_norm, eps, s.a);  // post_attention_layernorm
  emit("ffn_norm", kv_layer, s.a);
  if (L.is_moe) {
    be.moe(s.a, L.moe, x);  // x += mlp (routed experts + shared expert)
  } else {
    be.swiglu_mlp(s.a, L.dense, x, true);  // x += mlp (dense SwiGLU)
  }
  emit("layer_out", kv_layer, x);
}

Emit make_emit(Backend& be, const ActivationHook* hook, std::vector<float>& host) {
  return [&be, hook, &host](const char* name, int64_t layer, Act t) {
    if (!hook || !*hook) return;
    host.resize(size_t(t.rows * t.cols));
    be.download(t, host.data());
    (*hook)(name, layer, host.data(), t.rows, t.cols);
  };
}

bool is_cancelled(const std::function<bool()>* cancelled) { return cancelled && *cancelled && (*cancelled)(); }

// The head over `last` (one normed row per plan logit row) and the selection the plan asks for.
Status head_and_select(Backend& be, const ModelConfig& cfg, const Matrix& head, const StepPlan& plan, Act last, float* logits,
                       int32_t* greedy_tokens, TokenLogprobs* sampled_logprobs) {
  Act out;
  GLM_TRY(be.scratch(kLogits, last.rows, cfg.vocab_size, &out));
  be.linear(last, head, nullptr, out, false);  // lm_head / shared_head.head
  if (plan.greedy_tokens && greedy_tokens) {
    be.download_greedy(out, logits, greedy_tokens);  // only the argmax tokens (plan.greedy_tokens)
  } else if (plan.sample_requests && greedy_tokens && sampled_logprobs) {
    be.download_sampled(out, logits, *plan.sample_requests, greedy_tokens, sampled_logprobs);  // chosen tokens (+ logprobs)
  } else {
    be.download(out, logits);
  }
  return Status::ok();
}

}  // namespace

Status forward_step(Backend& be, const ModelConfig& cfg, const ModelWeights& w, const StepPlan& plan, float* logits,
                    const std::function<bool()>* cancelled, const ActivationHook* hook, int32_t* greedy_tokens,
                    TokenLogprobs* sampled_logprobs, Act* hidden) {
  const int64_t T = plan.rows();
  const int64_t H = cfg.hidden_size;
  const float eps = float(cfg.rms_norm_eps);
  if (T == 0) return Status::ok();
  GLM_TRY(be.begin_step(plan));  // host plan of the step -> backend (page tables, slots, tokens)

  Act x;
  LayerActs s;
  GLM_TRY(be.scratch(kX, T, H, &x));
  GLM_TRY(layer_acts(be, cfg, T, &s));
  std::vector<float> host;
  const Emit emit = make_emit(be, hook, host);

  be.embed(w.embed_tokens, plan.tokens.data(), x);  // model.embed_tokens
  emit("embed", -1, x);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    if (is_cancelled(cancelled)) {
      GLM_TRY(be.end_step());  // a device error before the abort wins: the model may be dead
      return Status::error(ErrorCode::Aborted, "aborted");
    }
    decoder_layer(be, cfg, w.layers[size_t(l)], l, plan, plan.positions.data(), x, s, emit);
  }

  if (plan.logit_rows.empty() && !plan.keep_hidden) return be.end_step();
  const int64_t R = int64_t(plan.logit_rows.size());
  Act last;
  GLM_TRY(be.scratch(kLastRows, R, H, &last));
  if (plan.keep_hidden) {
    // model.norm over every row: the MTP layer reads each row's hidden state; the logits read theirs.
    Act all;
    GLM_TRY(be.scratch(kHidden, T, H, &all));
    be.rmsnorm(x, w.final_norm, eps, all);
    emit("final_norm", -1, all);
    if (hidden) *hidden = all;
    if (R == 0) return be.end_step();
    be.gather_rows(all, plan.logit_rows, last);
  } else {
    be.gather_rows(x, plan.logit_rows, last);
    be.rmsnorm(last, w.final_norm, eps, last);  // model.norm
    emit("final_norm", -1, last);
  }
  GLM_TRY(head_and_select(be, cfg, w.lm_head, plan, last, logits, greedy_tokens, sampled_logprobs));
  return be.end_step();
}

Status mtp_step(Backend& be, const ModelConfig& cfg, const ModelWeights& w, const StepPlan& plan, Act source,
                const std::vector<int64_t>& source_rows, float* logits, int32_t* draft_tokens,
                const std::function<bool()>* cancelled, const ActivationHook* hook, Act* out_hidden) {
  const int64_t R = plan.rows();
  const int64_t H = cfg.hidden_size;
  const float eps = float(cfg.rms_norm_eps);
  if (R == 0) return Status::ok();
  if (!w.mtp) return Status::error(ErrorCode::Internal, "mtp_step on a model without an MTP layer");
  if (int64_t(source_rows.size()) != R) return Status::error(ErrorCode::Internal, "mtp_step: one hidden row per pair");
  if (is_cancelled(cancelled)) return Status::error(ErrorCode::Aborted, "aborted");
  const MtpWeights& m = *w.mtp;
  GLM_TRY(be.begin_step(plan));

  std::vector<float> host;
  const Emit emit = make_emit(be, hook, host);
  const int64_t layer = cfg.num_hidden_layers;  // the MTP layer's KV layer and hook index
  // The hidden rows first: `source` may be the previous MTP step's kMtpOut, rewritten below.
  Act h, e, cat, x, z;
  LayerActs s;
  GLM_TRY(be.scratch(kMtpHidden, R, H, &h));
  be.gather_rows(source, source_rows, h);
  be.rmsnorm(h, m.hnorm, eps, h);  // hnorm(h_t)
  GLM_TRY(be.scratch(kMtpEmbed, R, H, &e));
  be.embed(m.embed_tokens.data ? m.embed_tokens : w.embed_tokens, plan.tokens.data(), e);  // embed(x_{t+1})
  be.rmsnorm(e, m.enorm, eps, e);                                                           // enorm
  GLM_TRY(be.scratch(kMtpCat, R, 2 * H, &cat));
  be.concat_cols(e, h, cat);  // embedding half first (spec §3)
  GLM_TRY(be.scratch(kX, R, H, &x));
  be.linear(cat, m.eh_proj, nullptr, x, false);  // eh_proj
  emit("mtp_in", layer, x);
  GLM_TRY(layer_acts(be, cfg, R, &s));
  const int32_t* rope = plan.rope_positions.empty() ? plan.positions.data() : plan.rope_positions.data();
  decoder_layer(be, cfg, m.layer, layer, plan, rope, x, s, emit);
  GLM_TRY(be.scratch(kMtpOut, R, H, &z));
  be.rmsnorm(x, m.shared_head_norm, eps, z);  // shared_head.norm: the draft's hidden (fed back when chaining)
  emit("mtp_out", layer, z);
  if (out_hidden) *out_hidden = z;
  if (!plan.logit_rows.empty()) {
    Act last;
    GLM_TRY(be.scratch(kLastRows, int64_t(plan.logit_rows.size()), H, &last));
    be.gather_rows(z, plan.logit_rows, last);
    GLM_TRY(head_and_select(be, cfg, m.shared_head_head.data ? m.shared_head_head : w.lm_head, plan, last, logits, draft_tokens, nullptr));
  }
  return be.end_step();
}

}  // namespace glm
