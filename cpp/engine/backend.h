// The interface the forward pass is written against (DESIGN.md: the forward pass is written once;
// the CPU backend implements it now, the CUDA backend later). Activations are fp32 row-major tensors
// living in the backend's memory; weights are the bound Matrix/vector structs of weights.h.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "engine/config.h"
#include "engine/kv_format.h"
#include "engine/kv_pool.h"
#include "engine/sampler.h"
#include "engine/status.h"
#include "engine/weights.h"

namespace glm {

// Host-side plan of one forward step over a batch of sequences (rule 12: plan on the host). Rows are
// the concatenation of every sequence's new tokens; each sequence attends only to its own positions,
// found through its page table (ids of the model's KV pool; page i holds positions [i*P, (i+1)*P)).
struct StepPlan {
  struct Sequence {
    const PageId* pages = nullptr;  // page table: at least ceil((start_pos + n_rows) / P) entries
    int64_t n_pages = 0;
    int64_t row_begin = 0;   // first row of this sequence in the step
    int64_t n_rows = 0;      // new tokens of this sequence
    int64_t start_pos = 0;   // position of its first new token (positions before it hold valid KV)
  };
  std::vector<Sequence> sequences;
  std::vector<int32_t> tokens;      // [rows]
  std::vector<int32_t> positions;   // [rows]
  std::vector<int64_t> logit_rows;  // rows whose next-token logits the caller wants, in output order
  bool greedy_tokens = false;    // only each logit row's argmax token is wanted (Backend::download_greedy)
  // Non-null: each logit row's token is chosen by its request (Backend::download_sampled), one per
  // logit row; valid until the step's end. Never together with greedy_tokens.
  const std::vector<SampleRequest>* sample_requests = nullptr;
  bool activation_hook = false;  // a hook reads intermediates this step (a device backend then runs it eagerly)
  // The MTP layer's steps (engine/mtp.h): row r attends to keys [first_key, positions[r]] (its slot 0
  // holds no pair) and is rotated by RoPE at rope_positions[r] instead of positions[r].
  int64_t first_key = 0;
  std::vector<int32_t> rope_positions;  // empty: positions
  // The MTP layer's steps: row r's hidden input is row hidden_rows[r] of the source activation (the
  // trunk's final-norm rows, or the previous MTP step's output when chaining); set by Model::run_mtp so
  // a device backend uploads it with the plan.
  std::vector<int64_t> hidden_rows;
  // The trunk's final-norm hidden state of every row is wanted (forward_step's `hidden` out: the MTP
  // layer's input); the logits are then taken from those rows.
  bool keep_hidden = false;

  int64_t rows() const { return int64_t(tokens.size()); }
};

// An fp32 activation tensor [rows, cols], contiguous, in backend memory.
struct Act {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
};

// One output of Backend::linear_many: out = x @ w^T (+ bias).
struct Projection {
  const Matrix* w = nullptr;
  const std::vector<float>* bias = nullptr;  // nullptr: no bias
  Act out;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // The KV page pool this backend made at creation (sized from its KvPoolRequest). The engine hands
  // out its page ids (KvPool) and puts them in each step's page tables.
  virtual const KvPoolSpec& kv_pool() const = 0;
  // Copies positions [0, n) of page src to page dst in every layer, in step order (copy-on-write of a
  // shared page before a sequence writes into it).
  virtual Status copy_kv_page(PageId src, PageId dst, int64_t n) = 0;
  // Called once before the ops of a step with its plan: a device backend uploads what the step's
  // kernels read (tokens, positions, page tables, slots) here, once, instead of inside each layer.
  virtual Status begin_step(const StepPlan& plan) { return Status::ok(); }
  // Called after the step's ops: the first error any op of the step hit (the ops return nothing, so
  // a device backend records failures and reports them here). EngineDead means the backend is
  // unusable from now on and every later begin_step fails with it.
  virtual Status end_step() { return Status::ok(); }
  // Ok while the backend can run; EngineDead (with the original error) after a fatal device error.
  virtual Status health() const { return Status::ok(); }
  // Bytes of activation buffers held (model.info.memory.scratchBytes).
  virtual uint64_t scratch_bytes() const { return 0; }
  // Decode steps captured as device graphs, replayed, and captures that failed (the step then ran
  // eagerly) so far (model.info.cudaGraphs); zeros for a backend without graphs.
  struct GraphCounters {
    uint64_t captures = 0, replays = 0, failures = 0;
  };
  virtual GraphCounters graph_counters() const { return {}; }

