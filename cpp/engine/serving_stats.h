// What model.stats() reports about the scheduler: a snapshot made on the engine thread after every
// step and read from any thread. Field names map one to one onto Prometheus metrics (README).
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <vector>

namespace glm {

struct Percentiles {
  double p50 = 0, p90 = 0, p99 = 0;
  uint64_t count = 0;  // samples in the window they were taken from
};

struct ServingStats {
  int64_t running = 0;         // requests admitted and not finished
  int64_t waiting = 0;         // requests submitted, not admitted (including those behind a busy session)
  int64_t kv_pages_total = 0;
  int64_t kv_pages_used = 0;   // held by sessions (shared prefix pages count once)
  int64_t kv_pages_cached = 0; // prefix-cache pages nobody holds (reclaimable)
  int64_t kv_page_tokens = 0;
  uint64_t prefix_cache_queries = 0;  // prompt tokens looked up (cumulative)
  uint64_t prefix_cache_hits = 0;     // of those, served from cached KV (session or prefix cache)
  uint64_t preemptions = 0;           // running requests whose pages were taken back (recomputed later)
  uint64_t evictions = 0;             // cached pages reclaimed
  uint64_t prompt_tokens = 0;         // prompt tokens computed (cumulative; cache hits excluded)
  uint64_t generation_tokens = 0;     // tokens sampled (cumulative)
  uint64_t requests_finished = 0;     // completed without error
  uint64_t requests_failed = 0;       // ended with an error, an abort or a dispose
  uint64_t steps = 0;                 // forward steps run
  // Speculative decoding with the MTP layer (cumulative).
  uint64_t draft_rounds = 0;          // verification rounds (a request's step that carried drafts)
  uint64_t draft_tokens = 0;          // drafts verified
  uint64_t accepted_draft_tokens = 0; // of which the target agreed with
  uint64_t mtp_steps = 0;             // MTP layer steps run (KV fill and drafting)
  bool speculation_active = false;    // the model fills the MTP KV and may draft (off: never had it, or suspended)
  double prompt_tokens_per_second = 0;      // over the last 10 seconds
  double generation_tokens_per_second = 0;  // over the last 10 seconds
  Percentiles time_to_first_token_ms;       // submission to first token, last 4096 requests
  Percentiles inter_token_latency_ms;       // between consecutive tokens of a request, last 4096 gaps
};

// Latency samples in a ring of the most recent ones; percentiles by nearest rank.
class LatencyWindow {
 public:
  explicit LatencyWindow(size_t capacity = 4096) : capacity_(capacity) {}
  void add(double ms);
  Percentiles percentiles() const;

 private:
  size_t capacity_;
  size_t next_ = 0;
  std::vector<double> samples_;
};

// Token counts per step over a sliding time window, for tokens/s.
class RateWindow {
 public:
  using Clock = std::chrono::steady_clock;
  explicit RateWindow(double seconds = 10) : seconds_(seconds) {}
  void add(Clock::time_point t, uint64_t prompt, uint64_t generated);
  // {prompt tokens/s, generated tokens/s} over the window ending at `now`.
  std::pair<double, double> rates(Clock::time_point now);

 private:
  struct Entry { Clock::time_point t; uint64_t prompt, generated; };
  double seconds_;
  bool started_ = false;
  Clock::time_point first_;
  std::deque<Entry> entries_;
};

}  // namespace glm
