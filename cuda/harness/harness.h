// The CPU execution harness: runs the project's CUDA kernels, compiled as ordinary C++ by g++, on the
// CPU with the CUDA execution model emulated closely enough that the bugs a GPU would expose show up
// here too (issue 4). Included only through cuda/common.cuh when the compiler is not nvcc.
//
// Model (what a kernel sees):
//   - a launch runs every block of the grid, one block at a time, in an order shuffled from the seed;
//   - every thread of a block is a cooperative fiber with its own stack; a fiber runs until it blocks
//     (__syncthreads, a warp collective) or exits, and the runnable fibers are resumed in an order
//     shuffled from the seed, so code that relies on an ordering nothing enforces reads stale data;
//   - __syncthreads is a real barrier over every thread of the block (a thread that exits while others
//     wait, or threads at different __syncthreads call sites, are reported as errors);
//   - warp collectives (__shfl*_sync, __ballot_sync, __any/__all_sync, __reduce*_sync, __syncwarp, and
//     the mma/ldmatrix wrappers) complete only when every lane named in the mask has arrived at the same
//     collective; a lane outside the mask, a missing lane or a mismatched collective is an error;
//   - static (GLM_SHARED) and dynamic (GLM_DYNAMIC_SHARED) shared memory is per block, filled with
//     0xFF (NaN for floats) before the block starts and surrounded by red zones checked after the block;
//   - device allocations (cudaMalloc) are poisoned with 0xFF and surrounded by red zones checked after
//     every launch; a cp.async destination reads as poison from the issue until the issuing thread
//     waits for its group, when the data lands (so both early and late readers see garbage).
//   - every shared-memory access, and every access to device memory the launch can write, is checked by
//     a race detector (racecheck.h) whose verdict does not depend on the schedule.
// Errors are values: the launch returns cudaErrorLaunchFailure and cudaGetErrorString() describes the
// first problem (kernel, block, thread, what).
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>
#include <vector>

