// CUDA graphs of the CUDA backend's decode steps (cuda_backend.h, "CUDA graphs", says how a step is
// recorded, replayed or run eagerly). At batch-1 decode each layer is a dozen small kernels whose
// launch gaps cost as much as their work; a replayed graph issues the whole step at once.
//
// What makes a step replayable (DESIGN.md rule 12): every launch of a decode step reads only device
// buffers at fixed addresses (the step plan, the scratch and op buffers, the KV pool, the weights) and
// its launch parameters depend only on the graph key (sequences, page-table width, logit rows, token selection),
// not on the lengths: attention_decode's split is sized from the page table's capacity. The key's
// sizes are buckets (begin_step pads a decode step to them), so a decode whose batch or longest context
// grows replays the same graph until it crosses a bucket edge. The step plan
// is uploaded from pinned memory before the graph launch on the same stream, so a replay sees the new
// tokens, positions, slots, lengths and pages.
#include <algorithm>
#include <cstdio>

#include "cuda_backend/cuda_backend.h"
#include "cuda_backend/runtime.h"

namespace glm::cuda_backend {

namespace {
constexpr size_t kMaxGraphs = 64;  // shapes kept; past this all are dropped (a new batch mix recaptures)
}

Status CudaBackend::alloc_pinned(uint64_t bytes, void** out) {
  void* p = nullptr;
  if (cudaMallocHost(&p, size_t(std::max<uint64_t>(bytes, 4))) != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::error(ErrorCode::InsufficientMemory, "CUDA backend: cannot allocate pinned host memory for the step plan");
  }
  pinned_.push_back(p);
  *out = p;
  return Status::ok();
}

void CudaBackend::drop_graphs() {
  // Only called with the stream idle (a graph is never in flight here): after a synchronisation, at
  // destruction, or between steps.
  if (!graphs_.empty()) ++graph_stats_.invalidations;
  for (auto& kv : graphs_) (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(kv.second.exec));
  graphs_.clear();
  replaying_ = nullptr;
}

void CudaBackend::graph_begin_step(const StepPlan& plan) {
  mode_ = Mode::Eager;
  capture_failed_ = false;
  capture_regrow_ = false;
  step_ops_.clear();
  step_sigs_.clear();
  replaying_ = nullptr;
  replay_pos_ = 0;
  if (!decode_only_ || mtp_step_) return;
  // Only the trunk's decode steps are graphed (an MTP step runs eagerly): a prefill's shape changes with
  // every prompt, and its kernels are long enough that launch gaps do not matter. An activation hook
  // downloads intermediates mid-step.
  if (!opts_.graphs || plan.activation_hook || plan.logit_rows.empty()) {
    ++graph_stats_.eager_decode_steps;
    return;
  }
  // (begin_step padded the shape to its buckets: these are the bucket's sequences, width and logit rows.)
  step_key_ = GraphKey{step_seqs_, pages_per_seq_, step_logits_, plan.greedy_tokens ? int(kSelectGreedy) : sample_select_};
  auto it = graphs_.find(step_key_);
  if (it != graphs_.end()) {
    mode_ = Mode::Replay;
    replaying_ = &it->second;
    return;
  }
  mode_ = Mode::Record;  // the capture starts after the plan upload (graph_start_capture)
}

void CudaBackend::graph_start_capture() {
  if (mode_ != Mode::Record) return;
  // Thread-local mode: unsafe calls are forbidden on this (the executor's) thread only, so another model
  // loading or running on another thread is not affected by this capture.
  const cudaError_t err = cudaStreamBeginCapture(static_cast<cudaStream_t>(stream_), cudaStreamCaptureModeThreadLocal);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    mode_ = Mode::Eager;
    ++graph_stats_.capture_failures;
    graph_stats_.last_failure = std::string("cudaStreamBeginCapture: ") + cudaGetErrorString(err);
    return;
  }
  capturing_ = true;
}

bool CudaBackend::gate_top(uint64_t sig, std::function<void()>&& rerun) {
  if (mode_ == Mode::Record) {
    if (capture_failed_) {
      fall_back_to_eager(capture_failure_, !capture_regrow_);
      return false;  // this op runs eagerly too
    }
    step_sigs_.push_back(sig);
    step_ops_.push_back(std::move(rerun));
    if (inject_misuse_) {
      inject_misuse_ = false;
      record(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "injected synchronisation"));
    }
    return false;  // run it: its launches go into the capture
  }
  // Replay: the forward pass must call the captured ops in the captured order with the same arguments.
  if (replaying_ && replay_pos_ < replaying_->sigs.size() && replaying_->sigs[replay_pos_] == sig) {
    ++replay_pos_;
    step_ops_.push_back(std::move(rerun));
    return true;
  }
  fall_back_to_eager("graph replay: an op differs from the captured step", true);
  return false;
}

