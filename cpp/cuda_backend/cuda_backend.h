// The CUDA backend: every Backend op as launches of the cuda/ops.h kernels on one stream, over device
// copies of the weights, device activation buffers and a device KV page pool (cuda/README.md layout).
//
// Host C++ only: the kernels live in cuda/*.cu. Built twice (CMakeLists.txt): against the real CUDA
// runtime for the addon (GLM_WITH_CUDA) and against the CPU execution harness for the tests
// (GLM_CUDA_HARNESS), so the whole forward pass runs end to end without a GPU.
//
// Errors: the Backend ops return nothing, so the first failure of a step is recorded and returned by
// end_step(); the remaining ops of that step are skipped. A CUDA error (EngineDead) is sticky: the model
// is dead and every later begin_step/health fails fast with the original message (DESIGN.md rule 6).
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "engine/backend.h"
#include "engine/cuda_factory.h"
#include "ops.h"

namespace glm::cuda_backend {

class CudaBackend final : public Backend {
 public:
  static Status create(const ModelConfig& cfg, const ModelWeights& weights, const CudaBackendOptions& opts,
                       std::unique_ptr<Backend>* out);
  ~CudaBackend() override;

  const char* name() const override { return "cuda"; }
  const KvPoolSpec& kv_pool() const override { return kv_spec_; }
  Status copy_kv_page(PageId src, PageId dst, int64_t n) override;
  Status begin_step(const StepPlan& plan) override;
  Status end_step() override;
  Status health() const override;
  uint64_t scratch_bytes() const override { return scratch_bytes_; }

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
  void download_greedy(Act logits, float* host_logits, int32_t* tokens) override;
  // Device sampling (cuda::sample_tokens): the requests' params, u and history are uploaded by
  // begin_step with the plan; only the tokens (and logprobs) come back.
  static constexpr int64_t kTopLogprobs = 32;  // the kernel's top_stride limit
  bool samples_on_device(const SamplingParams& p) const override {
    return opts_.device_sampling && p.top_logprobs <= kTopLogprobs;
  }
  void download_sampled(Act logits, float* host_logits, const std::vector<SampleRequest>& requests, int32_t* tokens,
                        TokenLogprobs* logprobs) override;

  // CUDA graphs of decode steps (cuda_graphs.cc): how steps ran, and the last capture failure (each
  // failure also ran its step eagerly; a failure is reported here and once on stderr, never fatal).
  struct GraphStats {
    uint64_t captures = 0, replays = 0, eager_decode_steps = 0, capture_failures = 0, invalidations = 0;
    uint64_t device_sampled_steps = 0;  // steps whose tokens cuda::sample_tokens chose (download_sampled)
    std::string last_failure;
  };
  const GraphStats& graph_stats() const { return graph_stats_; }
  GraphCounters graph_counters() const override {
    return {graph_stats_.captures, graph_stats_.replays, graph_stats_.capture_failures};
  }
  // Tests: the next captured op makes a synchronous runtime call, which stream capture forbids, so the
  // runtime (or the harness) must reject it and the step must fall back to eager.
  void inject_capture_misuse() { inject_misuse_ = true; }

  // The memory plan made at load (model.info / logs).
  struct MemoryPlan {
    uint64_t weights = 0, activations = 0, kv_pool = 0, step_plan = 0, free_at_load = 0, total = 0;
  };
  const MemoryPlan& memory_plan() const { return plan_bytes_; }
  // Which GEMM serves BF16 projections of steps past the GEMV, and why (the Hopper twin's self-test).
  const std::string& gemm_path() const { return gemm_path_; }

 private:
  struct DeviceMatrix {
    const void* data = nullptr;
    cuda::WeightType type = cuda::WeightType::BF16;
    // Quantized matrices (engine/matrix.h): data as stored (E4M3 bytes) plus fp32 scales on the device.
    Quant quant = Quant::None;
    const float* scales = nullptr;
  };
  // Experts of one MoE layer stacked as the expert kernels read them: gate/up [E, I, H], down [E, H, I]
  // in the checkpoint's format (BF16, E4M3 or MXFP4 blocks), scales stacked the same way.
  struct DeviceExperts {
    const void *gate = nullptr, *up = nullptr, *down = nullptr;
    const void *gate_scales = nullptr, *up_scales = nullptr, *down_scales = nullptr;
    Quant quant = Quant::None;
    int64_t inter = 0;
  };

  CudaBackend(const ModelConfig& cfg, const CudaBackendOptions& opts) : cfg_(cfg), opts_(opts) {}

