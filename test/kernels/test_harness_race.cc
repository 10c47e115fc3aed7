// Self-tests of the harness's race detector (cuda/harness/racecheck.h; harness-only: the racy kernels
// are undefined behaviour on a GPU). Every hazard kind (read after write, write after read, write after
// write) between two threads of different warps and between two lanes of one warp, on shared and on
// device memory, must be reported under every seed, naming the kernel, the memory and both source
// lines; the same pair separated by the synchronisation the GPU requires must not be.
#include <string>

#include "kernel_test.h"

using namespace glm_test;

namespace {

enum Hazard : int { kRaw = 0, kWar = 1, kWaw = 2 };
enum Sync : int { kNone = 0, kSyncthreads = 1, kSyncwarp = 2, kShuffle = 3 };

// Thread `a` does the first access of the hazard and thread `b` the second, to byte 0 of shared
// memory (global = 0) or of `g` (global = 1); `sync` is what separates them. Reads land in out[t].
GLM_KERNEL void hazard_kernel(float* g, float* out, int hazard, int a, int b, int sync, int global) {
  GLM_SHARED(float, s, 64);
  const int t = int(threadIdx.x);
  float* x = global ? g : s;
  float v = 0.0f;
  if (t == a) {
    if (hazard == kWar) v = x[0];  // first access
    else x[0] = 1.0f;              // first access
  }
  if (sync == kSyncthreads) __syncthreads();
  if (sync == kSyncwarp && t / 32 == a / 32) __syncwarp();
  if (sync == kShuffle && t / 32 == a / 32) v += __shfl_xor_sync(0xffffffffu, v, 1);
  if (t == b) {
    if (hazard == kRaw) v += x[0];  // second access
    else x[0] = 2.0f;               // second access
  }
  out[t] = v;
}

// Atomics on one shared counter from every thread do not race with each other; a plain read of the
// counter by another thread before a barrier does.
GLM_KERNEL void atomic_counter_kernel(int* out, int read_early) {
  GLM_SHARED(int, counter, 1);
  const int t = int(threadIdx.x);
  if (t == 0) counter[0] = 0;
  __syncthreads();
  atomicAdd(&counter[0], 1);
  if (read_early && t == 70) out[0] = counter[0];  // racy: other threads may still be adding
  __syncthreads();
  if (t == 0) out[1] = counter[0];
}

// Shared memory reused across phases: a buffer written, read by others after a barrier, then written
// again by other threads after a second barrier (correct), or without it (write after read).
GLM_KERNEL void reuse_kernel(float* out, int second_barrier) {
  GLM_SHARED(float, s, 128);
  const int t = int(threadIdx.x);
  s[t] = float(t);
  __syncthreads();
  const float v = s[127 - t];
  if (second_barrier) __syncthreads();
  s[(t + 1) % 128] = v;
  __syncthreads();
  out[t] = s[t];
}

// ldmatrix reads each row on behalf of the lane that addresses it: row 2, rewritten by a thread of
// warp 1 without a barrier, races with lane 2 of warp 0 whichever lane completes the collective.
GLM_KERNEL void ldmatrix_race_kernel(uint32_t* out, int barrier) {
  GLM_SHARED(uint16_t, s, 64);
  const int t = int(threadIdx.x);
  s[t] = uint16_t(t);
  __syncthreads();
  if (t == 33) {
    for (int c = 0; c < 8; ++c) s[2 * 8 + c] = 7;
  }
  if (barrier) __syncthreads();
  if (t < 32) {
    uint32_t r[1];
    glm::dev::ldmatrix<1, false>(r, s + (t % 8) * 8);
    out[t] = r[0];
  }
}

bool message_has(const std::string& m, const std::string& needle) { return m.find(needle) != std::string::npos; }
int count_of(const std::string& m, const std::string& needle) {
  int n = 0;
  for (size_t at = m.find(needle); at != std::string::npos; at = m.find(needle, at + 1)) ++n;
  return n;
}

// Runs one launch under seeds 1..5 and returns its messages ("" when it succeeded).
std::vector<std::string> under_seeds(const std::function<cudaError_t()>& launch) {
  const uint64_t saved = glm::harness::seed();
  std::vector<std::string> out;
  for (uint64_t s = 1; s <= 5; ++s) {
    glm::harness::set_seed(s);
    const cudaError_t e = launch();
    out.push_back(e == cudaSuccess ? "" : glm::harness::last_error_message());
    cudaGetLastError();
  }
  glm::harness::set_seed(saved);
  return out;
}

const char* hazard_name(int h) { return h == kRaw ? "RAW" : h == kWar ? "WAR" : "WAW"; }

}  // namespace

