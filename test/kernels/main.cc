// Runs the kernel tests: on the CPU execution harness (glm_kernel_tests) or on the GPU
// (glm_kernel_tests_gpu, built by scripts/gpu-check.sh). One line per test with its time; the plain
// "N passed, N failed" total last. An argument filters tests by substring; --json FILE writes results.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernel_test.h"

namespace glm_test {
std::vector<TestCase>& registry() { static std::vector<TestCase> r; return r; }
int& failures_in_current() { static int n = 0; return n; }

int seed_count() {
#if defined(GLM_TEST_ON_GPU)
  return 1;
#else
  // Three shuffled schedules per test by default: a missed barrier shows up in most schedules, and the
  // self-tests prove it (test_harness_selftest.cc); CI time stays small.
  const char* s = std::getenv("GLM_HARNESS_SEEDS");
  const int n = s ? std::atoi(s) : 3;
  return n > 0 ? n : 1;
#endif
}

void for_each_seed(const std::function<void(uint64_t)>& fn) {
  const int n = seed_count();
  const char* base_env = std::getenv("GLM_HARNESS_SEED");
  const uint64_t base = base_env ? std::strtoull(base_env, nullptr, 10) : 1;
  for (int i = 0; i < n; ++i) {
#if !defined(GLM_TEST_ON_GPU)
    glm::harness::set_seed(base + uint64_t(i));
#endif
    fn(base + uint64_t(i));
  }
}

bool expect_close(const char* what, const std::vector<float>& got, const std::vector<double>& ref, double atol, double rtol) {
  if (got.size() != ref.size()) {
    CHECK(false) << what << ": size " << got.size() << " vs " << ref.size();
    return false;
  }
  size_t bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (std::isnan(g) || !(std::fabs(g - r) <= atol + rtol * std::fabs(r))) {
      if (bad < 5) CHECK(false) << what << ": element " << i << " got " << g << " want " << r;
      ++bad;
    }
  }
  if (bad) CHECK(false) << what << ": " << bad << " of " << got.size() << " elements outside the budget";
  return bad == 0;
}

bool expect_rel_l2(const char* what, const std::vector<float>& got, const std::vector<double>& ref, double budget) {
  double num = 0, den = 0;
  size_t nan = 0;
  for (size_t i = 0; i < got.size() && i < ref.size(); ++i) {
    if (std::isnan(got[i])) ++nan;
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  const double err = std::sqrt(num / (den > 0 ? den : 1));
  CHECK(got.size() == ref.size() && nan == 0 && err <= budget)
      << what << ": rel L2 error " << err << " (budget " << budget << "), " << nan << " NaN/unwritten elements";
  return got.size() == ref.size() && nan == 0 && err <= budget;
}

bool device_ok(const char* what) {
  const cudaError_t e = cudaDeviceSynchronize();
  const cudaError_t l = cudaGetLastError();
  CHECK(e == cudaSuccess && l == cudaSuccess) << what << ": " << cudaGetErrorString(e != cudaSuccess ? e : l);
  return e == cudaSuccess && l == cudaSuccess;
}
}  // namespace glm_test

int main(int argc, char** argv) {
  const char* filter = nullptr;
  const char* json_path = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
    else filter = argv[i];
  }
#if defined(GLM_TEST_ON_GPU)
  const char* where = "gpu";
  int n_devices = 0;
  const cudaError_t dev_err = cudaGetDeviceCount(&n_devices);
  if (dev_err != cudaSuccess || n_devices == 0) {
    std::fprintf(stderr, "no usable CUDA device: %s\n", cudaGetErrorString(dev_err));
    return 2;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device: %s (sm_%d%d, %d SMs)\n", prop.name, prop.major, prop.minor, prop.multiProcessorCount);
#else
  const char* where = "harness";
#endif
  std::string json = "[";
  int passed = 0, failed = 0;
  const auto t_all = std::chrono::steady_clock::now();
  for (auto& t : glm_test::registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    glm_test::failures_in_current() = 0;
    const auto t0 = std::chrono::steady_clock::now();
    t.fn();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const bool ok = glm_test::failures_in_current() == 0;
    std::printf("%s %-48s %9.1f ms\n", ok ? "ok  " : "FAIL", t.name, ms);
    std::fflush(stdout);
    char row[256];
    std::snprintf(row, sizeof row, "%s{\"test\":\"%s\",\"ok\":%s,\"ms\":%.2f}", json.size() > 1 ? "," : "", t.name,
                  ok ? "true" : "false", ms);
    json += row;
    ok ? ++passed : ++failed;
  }
  json += "]";
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_all).count();
#if !defined(GLM_TEST_ON_GPU)
  const auto st = glm::harness::stats();
  std::printf("harness: %llu launches, %llu blocks, %llu threads, %llu fiber switches, %d seed(s) per test\n",
              (unsigned long long)st.launches, (unsigned long long)st.blocks, (unsigned long long)st.fibers,
              (unsigned long long)st.switches, glm_test::seed_count());
#endif
  std::printf("kernels (%s): %d passed, %d failed in %.1f s\n", where, passed, failed, total);
  if (json_path) {
    if (FILE* f = std::fopen(json_path, "w")) {
      std::fprintf(f, "%s\n", json.c_str());
      std::fclose(f);
    }
  }
  return failed == 0 ? 0 : 1;
}