  // --- CUDA graphs (cuda_graphs.cc) ------------------------------------------------------------
  // A decode step (every sequence one row, no activation hook) of a shape seen for the first time is
  // recorded: begin_step starts a stream capture after uploading the plan, the ops launch into it, and
  // download()/download_greedy() end it, instantiate the graph and launch it. A later step of the same
  // shape replays it: each op only checks it is called in the captured order (a signature of its
  // arguments) and launches nothing; the download launches the graph. Every top-level op also leaves a
  // closure of itself, so when a capture fails (or a replay meets an op out of order) the step's ops so
  // far run eagerly and the rest of the step continues eagerly.
  enum class Mode { Eager, Record, Replay };
  // Graph key: sequences, page-table width and logit rows, each as its bucket (begin_step pads the step
  // to them: batches 1, 2, 4, 8, ... up to max_step_rows, widths the next power of two), and the token
  // selection (kSelect*). The scratch and op buffers' addresses are baked into the graphs, so any
  // reallocation drops them all (drop_graphs).
  enum Select : int { kSelectLogits = 0, kSelectGreedy, kSelectSampled, kSelectSampledLogprobs };
  using GraphKey = std::tuple<int64_t, int64_t, int64_t, int>;
  struct StepGraph {
    void* exec = nullptr;        // cudaGraphExec_t
    std::vector<uint64_t> sigs;  // the top-level ops' signatures, in capture order
  };
  struct OpGate {
    CudaBackend* be;
    bool skip;  // replay: the op is in the graph, launch nothing
    ~OpGate() { --be->op_depth_; }
  };
  struct Sig {
    uint64_t h = 1469598103934665603ull;
    void bytes(const void* p, size_t n) {
      const auto* b = static_cast<const unsigned char*>(p);
      for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
    }
    template <class T> void add(const T& v) {
      static_assert(std::is_trivially_copyable<T>::value, "signature arguments are plain values");
      bytes(&v, sizeof v);
    }
    void add(const std::vector<int64_t>& v) { bytes(v.data(), v.size() * sizeof(int64_t)); }
  };
  // Called first by every Backend op with a closure re-running it and the arguments that identify it.
  template <class F, class... A> OpGate gate(int op, F&& rerun, const A&... args) {
    const bool top = op_depth_++ == 0;
    if (!top || mode_ == Mode::Eager) return OpGate{this, false};
    Sig s;
    s.add(op);
    (s.add(args), ...);
    return OpGate{this, gate_top(s.h, std::function<void()>(std::forward<F>(rerun)))};
  }
  bool gate_top(uint64_t sig, std::function<void()>&& rerun);
  void graph_begin_step(const StepPlan& plan);  // picks the step's mode (before the plan upload)
  void graph_start_capture();                   // (after the plan upload)
  void graph_finish_step();                     // end of the graph region: launch the graph or run eagerly
  void fall_back_to_eager(const std::string& why, bool failure);
  void discard_graph_step();                    // an abandoned step: end its capture, run nothing
  void drop_graphs();
  void download_greedy_select(Act logits);  // argmax_tokens into greedy_dev_
  void download_sampled_select(Act logits);  // sample_tokens into greedy_dev_ (+ logprobs)
  // begin_step's part for plan.sample_requests: stages params and history (pinned) and uploads them to
  // sample_params_dev_ / sample_history_dev_ (fixed addresses; a larger history regrows them and
  // drops the graphs).
  // padded_rows: the step's padded logit rows (>= requests.size()): the padding rows get greedy params.
  Status stage_samples(const std::vector<SampleRequest>& requests, int64_t padded_rows);
  Status alloc_pinned(uint64_t bytes, void** out);
  Status init(const ModelWeights& weights);
  // Opt-in (GLM_CUDA_HOPPER_GEMM=1) until scripts/gpu-check.sh has verified linear_gemm_sm90 on an H200:
  // runs it and linear_gemm on one random problem and uses it only if they agree.
  Status select_gemm_path();
  Status plan_memory(const ModelWeights& weights);
  Status upload_weights(const ModelWeights& weights);
  Status device_alloc(uint64_t bytes, void** out, const char* what);
  Status upload(const void* host, uint64_t bytes, void** out, const char* what);
  Status upload_matrix(const Matrix& m, const char* what);
  Status upload_vector(const std::vector<float>& v, const char* what);
  Status upload_experts(const MoeWeights& moe, int64_t layer);
  // One decoder layer's matrices and vectors (a trunk layer or the MTP layer's).
  Status upload_layer(const LayerWeights& L, int64_t layer);
  // The MTP layer and its eh_proj, norms and shared head (when the pool holds its KV, i.e. it runs). A
  // shared_head.head or embed_tokens copy equal to the trunk's bytes shares the trunk's device copy.
  Status upload_mtp(const MtpWeights& m, const ModelWeights& w);
  // FP8 matrices (cuda_backend_quant.cc): E4M3 data + fp32 scales, as stored; refused formats are typed errors.
  Status upload_quant_matrix(const Matrix& m, const char* what);
  // Device bytes upload_matrix / upload_experts allocate for these (the memory plan).
  static uint64_t device_matrix_bytes(const Matrix& m);
  static uint64_t device_experts_bytes(const MoeWeights& moe);
  // y (=|+=) x W^T (+ bias) for an FP8 matrix: fp8_gemv (decode) or fp8_dequant_gemm (prefill).
  void linear_quant(Act x, const DeviceMatrix& dm, const Matrix& w, const std::vector<float>* bias, Act out, bool accumulate);
  // Routed experts in FP8 / MXFP4 (decode kernels for <= 4 tokens, grouped tensor-core path otherwise).
  Status run_quant_experts(Act x, const DeviceExperts& de, const int32_t* ids, const float* weights, float* y, void* ws,
                           int64_t ws_bytes);
  // A device buffer private to one op, grown on demand (activation budget planned at load).
  Status internal(int index, uint64_t bytes, void** out);

