// Schedule-independent race detection for the CPU execution harness (issue 15), in the spirit of
// compute-sanitizer's racecheck. Internal to the harness: harness.cc drives it, kernels never see it.
//
// Why not rely on the shuffled schedule: a missing barrier shows up only when the shuffle happens to
// run a reader before its writer, so whether it is caught was luck. Here every access a kernel makes to
// shared memory, and to the device allocations it can write, is recorded with the thread, the block's
// barrier interval ("phase": a new one at the block's start and after every __syncthreads) and the
// warp's synchronisation interval (a new one after every warp collective the whole warp takes part
// in). Two accesses to the same byte conflict when at least one writes, they come from different
// threads, they fall in the same phase and, for two lanes of one warp, in the same warp interval; an
// atomic against an atomic never conflicts. Whether a pair conflicts does not depend on which of the
// two ran first, so the verdict does not depend on the seed.
//
// How accesses are seen: the kernel translation units are compiled with -fsanitize=thread (CMake),
// which makes the compiler call __tsan_read4(addr), __tsan_write16(addr), __tsan_atomic32_fetch_add ...
// around every load and store; racecheck.cc defines those entry points itself (no TSan runtime is
// linked). Kernel sources stay plain CUDA, and nvcc builds are untouched.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace glm::harness::race {

// What the harness tells the detector about the running block (written by harness.cc; read on every
// instrumented access, so kept flat).
struct Context {
  bool enabled = true;            // GLM_HARNESS_RACECHECK=0 turns recording off
  bool in_block = false;          // a block's fibers are running
  int tid = -1;                   // linear index of the running thread, -1 in the scheduler
  uint32_t phase = 0;             // the block's current barrier interval (globally unique)
  uint32_t block_first_phase = 0; // the block's first phase: older records belong to earlier blocks
  const uint32_t* warp_phase = nullptr;  // per warp: its current synchronisation interval
  uintptr_t smem_lo = 0, smem_hi = 0;    // the block's shared-memory arena
  uintptr_t stack_lo = 0, stack_hi = 0;  // the running fiber's stack (never shared: skipped fast)
};
extern Context g_ctx;

// A new launch: the shared arena's size (its shadow is sized to it).
void begin_launch(size_t smem_bytes);
// Device memory the launch may write (its writable pointer arguments' allocations): reads of it are
// recorded too. Memory a kernel writes through any other pointer is tracked from that write on.
void track_allocation(const void* base, size_t bytes);
// The allocation is freed: its shadow goes.
void forget_allocation(const void* base);

// Accesses the harness performs on a thread's behalf (cp.async, ldmatrix); `pc` is the kernel's code
// address for the report.
void record(const void* addr, size_t bytes, bool write, const void* pc);
void record_atomic(const void* addr, size_t bytes, bool write, const void* pc);
// cp.async: at issue the destination is written (and pending: any read before the wait is an error);
// at the wait it lands, written again by the issuing thread.
void cp_async_issued(const void* dst, size_t bytes, const void* pc);
void cp_async_landed(const void* dst, size_t bytes, const void* pc);

// Implemented by harness.cc for the report: fails the launch with `what` (from inside the running
// fiber, as every kernel error), names a thread and an address.
[[noreturn]] void report(const std::string& what);
std::string describe_thread(int tid);
std::string describe_address(uintptr_t addr);
// The device allocation holding [addr, addr + bytes), if any.
bool find_allocation(uintptr_t addr, uintptr_t* base, size_t* bytes);

}  // namespace glm::harness::race