void CudaBackend::fall_back_to_eager(const std::string& why, bool failure) {
  if (capturing_) {
    // Leave the capture, discarding it; its error (if any) is the capture's, not the device's.
    cudaGraph_t g = nullptr;
    (void)cudaStreamEndCapture(static_cast<cudaStream_t>(stream_), &g);
    if (g) (void)cudaGraphDestroy(g);
    (void)cudaGetLastError();
    capturing_ = false;
  }
  if (mode_ == Mode::Replay && failure) {
    // The graph no longer matches this shape's forward pass: recapture next time.
    auto it = graphs_.find(step_key_);
    if (it != graphs_.end()) {
      (void)cudaGraphExecDestroy(static_cast<cudaGraphExec_t>(it->second.exec));
      graphs_.erase(it);
    }
  }
  if (failure) {
    ++graph_stats_.capture_failures;
    graph_stats_.last_failure = why;
    if (warnings_left_ > 0) {
      --warnings_left_;
      std::fprintf(stderr, "glm-node: CUDA graph of a decode step failed (%s); the step ran eagerly\n", why.c_str());
    }
  }
  ++graph_stats_.eager_decode_steps;
  mode_ = Mode::Eager;
  capture_failed_ = false;
  capture_regrow_ = false;
  replaying_ = nullptr;
  step_sigs_.clear();
  // The step's ops so far never ran (recorded or skipped): run them now, in order.
  std::vector<std::function<void()>> ops = std::move(step_ops_);
  step_ops_.clear();
  for (auto& op : ops) op();
}

void CudaBackend::discard_graph_step() {
  if (capturing_) {
    cudaGraph_t g = nullptr;
    (void)cudaStreamEndCapture(static_cast<cudaStream_t>(stream_), &g);
    if (g) (void)cudaGraphDestroy(g);
    (void)cudaGetLastError();
    capturing_ = false;
  }
  mode_ = Mode::Eager;
  capture_failed_ = capture_regrow_ = false;
  replaying_ = nullptr;
  step_sigs_.clear();
  step_ops_.clear();
}

void CudaBackend::graph_finish_step() {
  const cudaStream_t s = static_cast<cudaStream_t>(stream_);
  if (mode_ == Mode::Replay) {
    if (!replaying_ || replay_pos_ != replaying_->sigs.size()) {
      return fall_back_to_eager("graph replay: the step has fewer ops than the captured one", true);
    }
    mode_ = Mode::Eager;
    step_ops_.clear();
    ++graph_stats_.replays;
    // A launch failure here is the device's (the same kernels ran fine when captured): sticky.
    record(runtime_status(cudaGraphLaunch(static_cast<cudaGraphExec_t>(replaying_->exec), s), "CUDA graph launch"));
    replaying_ = nullptr;
    return;
  }
  if (mode_ != Mode::Record) return;
  if (capture_failed_) return fall_back_to_eager(capture_failure_, !capture_regrow_);
  cudaGraph_t graph = nullptr;
  cudaError_t err = cudaStreamEndCapture(s, &graph);
  capturing_ = false;
  if (err != cudaSuccess || !graph) {
    (void)cudaGetLastError();
    return fall_back_to_eager(std::string("cudaStreamEndCapture: ") + cudaGetErrorString(err), true);
  }
  cudaGraphExec_t exec = nullptr;
  err = cudaGraphInstantiate(&exec, graph, 0);
  (void)cudaGraphDestroy(graph);
  if (err != cudaSuccess || !exec) {
    (void)cudaGetLastError();
    return fall_back_to_eager(std::string("cudaGraphInstantiate: ") + cudaGetErrorString(err), true);
  }
  if (graphs_.size() >= kMaxGraphs) drop_graphs();
  StepGraph& g = graphs_[step_key_];
  g.exec = exec;
  g.sigs = std::move(step_sigs_);
  step_sigs_.clear();
  step_ops_.clear();
  mode_ = Mode::Eager;
  ++graph_stats_.captures;
  record(runtime_status(cudaGraphLaunch(exec, s), "CUDA graph launch"));
}

}  // namespace glm::cuda_backend
