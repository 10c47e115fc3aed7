// Self-tests of the CPU execution harness (harness-only: the broken kernels are undefined behaviour on
// a GPU). Each class of bug the issue names is planted in a small kernel next to its correct twin; the
// twin must pass (no false alarm) and the broken one must be caught — by the harness reporting an
// error, or by the comparison with the reference failing — under every scheduling seed tried. Missing
// barriers are reported by the race detector whatever the schedule (test_harness_race.cc has the
// full matrix of hazards).
#include <string>

#include "kernel_test.h"

using namespace glm_test;

namespace {

constexpr int kN = 128;

// Mismatched elements (NaN counts as mismatched), without recording a test failure.
int mismatches(const std::vector<float>& got, const std::vector<float>& want) {
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) bad += !(got[i] == want[i]);
  return bad;
}
bool message_has(const char* needle) { return std::string(cudaGetErrorString(cudaErrorLaunchFailure)).find(needle) != std::string::npos; }
// The launch failed with a message containing `needle`; clears the error for the next launch.
bool reported(cudaError_t e, const char* needle) {
  const bool ok = e == cudaErrorLaunchFailure && message_has(needle);
  cudaGetLastError();
  return ok;
}

// --- missing __syncthreads: each thread reads a value another thread wrote ------------------------
template <bool kBarrier>
GLM_KERNEL void neighbour_kernel(float* out, const float* in) {
  GLM_SHARED(float, s, kN);
  const int t = int(threadIdx.x);
  s[t] = in[t] * 2.0f;
  if (kBarrier) __syncthreads();
  out[t] = s[(t + 1) % kN];
}

// --- missing __syncthreads between a tile's last read and the next tile's write (WAR) -------------
template <bool kBarrier>
GLM_KERNEL void tiles_kernel(float* out, const float* in, int n_tiles) {
  GLM_SHARED(float, s, kN);
  const int t = int(threadIdx.x);
  float acc = 0.0f;
  for (int tile = 0; tile < n_tiles; ++tile) {
    s[t] = in[tile * kN + t];
    __syncthreads();
    acc += s[kN - 1 - t];
    if (kBarrier) __syncthreads();  // the next iteration overwrites s
  }
  out[t] = acc;
}

// The same with the tile arriving by cp.async: the copy may land while slow threads still read.
template <bool kBarrier>
GLM_KERNEL void async_tiles_kernel(float* out, const float* in, int n_tiles) {
  GLM_SHARED(float, s, kN);
  const int t = int(threadIdx.x);
  float acc = 0.0f;
  for (int tile = 0; tile < n_tiles; ++tile) {
    if (t < kN / 4) glm::dev::cp_async_16(s + 4 * t, in + tile * kN + 4 * t, 16);
    glm::dev::cp_async_commit();
    glm::dev::cp_async_wait<0>();
    __syncthreads();
    acc += s[kN - 1 - t];
    if (kBarrier) __syncthreads();
  }
  out[t] = acc;
}

// --- wrong shuffle lane: a warp sum whose result only lane 0 holds, read by every lane ------------
template <bool kCorrect>
GLM_KERNEL void warp_sum_kernel(float* out, const float* in) {
  const int t = int(threadIdx.x);
  float v = in[t];
  for (int offset = 16; offset > 0; offset >>= 1) {
    v += kCorrect ? __shfl_xor_sync(0xffffffffu, v, offset) : __shfl_down_sync(0xffffffffu, v, offset);
  }
  out[t] = v;
}

// --- shuffle that reads a lane outside its mask (half-warp mask, xor 16 crosses into the other half)
GLM_KERNEL void half_warp_kernel(float* out, const float* in, int xor_mask) {
  const int t = int(threadIdx.x);
  float v = in[t];
  if (t < 16) v += __shfl_xor_sync(0x0000ffffu, v, xor_mask);
  out[t] = v;
}

