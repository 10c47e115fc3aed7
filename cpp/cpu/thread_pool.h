// A small fork-join thread pool for the CPU backend's kernels.
//
// A decode step makes hundreds of parallel calls of ~10–100 µs each, so dispatch latency matters more
// than generality: there is one job slot, the caller always takes part, and idle workers spin for a
// bounded number of pause iterations (a few tens of µs) before sleeping on a condition variable, so
// back-to-back calls are cheap while an idle model costs no CPU.
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

  // Partitions [0, n) into at most size() contiguous chunks of at least `grain` items (one chunk when
  // n < 2*grain), runs fn(begin, end) on them, the caller included, and returns when all are done.
  // Meant to be called by one thread at a time; a nested or concurrent call runs inline (serially) on
  // its own thread instead of deadlocking. An exception thrown by fn is caught where it happens; once
  // every chunk has finished, the first one is rethrown on the calling thread.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Runs fn(thread_index, n_threads) once on each of the size() threads (index 0 is the caller) and
  // returns when all have finished. Same nesting and exception rules as parallel_for.
  void run_on_all(const std::function<void(int, int)>& fn);

 private:
  void worker_main(int index);
  void run_job(const std::function<void(int, int)>& fn);  // the dispatch both entry points share
  void record_exception() noexcept;

  std::vector<std::thread> workers_;

  // Current job. Published by bumping generation_ (seq_cst); workers compare it with the last one seen.
  const std::function<void(int, int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};        // workers that have not finished the current job
  std::atomic<bool> busy_{false};      // a job is in flight (guards nested / concurrent calls)
  std::atomic<bool> stopping_{false};  // set before the destructor's generation bump

  // Sleeping side. sleepers_/caller_waiting_ let the fast path skip the mutex when nobody sleeps
  // (a Dekker-style handshake: the waker bumps the counter then reads the flag, the sleeper sets the
  // flag then re-reads the counter under the mutex; seq_cst guarantees one of them sees the other).
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> caller_waiting_{false};

  std::mutex error_mutex_;
  std::exception_ptr error_;
};

}  // namespace glm::cpu