TEST(harness_race_detector_reports_every_hazard_under_every_seed) {
  DeviceBuffer<float> g(64), out(128);
  // (a, b) pairs: across warps (lane 3 of warp 0, lane 9 of warp 2), inside a warp (lanes 3 and 9).
  const int pairs[2][2] = {{3, 73}, {3, 9}};
  for (int global = 0; global < 2; ++global) {
    for (int p = 0; p < 2; ++p) {
      for (int h = kRaw; h <= kWaw; ++h) {
        const std::string what = std::string(hazard_name(h)) + (p == 0 ? " across warps" : " inside a warp") +
                                  (global ? " on device memory" : " on shared memory");
        const auto racy = under_seeds([&] {
          return GLM_LAUNCH(hazard_kernel, dim3(2), dim3(96), 0, nullptr, g.get(), out.get(), h, pairs[p][0], pairs[p][1],
                            int(kNone), global);
        });
        for (const std::string& m : racy) {
          CHECK(message_has(m, "data race") && message_has(m, "kernel 'hazard_kernel'")) << what << " not reported: '" << m << "'";
          // Both threads and both source lines ("first access" / "second access" lines above).
          CHECK(count_of(m, "test_harness_race.cc:") == 2 && count_of(m, "[warp ") == 2) << what << ": " << m;
          CHECK(message_has(m, global ? "device memory, byte 0" : "shared 's', byte 0")) << what << ": " << m;
        }
        if (global == 0 && p == 1 && h == kRaw) std::printf("  e.g. %s\n", racy[0].c_str());
        // Separated as the GPU requires: a barrier always; for lanes of one warp, __syncwarp or a shuffle.
        std::vector<int> fences = {kSyncthreads};
        if (p == 1) fences.insert(fences.end(), {kSyncwarp, kShuffle});
        for (int sync : fences) {
          const auto clean = under_seeds([&] {
            return GLM_LAUNCH(hazard_kernel, dim3(2), dim3(96), 0, nullptr, g.get(), out.get(), h, pairs[p][0], pairs[p][1],
                              sync, global);
          });
          for (const std::string& m : clean) CHECK(m.empty()) << what << " with sync " << sync << " falsely reported: " << m;
        }
        // __syncwarp in the wrong warp orders nothing between two warps.
        if (p == 0) {
          const auto wrong = under_seeds([&] {
            return GLM_LAUNCH(hazard_kernel, dim3(2), dim3(96), 0, nullptr, g.get(), out.get(), h, pairs[p][0], pairs[p][1],
                              int(kSyncwarp), global);
          });
          for (const std::string& m : wrong) CHECK(message_has(m, "data race")) << what << " with only __syncwarp not reported";
        }
      }
    }
  }
}

TEST(harness_race_detector_atomics_and_reused_shared_memory) {
  DeviceBuffer<int> counts(2);
  for (const std::string& m : under_seeds([&] { return GLM_LAUNCH(atomic_counter_kernel, dim3(1), dim3(96), 0, nullptr, counts.get(), 0); })) {
    CHECK(m.empty()) << "atomics on one counter falsely reported: " << m;
  }
  CHECK(counts.download()[1] == 96);
  for (const std::string& m : under_seeds([&] { return GLM_LAUNCH(atomic_counter_kernel, dim3(1), dim3(96), 0, nullptr, counts.get(), 1); })) {
    CHECK(message_has(m, "data race") && message_has(m, "shared 'counter'")) << "plain read racing atomics not reported: " << m;
  }
  DeviceBuffer<float> out(128);
  for (const std::string& m : under_seeds([&] { return GLM_LAUNCH(reuse_kernel, dim3(1), dim3(128), 0, nullptr, out.get(), 1); })) {
    CHECK(m.empty()) << "shared memory reused after a barrier falsely reported: " << m;
  }
  for (const std::string& m : under_seeds([&] { return GLM_LAUNCH(reuse_kernel, dim3(1), dim3(128), 0, nullptr, out.get(), 0); })) {
    CHECK(message_has(m, "data race") && message_has(m, "shared 's'")) << "shared memory reused without a barrier not reported: " << m;
  }
}

TEST(harness_race_detector_attributes_ldmatrix_rows_to_their_lanes) {
  DeviceBuffer<uint32_t> out(32);
  for (const std::string& m : under_seeds([&] { return GLM_LAUNCH(ldmatrix_race_kernel, dim3(1), dim3(64), 0, nullptr, out.get(), 1); })) {
    CHECK(m.empty()) << "ldmatrix after a barrier falsely reported: " << m;
  }
  for (const std::string& m : under_seeds([&] { return GLM_LAUNCH(ldmatrix_race_kernel, dim3(1), dim3(64), 0, nullptr, out.get(), 0); })) {
    CHECK(message_has(m, "data race") && message_has(m, "[warp 0 lane 2]") && message_has(m, "[warp 1 lane 1]"))
        << "ldmatrix row read racing a write not reported against its lane: " << m;
  }
}
