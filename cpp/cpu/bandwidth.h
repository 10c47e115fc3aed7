// Measures this machine's memory read bandwidth with the same thread pool the CPU backend uses, so a
// benchmark can state the decode step's fraction of the bandwidth roofline in one run.
#pragma once
#include <cstdint>

#include "cpu/thread_pool.h"

namespace glm::cpu {

struct BandwidthResult {
  double bytes_per_second = 0;  // best pass
  int passes = 0;
  uint64_t buffer_bytes = 0;
};

// Reads a `bytes`-sized buffer (much larger than the caches) in parallel, repeatedly for at least
// `min_seconds`, and returns the best pass. bytes is rounded down to a multiple of 4 KiB.
BandwidthResult measure_read_bandwidth(ThreadPool& pool, uint64_t bytes, double min_seconds);

}  // namespace glm::cpu
