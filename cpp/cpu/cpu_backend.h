// The CPU backend: the reference implementation of every op and the fallback when no GPU is usable.
// Multi-threaded through one ThreadPool per model; hot loops go through cpu/kernels.h (vectorised,
// ISA chosen at run time).
#pragma once
#include <memory>
#include <vector>

#include "cpu/kv_storage.h"
#include "cpu/thread_pool.h"
#include "engine/backend.h"

namespace glm::cpu {

class CpuBackend final : public Backend {
 public:
  // Makes the backend and its KV page pool (kv_storage.h: reserved, committed as used).
  static Status create(const ModelConfig& cfg, int n_threads, const KvPoolRequest& kv, std::unique_ptr<Backend>* out);
  const char* name() const override { return "cpu"; }
  int threads() const { return pool_.size(); }

  const KvPoolSpec& kv_pool() const override { return kv_->spec(); }
  Status copy_kv_page(PageId src, PageId dst, int64_t n) override;
  const KvStorage& kv_storage() const { return *kv_; }
  Status scratch(int slot, int64_t rows, int64_t cols, Act* out) override;
  void embed(const Matrix& table, const int32_t* tokens, Act out) override;
  void rmsnorm(Act x, const std::vector<float>& w, float eps, Act out) override;
  void linear(Act x, const Matrix& w, const std::vector<float>* bias, Act out, bool accumulate) override;
  void linear_many(Act x, const Projection* outs, size_t n) override;
  void qk_norm_rope(Act q, Act k, const AttentionWeights& w, const int32_t* positions) override;
  void attention(const StepPlan& plan, int64_t layer, Act q, Act k, Act v, Act out) override;
  void swiglu_mlp(Act x, const MlpWeights& w, Act out, bool accumulate) override;
  void moe(Act x, const MoeWeights& w, Act out) override;
  void gather_rows(Act x, const std::vector<int64_t>& rows, Act out) override;
  void concat_cols(Act a, Act b, Act out) override;
  void download(Act x, float* host) override;

  // Bytes held by scratch buffers (reported in model.info.memory).
  uint64_t scratch_bytes() const override;

 private:
  // Routing decision of one token: top-k expert ids and their final combine weights.
  void route(const float* router_logits, const std::vector<float>& correction_bias, int32_t* experts,
             float* weights) const;
  CpuBackend(const ModelConfig& cfg, int n_threads);
  std::vector<float>& buffer(size_t index, size_t elements);

  ModelConfig cfg_;
  ThreadPool pool_;
  std::vector<double> inv_freq_;              // RoPE inverse frequencies [rotary_dim / 2]
  std::vector<std::vector<float>> slots_;     // Backend::scratch slots
  std::vector<std::vector<float>> internal_;  // op-private buffers (MoE, MLP)
  std::unique_ptr<KvStorage> kv_;
};

}  // namespace glm::cpu
