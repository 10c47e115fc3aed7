#include "engine/serving_stats.h"

#include <algorithm>
#include <cmath>

namespace glm {

void LatencyWindow::add(double ms) {
  if (samples_.size() < capacity_) {
    samples_.push_back(ms);
  } else {
    samples_[next_] = ms;
    next_ = (next_ + 1) % capacity_;
  }
}

Percentiles LatencyWindow::percentiles() const {
  Percentiles p;
  p.count = samples_.size();
  if (samples_.empty()) return p;
  std::vector<double> sorted = samples_;
  std::sort(sorted.begin(), sorted.end());
  auto rank = [&](double q) {  // nearest rank: the smallest sample with at least q of them at or below it
    const size_t i = size_t(std::ceil(q * double(sorted.size())));
    return sorted[std::min(sorted.size() - 1, i == 0 ? 0 : i - 1)];
  };
  p.p50 = rank(0.50);
  p.p90 = rank(0.90);
  p.p99 = rank(0.99);
  return p;
}

void RateWindow::add(Clock::time_point t, uint64_t prompt, uint64_t generated) {
  if (!started_) first_ = t, started_ = true;
  entries_.push_back({t, prompt, generated});
}

std::pair<double, double> RateWindow::rates(Clock::time_point now) {
  const auto horizon = now - std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds_));
  while (!entries_.empty() && entries_.front().t < horizon) entries_.pop_front();
  if (entries_.empty()) return {0, 0};
  uint64_t prompt = 0, generated = 0;
  for (const auto& e : entries_) prompt += e.prompt, generated += e.generated;
  // Over the whole window, or the time since the first step of a model younger than that.
  const double span = std::max(1e-3, std::min(seconds_, std::chrono::duration<double>(now - first_).count()));
  return {double(prompt) / span, double(generated) / span};
}

}  // namespace glm