// --- out-of-bounds shared write: one element past a static array / the dynamic allocation ---------
template <bool kOverrun>
GLM_KERNEL void shared_overrun_kernel(float* out, const float* in) {
  GLM_SHARED(float, s, 32);
  const int t = int(threadIdx.x);
  if (t < 32 + (kOverrun ? 1 : 0)) s[t] = in[t];  // 33 writes into 32 slots
  __syncthreads();
  if (t < 32) out[t] = s[t];
}
GLM_KERNEL void dynamic_overrun_kernel(float* out, int n) {
  GLM_DYNAMIC_SHARED(float, s);
  const int t = int(threadIdx.x);
  if (t <= n) s[t] = 1.0f;  // <=: one past the end
  __syncthreads();
  if (t < n) out[t] = s[t];
}
GLM_KERNEL void global_overrun_kernel(float* out, int n) {
  const int t = int(threadIdx.x);
  if (t <= n) out[t] = 1.0f;
}

// --- unwritten output element: an off-by-one loop bound ------------------------------------------
template <bool kCorrect>
GLM_KERNEL void scale_kernel(float* out, const float* in, int n) {
  for (int i = int(threadIdx.x); i < n - (kCorrect ? 0 : 1); i += int(blockDim.x)) out[i] = in[i] * 3.0f;
}

// --- __syncthreads reached by only part of the block ---------------------------------------------
GLM_KERNEL void divergent_barrier_kernel(float* out) {
  const int t = int(threadIdx.x);
  if (t >= 40) return;
  __syncthreads();
  out[t] = 1.0f;
}

// --- reading cp.async data without waiting for the group -----------------------------------------
template <bool kWait>
GLM_KERNEL void cp_async_kernel(float* out, const float* in) {
  GLM_SHARED(float, s, kN);
  const int t = int(threadIdx.x);
  if (t < kN / 4) glm::dev::cp_async_16(s + 4 * t, in + 4 * t, 16);
  glm::dev::cp_async_commit();
  if (kWait) glm::dev::cp_async_wait<0>();
  __syncthreads();
  out[t] = s[(t + 37) % kN];
}

// --- blocks that assume an order: block b reads what block b-1 wrote in the same launch -----------
GLM_KERNEL void block_chain_kernel(float* data) {
  const int b = int(blockIdx.x);
  if (threadIdx.x == 0 && b > 0) data[b] = data[b - 1] + 1.0f;
}

std::vector<float> iota_floats(int n) {
  std::vector<float> v(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) v[size_t(i)] = float(i) + 0.5f;
  return v;
}

}  // namespace

TEST(harness_catches_missing_syncthreads) {
  const auto in = iota_floats(kN);
  std::vector<float> want(kN);
  for (int t = 0; t < kN; ++t) want[size_t(t)] = in[size_t((t + 1) % kN)] * 2.0f;
  DeviceBuffer<float> d_in(in), d_out(kN);
  for_each_seed([&](uint64_t seed) {
    d_out.poison();
    CHECK(GLM_LAUNCH(neighbour_kernel<true>, dim3(1), dim3(kN), 0, nullptr, d_out.get(), d_in.get()) == cudaSuccess);
    CHECK(mismatches(d_out.download(), want) == 0) << "correct twin, seed " << seed;
    d_out.poison();
    CHECK(reported(GLM_LAUNCH(neighbour_kernel<false>, dim3(1), dim3(kN), 0, nullptr, d_out.get(), d_in.get()), "data race"))
        << "missing barrier (read after write) not reported, seed " << seed << ": " << glm::harness::last_error_message();
  });

  const int tiles = 4;
  const auto tin = iota_floats(tiles * kN);
  std::vector<float> twant(kN, 0.0f);
  for (int t = 0; t < kN; ++t) {
    for (int i = 0; i < tiles; ++i) twant[size_t(t)] += tin[size_t(i * kN + kN - 1 - t)];
  }
  DeviceBuffer<float> d_tin(tin);
  for_each_seed([&](uint64_t seed) {
    d_out.poison();
    CHECK(GLM_LAUNCH(tiles_kernel<true>, dim3(1), dim3(kN), 0, nullptr, d_out.get(), d_tin.get(), tiles) == cudaSuccess);
    CHECK(mismatches(d_out.download(), twant) == 0) << "correct twin, seed " << seed;
    d_out.poison();
    CHECK(reported(GLM_LAUNCH(tiles_kernel<false>, dim3(1), dim3(kN), 0, nullptr, d_out.get(), d_tin.get(), tiles), "data race"))
        << "missing barrier (write after read) not reported, seed " << seed << ": " << glm::harness::last_error_message();
    d_out.poison();
    CHECK(GLM_LAUNCH(async_tiles_kernel<true>, dim3(1), dim3(kN), 0, nullptr, d_out.get(), d_tin.get(), tiles) == cudaSuccess);
    CHECK(mismatches(d_out.download(), twant) == 0) << "correct twin (cp.async), seed " << seed;
    d_out.poison();
    CHECK(reported(GLM_LAUNCH(async_tiles_kernel<false>, dim3(1), dim3(kN), 0, nullptr, d_out.get(), d_tin.get(), tiles), "data race"))
        << "cp.async overwriting a tile still being read not reported, seed " << seed << ": " << glm::harness::last_error_message();
  });
}

