// Cooperative context switches for the harness's fibers.
//
// glibc's swapcontext makes a sigprocmask system call on every switch, and the harness switches at
// every __syncthreads and warp collective of every emulated thread: on x86-64 that syscall was ~78%
// of a CUDA-backend harness run (perf). Fibers here never change signal masks, so on x86-64 a switch
// only saves the callee-saved registers and the SSE/x87 control words (the System V ABI's
// preserved state) on the old stack and pops them from the new one. Elsewhere ucontext remains.
#pragma once

#include <cstddef>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace glm::harness {

struct FiberContext {
#if defined(__x86_64__)
  void* sp = nullptr;  // saved stack pointer; the preserved registers sit on that stack
#else
  ucontext_t uc;
#endif
};

// Prepares `fiber` to run entry() on [stack, stack + bytes) the first time it is switched to. entry
// must never return (a fiber ends by switching away for good).
void fiber_prepare(FiberContext* fiber, void* stack, size_t bytes, void (*entry)());

// Saves the running context into `from` and resumes `to`.
void fiber_switch(FiberContext* from, FiberContext* to);

}  // namespace glm::harness
