#include "cpu/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace glm::cpu {
namespace {

// How long a waiting thread spins before it sleeps. Long enough to cover the caller's serial work
// between two kernels of a decode step (norms, softmax, small ops), short enough that an idle model
// is quiet again well within a millisecond.
constexpr auto kSpinTime = std::chrono::microseconds(200);
// Chunks per thread in parallel_for: a few, so threads that finish early (or a thread the OS
// preempted) are balanced by the others, without making chunks so small that claiming costs show.
constexpr int64_t kChunksPerThread = 4;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Spins until done() or kSpinTime elapses; reads the clock only every 64 pauses (it costs ~20 ns).
template <class Pred>
bool spin_until(Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinTime;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  const int extra = std::max(0, std::min(n_threads, 1024) - 1);
  workers_.reserve(size_t(extra));
  for (int i = 0; i < extra; ++i) {
    try {
      workers_.emplace_back([this, i] { worker_main(i + 1); });
    } catch (...) {
      break;  // the OS refused a thread: run with those we have
    }
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_.store(true, std::memory_order_relaxed);
    generation_.fetch_add(2, std::memory_order_seq_cst);
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::record_exception() noexcept {
  std::lock_guard<std::mutex> lock(error_mutex_);
  if (!error_) error_ = std::current_exception();
}

void ThreadPool::rethrow_pending() {
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(error_mutex_);
    std::swap(error, error_);
  }
  busy_.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

uint64_t ThreadPool::next_sequence() const {
  return (generation_.load(std::memory_order_relaxed) >> 1) + 1;  // only the job owner writes it
}

void ThreadPool::post(uint64_t sequence, uint64_t kind) {
  generation_.store((sequence << 1) | kind, std::memory_order_seq_cst);  // publishes the job state
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }  // orders the bump with a sleeper's predicate check
    work_cv_.notify_all();
  }
}

void ThreadPool::wait_until(std::atomic<int64_t>& counter, int64_t target) {
  auto done = [&] { return counter.load(std::memory_order_seq_cst) == target; };
  if (spin_until(done)) return;
  caller_waiting_.store(true, std::memory_order_seq_cst);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_cv_.wait(lock, done);
  }
  caller_waiting_.store(false, std::memory_order_relaxed);
}

bool ThreadPool::run_chunks(uint64_t sequence) {
  const uint64_t tag = sequence & 0xffffffffu;
  constexpr uint64_t kMask = (uint64_t(1) << kChunkBits) - 1;
  bool ran_any = false;
  for (;;) {
    uint64_t claim = claim_.load(std::memory_order_acquire);
    for (;;) {
      if ((claim >> 32) != tag || (claim & kMask) >= ((claim >> kChunkBits) & kMask)) return ran_any;
      if (claim_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel, std::memory_order_acquire)) break;
    }
    // The claimed chunk keeps this job alive (the caller waits for it), so its fields are stable.
    const int64_t i = int64_t(claim & kMask);
    const int64_t base = range_n_ / range_chunks_, extra = range_n_ % range_chunks_;
    const int64_t begin = i * base + std::min(i, extra);
    const int64_t end = begin + base + (i < extra ? 1 : 0);
    try {
      (*range_fn_)(begin, end);
    } catch (...) {
      record_exception();
    }
    ran_any = true;
    if (chunks_left_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        caller_waiting_.load(std::memory_order_seq_cst)) {
      { std::lock_guard<std::mutex> lock(mutex_); }
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::worker_main(int index) {
  uint64_t seen = 0;
  for (;;) {
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; })) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_cv_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
      }
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    const uint64_t generation = generation_.load(std::memory_order_acquire);
    seen = generation;
    if (stopping_.load(std::memory_order_relaxed)) return;  // ordered by the acquire above
    if ((generation & 1) == kChunks) {
      // Possibly late: if this job already finished, the claim tag no longer matches and we skip it.
      run_chunks(generation >> 1);
      continue;
    }
    // kAllThreads: the caller waits for every worker, so the job cannot have moved on.
    try {
      (*all_fn_)(index, size());
    } catch (...) {
      record_exception();
    }
    if (all_pending_.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        caller_waiting_.load(std::memory_order_seq_cst)) {
      { std::lock_guard<std::mutex> lock(mutex_); }
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::run_on_all(const std::function<void(int, int)>& fn) {
  if (workers_.empty() || busy_.exchange(true, std::memory_order_acquire)) {
    // Single-threaded pool, or a nested / concurrent call: run every index here, in order.
    const int n = size();
    for (int i = 0; i < n; ++i) fn(i, n);
    return;
  }
  all_fn_ = &fn;
  all_pending_.store(int64_t(workers_.size()), std::memory_order_relaxed);
  post(next_sequence(), kAllThreads);
  try {
    fn(0, size());
  } catch (...) {
    record_exception();
  }
  wait_until(all_pending_, 0);
  rethrow_pending();
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = std::min<int64_t>(std::max<int64_t>(1, n / grain), size() * kChunksPerThread);
  if (chunks == 1 || workers_.empty() || busy_.exchange(true, std::memory_order_acquire)) {
    fn(0, n);  // one chunk, single-threaded pool, or a nested / concurrent call
    return;
  }
  range_fn_ = &fn;
  range_n_ = n;
  range_chunks_ = chunks;
  chunks_left_.store(chunks, std::memory_order_relaxed);
  const uint64_t sequence = next_sequence();
  claim_.store(((sequence & 0xffffffffu) << 32) | (uint64_t(chunks) << kChunkBits), std::memory_order_release);
  post(sequence, kChunks);
  run_chunks(sequence);
  wait_until(chunks_left_, 0);
  rethrow_pending();
}

}  // namespace glm::cpu