TEST(harness_catches_wrong_shuffle_lane) {
  const auto in = iota_floats(64);
  std::vector<float> want(64);
  for (int w = 0; w < 2; ++w) {
    float s = 0;
    for (int l = 0; l < 32; ++l) s += in[size_t(w * 32 + l)];
    for (int l = 0; l < 32; ++l) want[size_t(w * 32 + l)] = s;
  }
  DeviceBuffer<float> d_in(in), d_out(64);
  for_each_seed([&](uint64_t seed) {
    d_out.poison();
    CHECK(GLM_LAUNCH(warp_sum_kernel<true>, dim3(1), dim3(64), 0, nullptr, d_out.get(), d_in.get()) == cudaSuccess);
    CHECK(mismatches(d_out.download(), want) == 0) << "correct twin, seed " << seed;
    d_out.poison();
    CHECK(GLM_LAUNCH(warp_sum_kernel<false>, dim3(1), dim3(64), 0, nullptr, d_out.get(), d_in.get()) == cudaSuccess);
    CHECK(mismatches(d_out.download(), want) > 0) << "shfl_down result read on every lane not caught, seed " << seed;
    // Inside the half-warp mask (xor 8) is fine; xor 16 reads lanes the mask leaves out.
    CHECK(GLM_LAUNCH(half_warp_kernel, dim3(1), dim3(32), 0, nullptr, d_out.get(), d_in.get(), 8) == cudaSuccess);
    CHECK(GLM_LAUNCH(half_warp_kernel, dim3(1), dim3(32), 0, nullptr, d_out.get(), d_in.get(), 16) == cudaErrorLaunchFailure)
        << "shuffle from a lane outside the mask not reported";
    CHECK(message_has("not in the mask")) << cudaGetErrorString(cudaErrorLaunchFailure);
    cudaGetLastError();
  });
}

TEST(harness_catches_out_of_bounds_shared_and_global_writes) {
  const auto in = iota_floats(64);
  DeviceBuffer<float> d_in(in), d_out(64);
  CHECK(GLM_LAUNCH(shared_overrun_kernel<false>, dim3(2), dim3(64), 0, nullptr, d_out.get(), d_in.get()) == cudaSuccess);
  CHECK(GLM_LAUNCH(shared_overrun_kernel<true>, dim3(2), dim3(64), 0, nullptr, d_out.get(), d_in.get()) == cudaErrorLaunchFailure)
      << "static shared overrun not reported";
  CHECK(message_has("out-of-bounds shared memory write after static shared 's'")) << cudaGetErrorString(cudaErrorLaunchFailure);
  cudaGetLastError();
  CHECK(GLM_LAUNCH(dynamic_overrun_kernel, dim3(1), dim3(64), 40 * sizeof(float), nullptr, d_out.get(), 40) == cudaErrorLaunchFailure)
      << "dynamic shared overrun not reported";
  CHECK(message_has("dynamic shared memory")) << cudaGetErrorString(cudaErrorLaunchFailure);
  cudaGetLastError();
  {
    DeviceBuffer<float> small(10);
    CHECK(GLM_LAUNCH(global_overrun_kernel, dim3(1), dim3(32), 0, nullptr, small.get(), 10) == cudaErrorLaunchFailure)
        << "global overrun not reported";
    CHECK(message_has("after a device allocation of 40 bytes")) << cudaGetErrorString(cudaErrorLaunchFailure);
    cudaGetLastError();
    small.poison();
  }
  // A launch asking for more dynamic shared memory than the block limit fails like on the GPU.
  CHECK(GLM_LAUNCH(dynamic_overrun_kernel, dim3(1), dim3(64), 64 * 1024, nullptr, d_out.get(), 8) == cudaErrorInvalidConfiguration);
  cudaGetLastError();
}

