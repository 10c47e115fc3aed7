#include "engine/forward.h"

#include <vector>

namespace glm {

namespace {

// Scratch slots of the step (one tensor each).
enum Slot : int { kX, kNormed, kQ, kK, kV, kAttn, kLastRows, kLogits, kSlotCount };

}  // namespace

Status forward_step(Backend& be, const ModelConfig& cfg, const ModelWeights& w, const StepPlan& plan, float* logits,
                    const std::function<bool()>* cancelled, const ActivationHook* hook, int32_t* greedy_tokens,
                    TokenLogprobs* sampled_logprobs) {
  const int64_t T = plan.rows();
  const int64_t H = cfg.hidden_size;
  const float eps = float(cfg.rms_norm_eps);
  if (T == 0) return Status::ok();
  GLM_TRY(be.begin_step(plan));  // host plan of the step -> backend (page tables, slots, tokens)

  Act x, a, q, k, v, attn;
  GLM_TRY(be.scratch(kX, T, H, &x));
  GLM_TRY(be.scratch(kNormed, T, H, &a));
  GLM_TRY(be.scratch(kQ, T, cfg.q_width(), &q));
  GLM_TRY(be.scratch(kK, T, cfg.kv_width(), &k));
  GLM_TRY(be.scratch(kV, T, cfg.kv_width(), &v));
  GLM_TRY(be.scratch(kAttn, T, cfg.q_width(), &attn));

  std::vector<float> host;
  auto emit = [&](const char* name, int64_t layer, Act t) {
    if (!hook || !*hook) return;
    host.resize(size_t(t.rows * t.cols));
    be.download(t, host.data());
    (*hook)(name, layer, host.data(), t.rows, t.cols);
  };

  be.embed(w.embed_tokens, plan.tokens.data(), x);  // model.embed_tokens
  emit("embed", -1, x);

  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    if (cancelled && *cancelled && (*cancelled)()) {
      GLM_TRY(be.end_step());  // a device error before the abort wins: the model may be dead
      return Status::error(ErrorCode::Aborted, "aborted");
    }
    const LayerWeights& L = w.layers[size_t(l)];
    const std::vector<float>* no_bias = nullptr;

    be.rmsnorm(x, L.input_norm, eps, a);  // input_layernorm
    emit("attn_norm", l, a);
    const Projection qkv[3] = {{&L.attn.q, cfg.attention_bias ? &L.attn.q_bias : no_bias, q},   // self_attn.q_proj
                               {&L.attn.k, cfg.attention_bias ? &L.attn.k_bias : no_bias, k},   // self_attn.k_proj
                               {&L.attn.v, cfg.attention_bias ? &L.attn.v_bias : no_bias, v}};  // self_attn.v_proj
    be.linear_many(a, qkv, 3);
    be.qk_norm_rope(q, k, L.attn, plan.positions.data());  // self_attn.{q,k}_norm + rotary_emb
    emit("q", l, q);
    emit("k", l, k);
    emit("v", l, v);
    be.attention(plan, l, q, k, v, attn);  // self_attn (softmax(q k^T / sqrt(d)) v over the cache)
    emit("attn_out", l, attn);
    be.linear(attn, L.attn.o, no_bias, x, true);  // x += self_attn.o_proj(attn)

    be.rmsnorm(x, L.post_attention_norm, eps, a);  // post_attention_layernorm
    emit("ffn_norm", l, a);
    if (L.is_moe) {
      be.moe(a, L.moe, x);  // x += mlp (routed experts + shared expert)
    } else {
      be.swiglu_mlp(a, L.dense, x, true);  // x += mlp (dense SwiGLU)
    }
    emit("layer_out", l, x);
  }

  if (plan.logit_rows.empty()) return be.end_step();
  const int64_t R = int64_t(plan.logit_rows.size());
  Act last, out;
  GLM_TRY(be.scratch(kLastRows, R, H, &last));
  GLM_TRY(be.scratch(kLogits, R, cfg.vocab_size, &out));
  be.gather_rows(x, plan.logit_rows, last);
  be.rmsnorm(last, w.final_norm, eps, last);  // model.norm
  emit("final_norm", -1, last);
  be.linear(last, w.lm_head, nullptr, out, false);  // lm_head
  if (plan.greedy_tokens && greedy_tokens) {
    be.download_greedy(out, logits, greedy_tokens);  // only the argmax tokens (plan.greedy_tokens)
  } else if (plan.sample_requests && greedy_tokens && sampled_logprobs) {
    be.download_sampled(out, logits, *plan.sample_requests, greedy_tokens, sampled_logprobs);  // chosen tokens (+ logprobs)
  } else {
    be.download(out, logits);
  }
  return be.end_step();
}

}  // namespace glm
