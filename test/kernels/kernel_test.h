// Shared helpers of the kernel tests. The same test sources run on the CPU execution harness (g++,
// `npm run test:kernels`) and on a real GPU (nvcc build of scripts/gpu-check.sh): they only use the CUDA
// runtime calls the harness emulates, and the glm::cuda launchers.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../cpp/check.h"
#include "common.cuh"

namespace glm_test {

// Number of scheduling seeds each harness test runs with (GLM_HARNESS_SEEDS; 1 on the GPU, where the
// hardware picks the order).
int seed_count();
// Runs fn once per seed, setting the harness seed (no-op on the GPU).
void for_each_seed(const std::function<void(uint64_t)>& fn);

// A device buffer of T; allocated poisoned (0xFF bytes: NaN floats) and freed on scope exit.
template <class T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&p_), (n ? n : 1) * sizeof(T)) != cudaSuccess) p_ = nullptr;
    poison();
  }
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return p_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) { cudaMemcpy(p_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice); }
  // Fills with 0xFF bytes, so an element no kernel writes reads back as NaN (or -1).
  void poison() { if (p_) cudaMemset(p_, 0xFF, n_ * sizeof(T)); }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    cudaDeviceSynchronize();
    cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

inline std::vector<float> random_floats(std::mt19937& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
inline uint16_t to_bf16(float f) { return glm::dev::float_to_bf16(f); }
inline float from_bf16(uint16_t h) { return glm::dev::bf16_to_float(h); }

// Elementwise |got - ref| <= atol + rtol * |ref|; NaN never passes. Reports the first few misses.
bool expect_close(const char* what, const std::vector<float>& got, const std::vector<double>& ref, double atol,
                  double rtol);

// Normalised error ||got - ref|| / ||ref|| (reductions); NaN or an unwritten (NaN) element fails.
bool expect_rel_l2(const char* what, const std::vector<float>& got, const std::vector<double>& ref, double budget);

// Synchronises and reports a CUDA error left by a launch.
bool device_ok(const char* what);

}  // namespace glm_test
