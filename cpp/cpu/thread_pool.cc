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
    generation_.fetch_add(1, std::memory_order_seq_cst);
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::record_exception() noexcept {
  std::lock_guard<std::mutex> lock(error_mutex_);
  if (!error_) error_ = std::current_exception();
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
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_.load(std::memory_order_relaxed)) return;  // ordered by the acquire above
    try {
      (*job_)(index, size());
    } catch (...) {
      record_exception();
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1 &&
        caller_waiting_.load(std::memory_order_seq_cst)) {
      // Last one out wakes a sleeping caller; taking the mutex orders this with its predicate check.
      { std::lock_guard<std::mutex> lock(mutex_); }
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::run_job(const std::function<void(int, int)>& fn) {
  if (workers_.empty() || busy_.exchange(true, std::memory_order_acquire)) {
    // Single-threaded pool, or a nested / concurrent call: run every index here, in order.
    const int n = size();
    for (int i = 0; i < n; ++i) fn(i, n);
    return;
  }
  error_ = nullptr;
  job_ = &fn;
  pending_.store(int(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);  // publishes job_ and pending_
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    { std::lock_guard<std::mutex> lock(mutex_); }
    work_cv_.notify_all();
  }

  try {
    fn(0, size());
  } catch (...) {
    record_exception();
  }

  auto all_done = [&] { return pending_.load(std::memory_order_acquire) == 0; };
  if (!spin_until(all_done)) {
    caller_waiting_.store(true, std::memory_order_seq_cst);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_cv_.wait(lock, all_done);
    }
    caller_waiting_.store(false, std::memory_order_relaxed);
  }
  job_ = nullptr;
  std::exception_ptr error = error_;
  error_ = nullptr;
  busy_.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

void ThreadPool::run_on_all(const std::function<void(int, int)>& fn) { run_job(fn); }

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // Static partition: one contiguous chunk per thread, sizes differing by at most one item. Kernel
  // calls are short and uniform, so stealing would cost more than it balances.
  const int64_t chunks = std::min<int64_t>(size(), std::max<int64_t>(1, n / grain));
  if (chunks == 1) {
    fn(0, n);
    return;
  }
  run_job([&](int index, int) {
    if (index >= chunks) return;
    const int64_t base = n / chunks, extra = n % chunks;
    const int64_t begin = index * base + std::min<int64_t>(index, extra);
    const int64_t end = begin + base + (index < extra ? 1 : 0);
    fn(begin, end);
  });
}

}  // namespace glm::cpu
