#include "engine/executor.h"

namespace glm {

Executor::Executor() : state_(std::make_shared<State>()), thread_(&Executor::loop, state_) {}

Executor::~Executor() {
  shutdown();
  if (!thread_.joinable()) return;
  if (on_executor_thread()) thread_.detach();
  else thread_.join();
}

bool Executor::post(std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->stopping) return false;
    state_->jobs.push_back(std::move(job));
  }
  state_->cv.notify_one();
  return true;
}

void Executor::shutdown() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stopping = true;
  }
  state_->cv.notify_one();
}

void Executor::loop(std::shared_ptr<State> s) {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(s->mu);
      s->cv.wait(lock, [&] { return s->stopping || !s->jobs.empty(); });
      if (s->jobs.empty()) return;  // stopping and drained
      job = std::move(s->jobs.front());
      s->jobs.pop_front();
    }
    job();
  }
}

}  // namespace glm
