// The engine-owned thread a model runs its work on (DESIGN.md rule 8: never libuv's pool). Jobs run
// one at a time in submission order, which is also how concurrent requests on one model are
// serialised today; the batch API lets one job serve several sessions.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace glm {

class Executor {
 public:
  Executor();
  // Stops accepting jobs, lets the queued ones finish and joins; when the last owner lets go from a
  // job on the executor thread itself, the thread is detached instead and exits after that job (its
  // queue state is shared with the thread, so nothing it touches is freed under it).
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // Queues a job; false once shutdown() has been called (the job is not run).
  bool post(std::function<void()> job);
  // Stops accepting jobs; the queued ones still run.
  void shutdown();
  bool on_executor_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::function<void()>> jobs;
    bool stopping = false;
  };
  static void loop(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace glm
