#include "harness/fiber_switch.h"

#include <cstdint>
#include <cstring>

#if defined(__x86_64__)
// glm_fiber_switch(void** save_sp, void* load_sp): push rbp, rbx, r12-r15 and the MXCSR / x87
// control words, store rsp, load the other stack and pop the same frame in reverse.
asm(R"(
  .text
  .p2align 4
  .globl glm_fiber_switch
  .hidden glm_fiber_switch
  .type glm_fiber_switch,@function
glm_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size glm_fiber_switch, .-glm_fiber_switch
)");
extern "C" void glm_fiber_switch(void** save_sp, void* load_sp);
#endif

namespace glm::harness {

#if defined(__x86_64__)

void fiber_prepare(FiberContext* fiber, void* stack, size_t bytes, void (*entry)()) {
  // From the top: a zero "return address" for entry (it never returns), entry itself for the ret of
  // the first switch, six zeroed registers and the caller's control words (as getcontext would
  // capture them). After that ret, rsp is 8 mod 16, as at the start of any called function.
  uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + bytes) & ~uintptr_t(15);
  auto* slots = reinterpret_cast<uint64_t*>(top);
  slots[-1] = 0;
  slots[-2] = reinterpret_cast<uint64_t>(entry);
  for (int r = 3; r <= 8; ++r) slots[-r] = 0;
  uint32_t mxcsr;
  uint16_t fpu_cw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpu_cw));
  uint8_t* control = reinterpret_cast<uint8_t*>(&slots[-9]);
  std::memcpy(control, &mxcsr, 4);
  std::memcpy(control + 4, &fpu_cw, 2);
  std::memset(control + 6, 0, 2);
  fiber->sp = &slots[-9];
}

void fiber_switch(FiberContext* from, FiberContext* to) { glm_fiber_switch(&from->sp, to->sp); }

#else

void fiber_prepare(FiberContext* fiber, void* stack, size_t bytes, void (*entry)()) {
  getcontext(&fiber->uc);
  fiber->uc.uc_stack.ss_sp = stack;
  fiber->uc.uc_stack.ss_size = bytes;
  fiber->uc.uc_link = nullptr;
  makecontext(&fiber->uc, entry, 0);
}

void fiber_switch(FiberContext* from, FiberContext* to) { swapcontext(&from->uc, &to->uc); }

#endif

}  // namespace glm::harness
