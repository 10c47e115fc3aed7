#include "cpu/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/kernels.h"

namespace glm::cpu {

BandwidthResult measure_read_bandwidth(ThreadPool& pool, uint64_t bytes, double min_seconds) {
  BandwidthResult r;
  const uint64_t n = (bytes / 4096) * 4096 / sizeof(float);
  if (n == 0) return r;
  std::unique_ptr<float[]> buf(new float[n]);
  // Touch every page first (first-touch faults are not bandwidth) with non-trivial data.
  pool.parallel_for(int64_t(n), 1 << 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[size_t(i)] = float(i & 1023);
  });
  // Each pass reads the whole buffer once through the vectorised dot kernel against a small cached
  // vector, so only the big buffer streams from memory.
  constexpr int64_t kBlock = 4096;
  std::vector<float> ones(kBlock, 1.0f);
  std::vector<double> sink(size_t(pool.size()) * 8, 0.0);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.parallel_for(int64_t(n / kBlock), 64, [&](int64_t b, int64_t e) {
      float acc = 0;
      for (int64_t blk = b; blk < e; ++blk) acc += dot(buf.get() + blk * kBlock, ones.data(), kBlock);
      sink[size_t(b % int64_t(sink.size()))] += acc;  // keeps the reads observable
    });
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    r.bytes_per_second = std::max(r.bytes_per_second, double(n * sizeof(float)) / s);
    ++r.passes;
    const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r.passes >= 5 && total >= min_seconds) break;
  }
  r.buffer_bytes = n * sizeof(float);
  volatile double keep = 0;
  for (double v : sink) keep = keep + v;
  return r;
}

}  // namespace glm::cpu