  // Scratch tensors are identified by a slot number and stay valid until the next call with the
  // same slot; their contents are undefined on return.
  virtual Status scratch(int slot, int64_t rows, int64_t cols, Act* out) = 0;

  // out[r] = table[tokens[r]] (model.embed_tokens)
  virtual void embed(const Matrix& table, const int32_t* tokens, Act out) = 0;
  // out = w * x * rsqrt(mean(x^2) + eps), per row (out may alias x)
  virtual void rmsnorm(Act x, const std::vector<float>& w, float eps, Act out) = 0;
  // out (=|+=) x @ w^T (+ bias)
  virtual void linear(Act x, const Matrix& w, const std::vector<float>* bias, Act out, bool accumulate) = 0;
  // Several projections of the same input (q/k/v), computed together.
  virtual void linear_many(Act x, const Projection* outs, size_t n) = 0;
  // In place on q [rows, heads*d] and k [rows, kv_heads*d]: optional per-head RMSNorm (q_norm/k_norm),
  // then partial NeoX RoPE on the first rotary_dim dims of every head at each row's position.
  virtual void qk_norm_rope(Act q, Act k, const AttentionWeights& w, const int32_t* positions) = 0;
  // Writes k/v rows into each sequence's pages at its positions (converted to the pool's KvType), then
  // causal GQA attention of q over the cache: out [rows, heads*d].
  virtual void attention(const StepPlan& plan, int64_t layer, Act q, Act k, Act v, Act out) = 0;
  // out (=|+=) down(silu(gate(x)) * up(x))
  virtual void swiglu_mlp(Act x, const MlpWeights& w, Act out, bool accumulate) = 0;
  // out += routed experts (sigmoid router, biased group-limited top-k, renormalised, scaled) + shared
  virtual void moe(Act x, const MoeWeights& w, Act out) = 0;
  // out[i] = x[rows[i]]
  virtual void gather_rows(Act x, const std::vector<int64_t>& rows, Act out) = 0;
  // out[r] = [a[r], b[r]] (the MTP layer's eh_proj input)
  virtual void concat_cols(Act a, Act b, Act out) = 0;
  // Copies an activation to host memory (logits, debug hooks).
  virtual void download(Act x, float* host) = 0;
  // Greedy selection: tokens[r] = argmax of logits row r (ties to the lowest id, NaN never wins, -1 when
  // every value is NaN: engine/sampler.cc argmax_token). This default downloads the rows into
  // host_logits ([rows, cols]) and selects there; a device backend may select on the device and leave
  // host_logits untouched.
  virtual void download_greedy(Act logits, float* host_logits, int32_t* tokens) {
    download(logits, host_logits);
    for (int64_t r = 0; r < logits.rows; ++r) tokens[r] = argmax_token(host_logits + r * logits.cols, logits.cols);
  }
  // Whether download_sampled selects on the device for these params (Model::generate then routes its
  // sampled steps through it); false: the host Sampler on downloaded logits, as always.
  virtual bool samples_on_device(const SamplingParams& /*p*/) const { return false; }
  // Sampled selection: tokens[r] (and logprobs[r] where requests[r].params.top_logprobs >= 0) as
  // sample_request() chooses from logits row r (the Sampler's rule, with the request's u and history);
  // -1 where it fails (every logit NaN, no finite candidate). This default downloads the rows into
  // host_logits and selects there; a device backend may select on the device and leave them untouched.
  virtual void download_sampled(Act logits, float* host_logits, const std::vector<SampleRequest>& requests, int32_t* tokens,
                                TokenLogprobs* logprobs) {
    download(logits, host_logits);
    for (int64_t r = 0; r < logits.rows; ++r) {
      if (!sample_request(host_logits + r * logits.cols, logits.cols, requests[size_t(r)], &tokens[r], &logprobs[r]).is_ok()) {
        tokens[r] = -1;
      }
    }
  }
};

}  // namespace glm
