// A small fork-join thread pool for the CPU backend's kernels.
//
// A decode step makes hundreds of parallel calls of ~10–100 µs each, so dispatch latency matters more
// than generality: there is one job slot, the caller always takes part, and idle workers spin for a
// bounded time (pause instructions, ~200 µs) before sleeping on a condition variable, so back-to-back
// calls are cheap while an idle model costs no CPU.
//
// parallel_for hands out chunks dynamically and waits for chunks, not for workers: when the machine is
// oversubscribed (a Node process shares its cores) and a worker is descheduled, the other threads take
// its chunks and the call returns without waiting for that worker to be scheduled again.
//
// One pool per model (no globals): two models in one process each own their pool.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace glm::cpu {

class ThreadPool {
 public:
  // n_threads: total threads including the caller; 1 (or less) runs everything inline. If the OS
  // refuses to start a worker, the pool simply runs with the threads it got (see size()).
  explicit ThreadPool(int n_threads);
  ~ThreadPool();  // wakes and joins the workers
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Partitions [0, n) into contiguous chunks of at least `grain` items (a single chunk when
  // n < 2*grain; at most 4 per thread), runs fn(begin, end) on them from all threads, the caller
  // included, and returns when every chunk is done. Meant to be called by one thread at a time; a
  // nested or concurrent call runs fn(0, n) inline on its own thread instead of deadlocking. An
  // exception thrown by fn is caught where it happens; once every chunk has finished, the first one is
  // rethrown on the calling thread.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Runs fn(thread_index, n_threads) once on each of the size() threads (index 0 is the caller) and
  // returns when all have finished. Same nesting and exception rules as parallel_for.
  void run_on_all(const std::function<void(int, int)>& fn);

 private:
  // A job's kind travels in the low bit of the generation counter, so one load tells a waking worker
  // both that there is a new job and what kind it is.
  enum : uint64_t { kAllThreads = 0, kChunks = 1 };
  // Chunk claims: (job sequence << 32) | (chunk count << 16) | next chunk. A worker that wakes late,
  // after its job finished and another was posted, sees a different sequence and claims nothing.
  static constexpr uint64_t kChunkBits = 16;

  void worker_main(int index);
  uint64_t next_sequence() const;
  void post(uint64_t sequence, uint64_t kind);  // publishes job state written before it, wakes workers
  void wait_until(std::atomic<int64_t>& counter, int64_t target);
  bool run_chunks(uint64_t sequence);       // claims and runs chunks of that job; false if none left
  void record_exception() noexcept;
  void rethrow_pending();

  std::vector<std::thread> workers_;

  std::atomic<uint64_t> generation_{0};      // (sequence << 1) | kind
  std::atomic<bool> busy_{false};           // a job is in flight (guards nested / concurrent calls)
  std::atomic<bool> stopping_{false};       // set before the destructor's generation bump

  // kAllThreads job: every worker runs all_fn_ once and counts down all_pending_.
  const std::function<void(int, int)>* all_fn_ = nullptr;
  std::atomic<int64_t> all_pending_{0};

  // kChunks job: chunk i covers [begin_of(i), begin_of(i + 1)) of [0, range_n_).
  const std::function<void(int64_t, int64_t)>* range_fn_ = nullptr;
  int64_t range_n_ = 0, range_chunks_ = 0;
  std::atomic<uint64_t> claim_{0};
  std::atomic<int64_t> chunks_left_{0};

  // Sleeping side. sleepers_/caller_waiting_ let the fast path skip the mutex when nobody sleeps
  // (a Dekker-style handshake: the waker updates the counter then reads the flag, the sleeper sets the
  // flag then re-checks the counter under the mutex; seq_cst guarantees one of them sees the other).
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};

  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace glm::cpu
