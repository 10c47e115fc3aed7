// Runs the kernel tests: on the CPU execution harness (glm_kernel_tests) or on the GPU
// (glm_kernel_tests_gpu, built by scripts/gpu-check.sh). One line per test with its time; the plain
// "N passed, N failed" total last. Arguments filter tests by substring (a test runs if it matches any);
// --json FILE writes results; --shard I/N runs every Nth test from the I-th; --claim DIR runs the tests
// this process claims first (mkdir DIR/<index>), so parallel processes share the tests as they free up;
// --kernels FILE (harness) writes which kernels each test launched, one "test kernel..." line per test.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sys/stat.h>

#include <cerrno>
#include <set>
#include <string>
#include <vector>

#include "kernel_test.h"

namespace glm_test {
std::vector<TestCase>& registry() { static std::vector<TestCase> r; return r; }
int& failures_in_current() { static int n = 0; return n; }

int seed_count() {
#if defined(GLM_TEST_ON_GPU)
  return 1;
#else
  // One shuffled schedule per test by default: the race detector reports a missing barrier whatever
  // the schedule (test_harness_race.cc), so more seeds only re-check order-dependent results (e.g. the
  // order of blocks), at the full cost of the suite each. GLM_HARNESS_SEEDS=3 for more.
  const char* s = std::getenv("GLM_HARNESS_SEEDS");
  const int n = s ? std::atoi(s) : 1;
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

#if !defined(GLM_TEST_ON_GPU)
namespace {
std::set<std::string>* g_launched = nullptr;
// The kernel's identifier from GLM_LAUNCH's text: "ns::name<T, 4>" -> "name".
void note_launch(const char* text) {
  if (!g_launched) return;
  std::string n(text);
  n = n.substr(0, n.find('<'));
  const size_t colon = n.rfind(':');
  if (colon != std::string::npos) n = n.substr(colon + 1);
  while (!n.empty() && n.back() == ' ') n.pop_back();
  g_launched->insert(n);
}
}  // namespace
#endif

int main(int argc, char** argv) {
  std::vector<const char*> filters;
  const char* json_path = nullptr;
  const char* kernels_path = nullptr;
  int shard = 0, shards = 1;
  const char* claim_dir = nullptr;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
    else if (!std::strcmp(argv[i], "--kernels") && i + 1 < argc) kernels_path = argv[++i];
    else if (!std::strcmp(argv[i], "--claim") && i + 1 < argc) claim_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--shard") && i + 1 < argc && std::sscanf(argv[i + 1], "%d/%d", &shard, &shards) == 2 &&
             shards > 0 && shard >= 0 && shard < shards) ++i;
    else filters.push_back(argv[i]);
  }
  std::string kernels_out;
#if !defined(GLM_TEST_ON_GPU)
  std::set<std::string> launched;
  if (kernels_path) {
    g_launched = &launched;
    glm::harness::set_launch_observer(note_launch);
  }
#endif
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
  int index = -1;
  for (auto& t : glm_test::registry()) {
    bool selected = filters.empty();
    for (const char* f : filters) selected = selected || std::strstr(t.name, f);
    if (!selected || ++index % shards != shard) continue;
    if (claim_dir) {  // mkdir is atomic: exactly one process gets each test
      const std::string mark = std::string(claim_dir) + "/" + std::to_string(index);
      if (mkdir(mark.c_str(), 0700) != 0) {
        if (errno == EEXIST) continue;
        std::fprintf(stderr, "--claim: cannot create %s\n", mark.c_str());
        return 2;
      }
    }
    glm_test::failures_in_current() = 0;
    const auto t0 = std::chrono::steady_clock::now();
    t.fn();
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const bool ok = glm_test::failures_in_current() == 0;
#if !defined(GLM_TEST_ON_GPU)
    if (kernels_path) {
      kernels_out += t.name;
      for (const std::string& k : launched) kernels_out += " " + k;
      kernels_out += "\n";
      launched.clear();
    }
#endif
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
  if (kernels_path) {
    if (FILE* f = std::fopen(kernels_path, "w")) {
      std::fputs(kernels_out.c_str(), f);
      std::fclose(f);
    }
  }
  if (json_path) {
    if (FILE* f = std::fopen(json_path, "w")) {
      std::fprintf(f, "%s\n", json.c_str());
      std::fclose(f);
    }
  }
  return failed == 0 ? 0 : 1;
}