  const DeviceMatrix* matrix(const Matrix& m);
  const float* vec(const std::vector<float>* v);
  cuda::LinearWeight linear_weight(const Matrix& m, const std::vector<float>* bias);
  // Records the first failure of the step; EngineDead also kills the backend for good.
  void record(Status st);
  bool running() const { return step_error_.is_ok() && dead_.is_ok(); }
  cuda::Stream stream() const { return cuda::Stream{stream_}; }
  cuda::KvLayout layer_layout() const;
  void* layer_pool(int64_t layer) const;     // layer l's pages (elements)
  float* layer_scales(int64_t layer) const;  // FP8: layer l's row scales; null otherwise
  // Graph buckets: an activation of the step's real rows as the kernels see it (the step's padded rows);
  // other row counts unchanged. Identity outside padded decode steps.
  Act pad(Act a) const {
    if (a.rows == real_rows_) a.rows = step_rows_;
    return a;
  }
  int64_t pad_rows(int64_t rows) const { return rows == real_rows_ ? step_rows_ : rows; }
  // mlp.experts: y[t] = sum_k weights[t,k] * expert_{ids[t,k]}(x[t]) (y overwritten).
  Status run_experts(Act x, const MoeWeights& w, const int32_t* ids, const float* weights, float* y);
  // The two element-wise steps of an MLP: gate = silu(gate) * up, and out (=|+=) y.
  void silu_mul(float* gate, const float* up, int64_t n);
  void store(float* out, const float* y, int64_t n, bool accumulate);