// ---------------------------------------------------------------------------------------------
// The slice of the CUDA runtime API our launchers and tests use.
// ---------------------------------------------------------------------------------------------
struct uint3 { unsigned x, y, z; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(8) float2 { float x, y; };
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalState = 401,
  cudaErrorLaunchFailure = 719,
  // Stream capture (the runtime's values): a capture-breaking call fails with Unsupported/Implicit and
  // invalidates the capture; later work on the stream and cudaStreamEndCapture report Invalidated.
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
};
enum cudaMemcpyKind { cudaMemcpyHostToHost = 0, cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2,
                      cudaMemcpyDeviceToDevice = 3, cudaMemcpyDefault = 4 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
enum cudaDeviceAttr { cudaDevAttrComputeCapabilityMajor = 75, cudaDevAttrComputeCapabilityMinor = 76 };
using cudaStream_t = struct GlmHarnessStream*;
using cudaGraph_t = struct GlmHarnessGraph*;
using cudaGraphExec_t = struct GlmHarnessGraphExec*;
enum cudaStreamCaptureMode { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1,
                             cudaStreamCaptureModeRelaxed = 2 };
enum cudaStreamCaptureStatus { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1,
                               cudaStreamCaptureStatusInvalidated = 2 };
#define cudaHostAllocDefault 0x00

cudaError_t cudaMalloc(void** ptr, size_t bytes);
template <class T> cudaError_t cudaMalloc(T** ptr, size_t bytes) { return cudaMalloc(reinterpret_cast<void**>(ptr), bytes); }
cudaError_t cudaFree(void* ptr);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemset(void* dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaGetLastError();
// Device queries and streams, as host code (cpp/cuda_backend) uses them. The harness is one device of
// compute capability 8.0 (the portable kernels' target) whose memory is capped (set_device_memory), so
// a host-side memory plan and its InsufficientMemory path can be tested; streams are handles only
// (everything already runs in issue order).
cudaError_t cudaGetDeviceCount(int* count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaStreamCreate(cudaStream_t* stream);
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaPeekAtLastError();
// Pinned host memory (plain host memory here, remembered so a captured copy can check its host side is
// pinned: the runtime cannot capture a copy to or from pageable memory).
cudaError_t cudaMallocHost(void** ptr, size_t bytes);
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void* ptr);
// Stream capture and graphs (CUDA 12/13 signatures), the subset the backend uses. While a stream
// captures, kernel launches (GLM_LAUNCH) and cudaMemcpyAsync/cudaMemsetAsync on it are recorded with
// their arguments by value instead of run; cudaGraphLaunch runs the recorded work in order. As in the
// runtime's global and thread-local capture modes (the same here: the harness runs on one thread), a
// synchronous call while any stream captures (cudaMalloc, cudaFree,
// cudaMallocHost, cudaFreeHost, cudaMemcpy, cudaMemset, cudaStreamSynchronize, cudaDeviceSynchronize,
// cudaGraphLaunch into the capture) fails and invalidates the capture, so misuse shows up here.
cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t glm_harness_func_set_attribute(const void* fn, cudaFuncAttribute attr, int value);
template <class F> cudaError_t cudaFuncSetAttribute(F* fn, cudaFuncAttribute attr, int value) {
  return glm_harness_func_set_attribute(reinterpret_cast<const void*>(fn), attr, value);
}

namespace glm::harness {

// Per-thread (per-fiber) view of the launch.
struct ThreadView {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
};
const ThreadView& view();

// Emulated device memory: cudaMalloc fails (cudaErrorMemoryAllocation) past `total` bytes in use
// (default 1 GiB); cudaMemGetInfo reports total - in use.
void set_device_memory(size_t total);
size_t device_bytes_in_use();
// Fault injection: the next kernel launch fails (cudaErrorLaunchFailure, `why` as its message) without
// running, as a device fault would; for tests of the callers' sticky-error handling.
void fail_next_launch(const char* why);

// Seed of the scheduling shuffles; each launch derives its own stream from it and a launch counter.
void set_seed(uint64_t seed);
uint64_t seed();
// The description of the last harness error (also returned by cudaGetErrorString).
const char* last_error_message();
// Called with the kernel's name (as written in GLM_LAUNCH) at every launch that runs; for tools that
// map tests to kernels (scripts/test-mutants.mjs via glm_kernel_tests --kernels).
void set_launch_observer(void (*observer)(const char* kernel));
// Counters for the self-tests and the timing summary.
struct Stats { uint64_t launches = 0, blocks = 0, fibers = 0, switches = 0; };
Stats stats();

// Runs (or, on a capturing stream, records) a launch. A launch also reports an error left pending by
// an earlier failed call that nobody cleared, as `kernel<<<>>>(); cudaGetLastError()` does.
// `pointers` are the kernel's pointer arguments: a captured launch checks at each replay that they
// still point into live device (or pinned) memory — a graph replayed after a cudaFree of a buffer it
// captured is a use after free on the device, caught here.
// `writable` are the pointer arguments to non-const data: the allocations the race detector tracks
// reads of from the launch's start.
cudaError_t launch(const void* fn, const char* name, dim3 grid, dim3 block, size_t dynamic_smem, cudaStream_t stream,
                   std::function<void()> body, std::vector<const void*> pointers = {}, std::vector<const void*> writable = {});
// Work recorded by captures so far (self-tests).
uint64_t captured_nodes();

template <class T> void pointer_arg(std::vector<const void*>& out, std::vector<const void*>& writable, const T& v) {
  if constexpr (std::is_pointer<T>::value) {
    out.push_back(static_cast<const void*>(v));
    if constexpr (!std::is_const<std::remove_pointer_t<T>>::value) writable.push_back(static_cast<const void*>(v));
  }
}

// GLM_LAUNCH's harness side: the arguments are evaluated and converted to the kernel's parameter types
// once, at the launch (as a <<<>>> launch does), and every thread of the grid receives those values. The
// body owns a copy of them, so a captured launch replays with the values of its capture.
template <class... P, class... A>
cudaError_t launch_kernel(void (*fn)(P...), const char* name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                          A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel argument count");
  std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
  std::vector<const void*> pointers, writable;
  std::apply([&](const auto&... p) { (pointer_arg(pointers, writable, p), ...); }, params);
  return launch(reinterpret_cast<const void*>(fn), name, grid, block, smem, stream,
                [fn, params = std::move(params)]() { std::apply(fn, params); }, std::move(pointers), std::move(writable));
}

// Kernel-side primitives.
void syncthreads(int line);
void* static_shared(size_t bytes, size_t align, const char* name);
void* dynamic_shared();
// Reports a problem in the running kernel (for wrappers that validate their operands): the launch fails.
void kernel_error(const char* what);

// A warp collective: every lane in `mask` deposits a Slot and leaves with its `out` filled.
enum class Collective : int { Sync, Shfl, ShflUp, ShflDown, ShflXor, Ballot, Any, All, ReduceAdd, ReduceMin,
                              ReduceMax, ReduceAnd, ReduceOr, ReduceXor, Mma16816Bf16, Mma16832E4m3, LdMatrix };
struct Slot {
  Collective op;
  unsigned mask;
  int line;
  uint64_t value;          // shuffles / votes / reductions (reductions: 32-bit operand, `is_signed`)
  int arg, width;          // source lane / delta / xor mask; segment width
  bool is_signed;
  uint32_t frag[16];       // mma: a[0..3], b[4..5], c[6..9] (float bits); ldmatrix: unused on input
  const void* address;     // ldmatrix: this lane's row address
  int count;               // ldmatrix: matrices (1, 2, 4)
  bool trans;              // ldmatrix: .trans
  uint64_t out;            // result of shuffles / votes / reductions
  uint32_t out_frag[4];    // mma d[0..3] (float bits) / ldmatrix r[0..count)
};
void warp_collective(Slot& slot);

// cp.async: a copy of `bytes` (4, 8 or 16) from global to shared memory; only `src_bytes` are read and
// the rest is zero-filled (PTX src-size). The copy lands when the thread waits for its group.
void cp_async(void* dst_shared, const void* src_global, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int pending_groups_allowed);

template <class T> inline uint64_t to_bits(T v) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 32- or 64-bit values");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T> inline T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
template <class T> inline T shuffle(Collective op, unsigned mask, T v, int arg, int width, int line) {
  Slot s{};
  s.op = op; s.mask = mask; s.line = line; s.value = to_bits(v); s.arg = arg; s.width = width;
  warp_collective(s);
  return from_bits<T>(s.out);
}
inline uint64_t vote(Collective op, unsigned mask, uint64_t v, bool is_signed, int line) {
  Slot s{};
  s.op = op; s.mask = mask; s.line = line; s.value = v; s.is_signed = is_signed;
  warp_collective(s);
  return s.out;
}

}  // namespace glm::harness

// ---------------------------------------------------------------------------------------------
// Kernel-side CUDA names.
// ---------------------------------------------------------------------------------------------
#define threadIdx (::glm::harness::view().thread_idx)
#define blockIdx (::glm::harness::view().block_idx)
#define blockDim (::glm::harness::view().block_dim)
#define gridDim (::glm::harness::view().grid_dim)
constexpr int warpSize = 32;

#define __syncthreads() ::glm::harness::syncthreads(__LINE__)
#define __syncwarp(...) ::glm::harness::vote(::glm::harness::Collective::Sync, glm_harness_mask_or_full(__VA_ARGS__), 0, false, __LINE__)
inline unsigned glm_harness_mask_or_full(unsigned m = 0xffffffffu) { return m; }
#define __threadfence() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define __threadfence_block() __atomic_thread_fence(__ATOMIC_SEQ_CST)

#define __shfl_sync(mask, v, src, ...) ::glm::harness::shuffle(::glm::harness::Collective::Shfl, mask, v, src, glm_harness_width(__VA_ARGS__), __LINE__)
#define __shfl_up_sync(mask, v, d, ...) ::glm::harness::shuffle(::glm::harness::Collective::ShflUp, mask, v, d, glm_harness_width(__VA_ARGS__), __LINE__)
#define __shfl_down_sync(mask, v, d, ...) ::glm::harness::shuffle(::glm::harness::Collective::ShflDown, mask, v, d, glm_harness_width(__VA_ARGS__), __LINE__)
#define __shfl_xor_sync(mask, v, m, ...) ::glm::harness::shuffle(::glm::harness::Collective::ShflXor, mask, v, m, glm_harness_width(__VA_ARGS__), __LINE__)
inline int glm_harness_width(int w = 32) { return w; }
#define __ballot_sync(mask, p) unsigned(::glm::harness::vote(::glm::harness::Collective::Ballot, mask, (p) ? 1 : 0, false, __LINE__))
#define __any_sync(mask, p) int(::glm::harness::vote(::glm::harness::Collective::Any, mask, (p) ? 1 : 0, false, __LINE__))
#define __all_sync(mask, p) int(::glm::harness::vote(::glm::harness::Collective::All, mask, (p) ? 1 : 0, false, __LINE__))
#define GLM_HARNESS_REDUCE(op, mask, v) \
  glm_harness_reduce_result(v, ::glm::harness::vote(op, mask, uint64_t(uint32_t(v)), std::is_signed<decltype(v)>::value, __LINE__))
template <class T> inline T glm_harness_reduce_result(T, uint64_t r) { return T(uint32_t(r)); }
#define __reduce_add_sync(mask, v) GLM_HARNESS_REDUCE(::glm::harness::Collective::ReduceAdd, mask, v)
#define __reduce_min_sync(mask, v) GLM_HARNESS_REDUCE(::glm::harness::Collective::ReduceMin, mask, v)
#define __reduce_max_sync(mask, v) GLM_HARNESS_REDUCE(::glm::harness::Collective::ReduceMax, mask, v)
#define __reduce_and_sync(mask, v) GLM_HARNESS_REDUCE(::glm::harness::Collective::ReduceAnd, mask, v)
#define __reduce_or_sync(mask, v) GLM_HARNESS_REDUCE(::glm::harness::Collective::ReduceOr, mask, v)
#define __reduce_xor_sync(mask, v) GLM_HARNESS_REDUCE(::glm::harness::Collective::ReduceXor, mask, v)

// Atomics: real host atomics, so they stay correct if blocks ever run on several OS threads. Each tells
// the race detector itself (an atomic never races with an atomic) instead of relying on the compiler's
// instrumentation: these templates are shared by instrumented and plain translation units, and the
// linker keeps one copy. Not inlined, so the caller's address names the kernel line in a report.
namespace glm::harness {
void atomic_access(const void* p, size_t bytes, const void* pc);
}
#define GLM_HARNESS_ATOMIC __attribute__((noinline, no_sanitize("thread")))
#define GLM_HARNESS_ATOMIC_RECORD(p) ::glm::harness::atomic_access(p, sizeof(*(p)), __builtin_return_address(0))
template <class T> GLM_HARNESS_ATOMIC T atomicAdd(T* p, T v) {
  GLM_HARNESS_ATOMIC_RECORD(p);
  if constexpr (std::is_integral<T>::value) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
  } else {
    T old, desired;
    __atomic_load(p, &old, __ATOMIC_SEQ_CST);
    do {
      desired = old + v;
    } while (!__atomic_compare_exchange(p, &old, &desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return old;
  }
}
template <class T> GLM_HARNESS_ATOMIC T atomicMax(T* p, T v) {
  GLM_HARNESS_ATOMIC_RECORD(p);
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
template <class T> GLM_HARNESS_ATOMIC T atomicMin(T* p, T v) {
  GLM_HARNESS_ATOMIC_RECORD(p);
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (v < old && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
  return old;
}
template <class T> GLM_HARNESS_ATOMIC T atomicExch(T* p, T v) {
  GLM_HARNESS_ATOMIC_RECORD(p);
  return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST);
}
template <class T> GLM_HARNESS_ATOMIC T atomicCAS(T* p, T expected, T desired) {
  GLM_HARNESS_ATOMIC_RECORD(p);
  __atomic_compare_exchange_n(p, &expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return expected;
}

// Device math that g++ lacks. The fast-math intrinsics get the accurate host functions: tests budget
// for the device's approximation error, the harness does not model it.
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline unsigned __float_as_uint(float f) { unsigned u; std::memcpy(&u, &f, 4); return u; }
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
using std::rintf;
template <class T> inline T __ldg(const T* p) { return *p; }
// Integer/float min and max as CUDA's device math provides them.
template <class T> inline T min(T a, T b) { return b < a ? b : a; }
template <class T> inline T max(T a, T b) { return a < b ? b : a; }