TEST(harness_catches_unwritten_output_element) {
  for (int n : {1, 33, 300}) {
    const auto in = iota_floats(n);
    std::vector<float> want(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) want[size_t(i)] = in[size_t(i)] * 3.0f;
    DeviceBuffer<float> d_in(in), d_out(static_cast<size_t>(n));
    d_out.poison();
    CHECK(GLM_LAUNCH(scale_kernel<true>, dim3(1), dim3(64), 0, nullptr, d_out.get(), d_in.get(), n) == cudaSuccess);
    CHECK(mismatches(d_out.download(), want) == 0);
    d_out.poison();
    CHECK(GLM_LAUNCH(scale_kernel<false>, dim3(1), dim3(64), 0, nullptr, d_out.get(), d_in.get(), n) == cudaSuccess);
    const auto got = d_out.download();
    CHECK(mismatches(got, want) == 1 && std::isnan(got.back())) << "the unwritten last element must read back as poison (NaN), n " << n;
  }
}

TEST(harness_catches_divergent_barrier_cp_async_without_wait_and_block_order) {
  DeviceBuffer<float> d_out(64);
  CHECK(GLM_LAUNCH(divergent_barrier_kernel, dim3(1), dim3(64), 0, nullptr, d_out.get()) == cudaErrorLaunchFailure)
      << "__syncthreads skipped by exited threads not reported";
  CHECK(message_has("exited while the others wait at __syncthreads")) << cudaGetErrorString(cudaErrorLaunchFailure);
  cudaGetLastError();

  const auto in = iota_floats(kN);
  std::vector<float> want(kN);
  for (int t = 0; t < kN; ++t) want[size_t(t)] = in[size_t((t + 37) % kN)];
  DeviceBuffer<float> d_in(in), d_o(kN);
  for_each_seed([&](uint64_t seed) {
    d_o.poison();
    CHECK(GLM_LAUNCH(cp_async_kernel<true>, dim3(1), dim3(kN), 0, nullptr, d_o.get(), d_in.get()) == cudaSuccess);
    CHECK(mismatches(d_o.download(), want) == 0) << "correct twin, seed " << seed;
    d_o.poison();
    CHECK(reported(GLM_LAUNCH(cp_async_kernel<false>, dim3(1), dim3(kN), 0, nullptr, d_o.get(), d_in.get()), "still in flight"))
        << "cp.async data read before cp.async.wait_group not reported, seed " << seed << ": " << glm::harness::last_error_message();
  });

  // 16 blocks that each read their predecessor's output: right only if blocks ran in index order.
  std::vector<float> chain(16, 0.0f), want_chain(16);
  for (int i = 0; i < 16; ++i) want_chain[size_t(i)] = float(i);
  DeviceBuffer<float> d_chain(chain);
  CHECK(GLM_LAUNCH(block_chain_kernel, dim3(16), dim3(32), 0, nullptr, d_chain.get()) == cudaSuccess);
  CHECK(mismatches(d_chain.download(), want_chain) > 0) << "a dependency between blocks of one launch not exposed";
}