  ModelConfig cfg_;
  CudaBackendOptions opts_;
  int64_t kv_layers_ = 0;  // KV layers per page: the trunk's, plus the MTP layer's when it runs
  bool mtp_ = false;       // the MTP layer runs here (its weights are uploaded, its KV has a layer)
  bool mtp_head_shared_ = false, mtp_embed_shared_ = false;  // its copies equal the trunk's (one device copy)
  int64_t page_tokens_ = 16;  // positions per KV page (opts_.kv.page_tokens)
  void* stream_ = nullptr;                  // cudaStream_t: this model's stream (one per model/session executor)
  std::vector<void*> allocations_;          // every cudaMalloc of the backend, freed at destruction
  std::unordered_map<const void*, DeviceMatrix> matrices_;  // host Matrix::data -> device copy
  std::unordered_map<const void*, const float*> vectors_;   // host vector data -> device copy
  std::unordered_map<const void*, DeviceExperts> experts_;  // MoeWeights* -> stacked experts
  // Embedding tables as embedding_gather reads them (F16 widened to F32), by host data: the trunk's and
  // (when it has its own copy) the MTP layer's.
  struct EmbedTable {
    const void* data = nullptr;
    cuda::TableType type = cuda::TableType::BF16;
  };
  std::unordered_map<const void*, EmbedTable> embed_tables_;
  Status upload_embedding(const Matrix& emb, const char* what);
  const double* inv_freq_ = nullptr;       // RoPE inverse frequencies [rotary_dim / 2], double
  // KV pool: elements [layer][page][K|V][kv_head][pos in page][head_dim] of kv_elem_, then (FP8) fp32
  // scales [layer][page][K|V][kv_head][pos in page] (cuda/ops.h KvLayout). device_pages_ = the engine's
  // kv_spec_.n_pages + 1: the last page (id kv_spec_.n_pages) is the backend's own scratch page, where
  // the padding rows of a graph-bucketed decode step write their K/V; the engine never sees its id.
  void* kv_pool_ = nullptr;
  float* kv_scales_ = nullptr;
  cuda::KvElem kv_elem_ = cuda::KvElem::F32;
  int64_t device_pages_ = 0;
  KvPoolSpec kv_spec_;                     // the pool's page count and sizes (the engine hands out the ids)
  // Step plan on the device (begin_step): tokens, positions, slots, row_seq [rows]; seq_lens [seqs];
  // page_table [seqs, pages_per_seq]; logit rows.
  int32_t* plan_dev_ = nullptr;
  int64_t plan_capacity_ints_ = 0;
  int32_t *d_tokens_ = nullptr, *d_positions_ = nullptr, *d_slots_ = nullptr, *d_row_seq_ = nullptr,
          *d_seq_lens_ = nullptr, *d_page_table_ = nullptr, *d_logit_rows_ = nullptr;
  // MTP steps (plan.first_key > 0): RoPE positions [rows] and the hidden rows gathered as the layer's
  // input [rows] (plan.hidden_rows), after the logit rows; the host arrays they came from identify them.
  int32_t *d_rope_positions_ = nullptr, *d_hidden_rows_ = nullptr;
  const int32_t* rope_host_ = nullptr;
  std::vector<int64_t> hidden_rows_;
  int64_t first_key_ = 0;
  bool mtp_step_ = false;  // this step is the MTP layer's (begin_step): run eagerly, never padded
  // The step as the device runs it. A decode step is padded to its graph bucket (begin_step): step_rows_
  // = step_seqs_ = the batch bucket (padding sequences of one row on the scratch page), pages_per_seq_ =
  // the page-table width bucket, step_logits_ = the padded logit rows; real_rows_ = the plan's rows.
  int64_t step_rows_ = 0, step_seqs_ = 0, pages_per_seq_ = 0, max_len_ = 0, real_rows_ = -1, step_logits_ = 0;
  bool decode_only_ = false;               // every sequence of the step has one row
  std::vector<int64_t> logit_rows_;
  struct Buffer {
    void* data = nullptr;
    uint64_t bytes = 0;
  };
  std::vector<Buffer> slots_, internal_;
  uint64_t scratch_bytes_ = 0;
  MemoryPlan plan_bytes_;
  Status step_error_;
  Status dead_;
  bool use_sm90_gemm_ = false;             // BF16 projections of > 4 rows on linear_gemm_sm90
  std::string gemm_path_;

  // Step plan staging in pinned host memory (an async upload that may precede a graph replay) and the
  // greedy tokens' device/pinned buffers [max_step_rows].
  int32_t* plan_pinned_ = nullptr;
  int32_t* greedy_dev_ = nullptr;
  int32_t* greedy_pinned_ = nullptr;
  std::vector<void*> pinned_;            // cudaMallocHost blocks, freed at destruction
  // Device sampling of this step: on (sample_select_ != kSelectLogits) when every request fits the kernel
  // and opts_.device_sampling; params [max_step_rows] then history pairs in one op buffer (internal 8),
  // its pinned staging twin, logprobs out chosen [R] | top ids [R, 32] | top logprobs [R, 32] (device
  // internal 10, pinned twin).
  int sample_select_ = kSelectLogits;
  int64_t sample_rows_ = 0;
  cuda::SampleParams* sample_params_dev_ = nullptr;
  int32_t* sample_history_dev_ = nullptr;
  void* sample_pinned_ = nullptr;
  uint64_t sample_pinned_bytes_ = 0;
  float* sample_lp_dev_ = nullptr;
  float* sample_lp_pinned_ = nullptr;
  bool step_open_ = false;               // begin_step ran and end_step has not yet
  Mode mode_ = Mode::Eager;
  int op_depth_ = 0;                     // > 0 inside a Backend op (nested ops are not gated)
  bool capturing_ = false;               // the stream is in capture (Record)
  bool capture_failed_ = false;          // an op failed during the capture (runs eagerly at the next gate)
  std::string capture_failure_;
  GraphKey step_key_{};
  std::vector<uint64_t> step_sigs_;               // Record: signatures so far
  std::vector<std::function<void()>> step_ops_;   // Record/Replay: the step's top-level ops so far
  std::map<GraphKey, StepGraph> graphs_;
  StepGraph* replaying_ = nullptr;
  size_t replay_pos_ = 0;
  GraphStats graph_stats_;
  int warnings_left_ = 3;
  bool inject_misuse_ = false;
  bool capture_regrow_ = false;          // the capture failed only because an op buffer must grow
};

}  // namespace glm::cuda_backend
