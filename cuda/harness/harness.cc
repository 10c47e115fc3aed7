// The CPU execution harness (see harness.h for the model it emulates and why).
//
// Fibers are contexts (fiber_switch.h) on mmap'd stacks with a guard page. A block's threads are scheduled
// cooperatively on the calling OS thread: each round resumes every runnable fiber once, in an order
// shuffled from the launch's seed; a fiber runs until it blocks at a barrier/collective or exits.
// Barriers complete when no fiber is runnable and every live fiber waits at the same __syncthreads;
// anything else at that point is a deadlock, reported as an error (a GPU would hang or misbehave).
#include "harness/harness.h"
#include "harness/fiber_switch.h"
#include "harness/racecheck.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <vector>

namespace glm::harness {
namespace {

constexpr size_t kStackBytes = 256 * 1024;         // kernels keep small frames; the guard page catches overflow
constexpr size_t kSharedRedZone = 64;              // catches overruns of up to 64 bytes between allocations
constexpr size_t kGlobalRedZone = 256;
constexpr uint8_t kPoison = 0xFF;                  // NaN as fp32/bf16, -1 as integers
constexpr uint8_t kRedByte = 0xA5;
constexpr size_t kStaticSharedLimit = 48 * 1024;   // CUDA's static shared memory limit per block
constexpr size_t kDefaultSharedLimit = 48 * 1024;  // static + dynamic without the opt-in attribute
constexpr size_t kOptInSharedLimit = 227 * 1024;   // the opt-in maximum on sm_90 (sm_80: 163 KiB)

enum class State { Runnable, AtBarrier, AtWarp, Done };

struct CpCopy { void* dst; const void* src; int bytes, src_bytes; };

struct Fiber {
  FiberContext ctx;
  void* stack = nullptr;
  ThreadView view{};
  int lane = 0, warp = 0;
  State state = State::Done;
  int barrier_line = 0;
  Slot* slot = nullptr;
  size_t static_index = 0;
  std::vector<std::vector<CpCopy>> cp_groups;  // committed groups, oldest first
  std::vector<CpCopy> cp_open;                 // issued since the last commit
  const void* collective_pc = nullptr;         // the kernel code that entered the current collective
};

struct StaticAlloc { size_t offset, bytes; const char* name; };

struct AlignedFree { void operator()(uint8_t* p) const { ::operator delete[](p, std::align_val_t(128)); } };
using Arena = std::unique_ptr<uint8_t[], AlignedFree>;
Arena make_arena(size_t bytes) { return Arena(static_cast<uint8_t*>(::operator new[](bytes, std::align_val_t(128)))); }

struct Launch {
  const char* name = "";
  const std::function<void()>* body = nullptr;
  dim3 grid, block;
  uint3 block_idx{};
  size_t dyn_bytes = 0, shared_limit = 0;
  int n_threads = 0;
  std::vector<Fiber> fibers;
  Arena smem;
  size_t smem_bytes = 0, static_cursor = 0, dyn_offset = 0;
  std::vector<StaticAlloc> statics;
  std::mt19937_64 rng;
  FiberContext sched;
  Fiber* current = nullptr;
  bool abort_block = false;
  std::string error;
  uint32_t warp_phase[32] = {};  // race detector: each warp's synchronisation interval
};

Launch* g_launch = nullptr;
uint64_t g_seed = 1, g_launch_counter = 0;
std::string g_error = "no error";
cudaError_t g_last = cudaSuccess;
std::string g_injected_fault;  // fail_next_launch
void (*g_launch_observer)(const char*) = nullptr;
Stats g_stats;
std::map<const void*, int> g_dyn_limit;
struct Alloc { uint8_t* raw; size_t bytes; };
std::map<uintptr_t, Alloc> g_allocs;  // keyed by the pointer handed out
std::vector<void*> g_stacks;          // reused across launches
uint32_t g_phase = 0;                 // race detector: barrier intervals handed out so far

std::string fmt3(const char* tag, unsigned x, unsigned y, unsigned z) {
  char b[96];
  std::snprintf(b, sizeof b, "%s (%u,%u,%u)", tag, x, y, z);
  return b;
}

// Records the first error of the launch. From inside a fiber it abandons the block (the fiber is never
// resumed); from the scheduler it only marks the block aborted.
void fail(const std::string& what) {
  Launch& L = *g_launch;
  if (L.error.empty()) {
    L.error = "kernel '" + std::string(L.name) + "' " + fmt3("block", L.block_idx.x, L.block_idx.y, L.block_idx.z);
    if (L.current) {
      const uint3 t = L.current->view.thread_idx;
      L.error += " " + fmt3("thread", t.x, t.y, t.z);
    }
    L.error += ": " + what;
  }
  L.abort_block = true;
  if (L.current) {
    Fiber* f = L.current;
    fiber_switch(&f->ctx, &L.sched);
    std::abort();  // unreachable: an aborted block's fibers are never resumed
  }
}

}  // namespace

// The race detector's view of the launch (racecheck.h).
namespace race {
void report(const std::string& what) {
  fail(what);
  std::abort();  // unreachable: reports come from inside the running fiber, which fail() abandons
}
std::string describe_thread(int tid) {
  const Launch& L = *g_launch;
  const uint3 t = L.fibers[size_t(tid)].view.thread_idx;
  return fmt3("thread", t.x, t.y, t.z) + " [warp " + std::to_string(tid / 32) + " lane " + std::to_string(tid % 32) + "]";
}
std::string describe_address(uintptr_t a) {
  const Launch& L = *g_launch;
  const uintptr_t lo = reinterpret_cast<uintptr_t>(L.smem.get());
  if (a >= lo && a < lo + L.smem_bytes) {
    const size_t off = a - lo;
    if (off >= L.dyn_offset) return "dynamic shared memory, byte " + std::to_string(off - L.dyn_offset);
    for (const auto& st : L.statics) {
      if (off >= st.offset && off < st.offset + st.bytes) {
        return std::string("shared '") + st.name + "', byte " + std::to_string(off - st.offset);
      }
    }
    return "shared memory (arena byte " + std::to_string(off) + ")";
  }
  uintptr_t base = 0;
  size_t bytes = 0;
  if (find_allocation(a, &base, &bytes)) {
    return "device memory, byte " + std::to_string(a - base) + " of an allocation of " + std::to_string(bytes) + " bytes";
  }
  char b[64];
  std::snprintf(b, sizeof b, "address %p", reinterpret_cast<void*>(a));
  return b;
}
bool find_allocation(uintptr_t a, uintptr_t* base, size_t* bytes) {
  auto it = g_allocs.upper_bound(a);
  if (it == g_allocs.begin()) return false;
  --it;
  if (a < it->first || a >= it->first + it->second.bytes) return false;
  *base = it->first;
  *bytes = it->second.bytes;
  return true;
}
}  // namespace race

namespace {

void yield_to_scheduler() {
  Launch& L = *g_launch;
  ++g_stats.switches;
  fiber_switch(&L.current->ctx, &L.sched);
}

void fiber_main() {
  Launch& L = *g_launch;
  (*L.body)();
  L.current->state = State::Done;
  fiber_switch(&L.current->ctx, &L.sched);
  std::abort();  // unreachable: a finished fiber is never resumed
}

void* take_stack() {
  if (!g_stacks.empty()) {
    void* s = g_stacks.back();
    g_stacks.pop_back();
    return s;
  }
  void* m = mmap(nullptr, kStackBytes + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return nullptr;
  mprotect(m, 4096, PROT_NONE);  // guard page below the stack (stacks grow down)
  return m;
}

bool in_shared(const void* p, size_t bytes) {
  const Launch& L = *g_launch;
  const uint8_t* b = static_cast<const uint8_t*>(p);
  return b >= L.smem.get() && b + bytes <= L.smem.get() + L.smem_bytes;
}

std::string check_red(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] != kRedByte) return "modified";
  }
  return "";
}

// Verifies the red zones of the block's shared memory after it ran.
void check_shared_red_zones() {
  Launch& L = *g_launch;
  const uint8_t* a = L.smem.get();
  size_t cursor = 0;
  for (const auto& s : L.statics) {
    if (!check_red(a + cursor, s.offset - cursor).empty()) {
      fail(std::string("out-of-bounds shared memory write before static shared '") + s.name + "'");
      return;
    }
    cursor = s.offset + s.bytes;
  }
  const size_t static_end = kSharedRedZone + kStaticSharedLimit + kSharedRedZone;
  if (!check_red(a + cursor, static_end - cursor).empty()) {
    fail(L.statics.empty() ? std::string("out-of-bounds shared memory write (no static shared declared)")
                           : std::string("out-of-bounds shared memory write after static shared '") + L.statics.back().name + "'");
    return;
  }
  if (!check_red(a + L.dyn_offset + L.dyn_bytes, kSharedRedZone).empty()) {
    fail("out-of-bounds dynamic shared memory write past the " + std::to_string(L.dyn_bytes) + " bytes launched with");
  }
}

void complete_collective(int warp, unsigned mask);

void run_block(unsigned linear) {
  Launch& L = *g_launch;
  L.block_idx = {linear % L.grid.x, (linear / L.grid.x) % L.grid.y, linear / (L.grid.x * L.grid.y)};
  L.abort_block = false;
  // Shared memory: red zones everywhere, poison where an allocation lives.
  std::memset(L.smem.get(), kRedByte, L.smem_bytes);
  std::memset(L.smem.get() + L.dyn_offset, kPoison, L.dyn_bytes);
  L.statics.clear();
  L.static_cursor = kSharedRedZone;
  for (int t = 0; t < L.n_threads; ++t) {
    Fiber& f = L.fibers[size_t(t)];
    f.view.thread_idx = {unsigned(t) % L.block.x, (unsigned(t) / L.block.x) % L.block.y, unsigned(t) / (L.block.x * L.block.y)};
    f.view.block_idx = L.block_idx;
    f.view.block_dim = L.block;
    f.view.grid_dim = L.grid;
    f.lane = t % 32;
    f.warp = t / 32;
    f.state = State::Runnable;
    f.slot = nullptr;
    f.static_index = 0;
    f.cp_groups.clear();
    f.cp_open.clear();
    fiber_prepare(&f.ctx, static_cast<uint8_t*>(f.stack) + 4096, kStackBytes, fiber_main);
  }
  ++g_stats.blocks;
  g_stats.fibers += uint64_t(L.n_threads);
  race::g_ctx.in_block = true;
  race::g_ctx.phase = race::g_ctx.block_first_phase = ++g_phase;
  race::g_ctx.warp_phase = L.warp_phase;
  race::g_ctx.smem_lo = reinterpret_cast<uintptr_t>(L.smem.get());
  race::g_ctx.smem_hi = race::g_ctx.smem_lo + L.smem_bytes;
  std::vector<int> order;
  order.reserve(size_t(L.n_threads));
  while (!L.abort_block) {
    order.clear();
    int done = 0;
    for (int t = 0; t < L.n_threads; ++t) {
      if (L.fibers[size_t(t)].state == State::Runnable) order.push_back(t);
      if (L.fibers[size_t(t)].state == State::Done) ++done;
    }
    if (order.empty()) {
      if (done == L.n_threads) break;
      // Nothing can run: either a complete __syncthreads or a deadlock.
      int line = -1;
      bool all_at_barrier = true;
      for (auto& f : L.fibers) {
        if (f.state == State::AtWarp) all_at_barrier = false;
        if (f.state == State::AtBarrier) {
          if (line >= 0 && f.barrier_line != line) {
            fail("threads wait at different __syncthreads (lines " + std::to_string(line) + " and " +
                 std::to_string(f.barrier_line) + ")");
            break;
          }
          line = f.barrier_line;
        }
      }
      if (L.abort_block) break;
      if (!all_at_barrier) {
        for (auto& f : L.fibers) {
          if (f.state != State::AtWarp) continue;
          const auto& s = *f.slot;
          std::string why = "deadlock: lane " + std::to_string(f.lane) + " of warp " + std::to_string(f.warp) +
                            " waits in a warp collective (line " + std::to_string(s.line) + ") for lanes";
          for (int l = 0; l < 32; ++l) {
            if (!(s.mask >> l & 1u)) continue;
            const Fiber& o = L.fibers[size_t(f.warp * 32 + l)];
            if (o.state == State::AtBarrier) why += " " + std::to_string(l) + "(at __syncthreads line " + std::to_string(o.barrier_line) + ")";
          }
          fail(why);
          break;
        }
        break;
      }
      if (done > 0) {
        fail(std::to_string(done) + " thread(s) exited while the others wait at __syncthreads (line " +
             std::to_string(line) + ")");
        break;
      }
      for (auto& f : L.fibers) f.state = State::Runnable;
      race::g_ctx.phase = ++g_phase;  // the barrier orders everything before it against everything after
      continue;
    }
    std::shuffle(order.begin(), order.end(), L.rng);
    for (int t : order) {
      Fiber& f = L.fibers[size_t(t)];
      if (f.state != State::Runnable) continue;
      L.current = &f;
      race::g_ctx.tid = t;
      race::g_ctx.stack_lo = reinterpret_cast<uintptr_t>(f.stack);
      race::g_ctx.stack_hi = race::g_ctx.stack_lo + kStackBytes + 4096;
      ++g_stats.switches;
      fiber_switch(&L.sched, &f.ctx);
      L.current = nullptr;
      race::g_ctx.tid = -1;
      if (L.abort_block) break;
    }
  }
  race::g_ctx.in_block = false;
  if (!L.abort_block) check_shared_red_zones();
}

std::string check_global_red_zones() {
  for (const auto& [user, a] : g_allocs) {
    if (!check_red(a.raw, kGlobalRedZone).empty()) return "out-of-bounds write before a device allocation of " + std::to_string(a.bytes) + " bytes";
    if (!check_red(a.raw + kGlobalRedZone + a.bytes, kGlobalRedZone).empty()) return "out-of-bounds write after a device allocation of " + std::to_string(a.bytes) + " bytes";
  }
  return "";
}

uint32_t bits_of(float f) { return __float_as_uint(f); }
float bf16_bits_to_float(uint16_t h) { return __uint_as_float(uint32_t(h) << 16); }
// OCP E4M3 (written out here independently of common.cuh's conversion): bias 7, NaN at S.1111.111.
float e4m3_value(uint8_t v) {
  const int e = (v >> 3) & 15, m = v & 7;
  const float mag = (e == 15 && m == 7) ? NAN : e == 0 ? std::ldexp(float(m), -9) : std::ldexp(1.0f + float(m) / 8.0f, e - 7);
  return (v & 0x80) ? -mag : mag;
}

// The C/D side shared by mma.m16n8k16 and m16n8k32 (PTX ISA: c[i], i = 0..3, at row = group + 8 * (i >> 1),
// col = tig * 2 + (i & 1), in registers frag[6..9] / out_frag[0..3]): D = C + A * B for the A [16][K] and
// B [K][8] the caller unpacked from its input type. Products of bf16 or e4m3 values are exact in fp32;
// the tensor core's sum order (and, on Hopper, the width of its fp8 accumulation) is not modelled: the
// tests budget for fp32 reassociation.
template <int K>
void mma_m16n8_accumulate(Slot* const (&s)[32], const float (&A)[16][K], const float (&B)[K][8]) {
  float C[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) C[g + 8 * (i >> 1)][t * 2 + (i & 1)] = __uint_as_float(s[l]->frag[6 + i]);
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; ++i) {
      const int r = g + 8 * (i >> 1), c = t * 2 + (i & 1);
      float acc = C[r][c];
      for (int k = 0; k < K; ++k) acc += A[r][k] * B[k][c];
      s[l]->out_frag[i] = bits_of(acc);
    }
  }
}

// Every lane in `mask` has arrived at the same collective: compute each lane's result.
void complete_collective(int warp, unsigned mask) {
  Launch& L = *g_launch;
  Slot* s[32] = {};
  for (int l = 0; l < 32; ++l) {
    if (mask >> l & 1u) s[l] = L.fibers[size_t(warp * 32 + l)].slot;
  }
  Slot& first = *s[__builtin_ctz(mask)];
  const Collective op = first.op;
  switch (op) {
    case Collective::Sync: break;
    case Collective::Shfl: case Collective::ShflUp: case Collective::ShflDown: case Collective::ShflXor: {
      for (int l = 0; l < 32; ++l) {
        if (!s[l]) continue;
        const int w = s[l]->width;
        if (w < 1 || w > 32 || (w & (w - 1))) { fail("shuffle width " + std::to_string(w) + " is not a power of two <= 32"); return; }
        const int base = l & ~(w - 1), a = s[l]->arg;
        int src = l;
        if (op == Collective::Shfl) src = base + (a & (w - 1));
        else if (op == Collective::ShflUp) src = (l - base) >= a ? l - a : l;
        else if (op == Collective::ShflDown) src = (l - base) + a < w ? l + a : l;
        else { src = l ^ a; if (src < base || src >= base + w) src = l; }
        if (src < 0 || src > 31 || !(mask >> src & 1u)) {
          fail("shuffle at line " + std::to_string(s[l]->line) + ": lane " + std::to_string(l) + " reads lane " +
               std::to_string(src) + ", which is not in the mask (undefined on the GPU)");
          return;
        }
        s[l]->out = s[src]->value;
      }
      break;
    }
    case Collective::Ballot: case Collective::Any: case Collective::All: {
      uint32_t ballot = 0;
      for (int l = 0; l < 32; ++l) if (s[l] && s[l]->value) ballot |= 1u << l;
      const uint64_t r = op == Collective::Ballot ? ballot : op == Collective::Any ? (ballot != 0) : (ballot == mask);
      for (int l = 0; l < 32; ++l) if (s[l]) s[l]->out = r;
      break;
    }
    case Collective::ReduceAdd: case Collective::ReduceMin: case Collective::ReduceMax: case Collective::ReduceAnd:
    case Collective::ReduceOr: case Collective::ReduceXor: {
      uint32_t acc = uint32_t(first.value);
      for (int l = 0; l < 32; ++l) {
        if (!s[l] || s[l] == &first) continue;
        const uint32_t v = uint32_t(s[l]->value);
        switch (op) {
          case Collective::ReduceAdd: acc += v; break;
          case Collective::ReduceMin: acc = first.is_signed ? uint32_t(std::min(int32_t(acc), int32_t(v))) : std::min(acc, v); break;
          case Collective::ReduceMax: acc = first.is_signed ? uint32_t(std::max(int32_t(acc), int32_t(v))) : std::max(acc, v); break;
          case Collective::ReduceAnd: acc &= v; break;
          case Collective::ReduceOr: acc |= v; break;
          default: acc ^= v; break;
        }
      }
      for (int l = 0; l < 32; ++l) if (s[l]) s[l]->out = acc;
      break;
    }
    case Collective::Mma16816Bf16: {
      // PTX ISA, mma.m16n8k16 with .bf16 inputs and .f32 accumulators (row.col), with
      // group = lane >> 2, tig = lane & 3:
      //   A 16x16: a[i] (i = 0..7, two bf16 per 32-bit register, low half first):
      //            row = group + 8 * ((i >> 1) & 1), col = tig * 2 + (i & 1) + 8 * (i >> 2)
      //   B 16x8:  b[i] (i = 0..3): row (k) = tig * 2 + (i & 1) + 8 * (i >> 1), col (n) = group
      //   C/D 16x8: c[i] (i = 0..3): row = group + 8 * (i >> 1), col = tig * 2 + (i & 1)
      if (mask != 0xffffffffu) { fail("mma.sync.aligned needs all 32 lanes"); return; }
      float A[16][16], B[16][8];
      for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < 8; ++i) {
          const uint16_t h = uint16_t(s[l]->frag[i >> 1] >> (16 * (i & 1)));
          A[g + 8 * ((i >> 1) & 1)][t * 2 + (i & 1) + 8 * (i >> 2)] = bf16_bits_to_float(h);
        }
        for (int i = 0; i < 4; ++i) {
          const uint16_t h = uint16_t(s[l]->frag[4 + (i >> 1)] >> (16 * (i & 1)));
          B[t * 2 + (i & 1) + 8 * (i >> 1)][g] = bf16_bits_to_float(h);
        }
      }
      mma_m16n8_accumulate(s, A, B);
      break;
    }
    case Collective::Mma16832E4m3: {
      // PTX ISA, mma.m16n8k32 with 8-bit (.e4m3) inputs and .f32 accumulators (row.col), group = lane >> 2,
      // tig = lane & 3, four elements per 32-bit register, byte j = element j:
      //   A 16x32: a[i] (i = 0..15): row = group + 8 * ((i >> 2) & 1), col = tig * 4 + (i & 3) + 16 * (i >> 3)
      //   B 32x8:  b[i] (i = 0..7):  row (k) = tig * 4 + (i & 3) + 16 * (i >> 2), col (n) = group
      //   C/D: as m16n8k16.
      if (mask != 0xffffffffu) { fail("mma.sync.aligned needs all 32 lanes"); return; }
      float A[16][32], B[32][8];
      for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < 16; ++i) {
          const uint8_t v = uint8_t(s[l]->frag[i >> 2] >> (8 * (i & 3)));
          A[g + 8 * ((i >> 2) & 1)][t * 4 + (i & 3) + 16 * (i >> 3)] = e4m3_value(v);
        }
        for (int i = 0; i < 8; ++i) {
          const uint8_t v = uint8_t(s[l]->frag[4 + (i >> 2)] >> (8 * (i & 3)));
          B[t * 4 + (i & 3) + 16 * (i >> 2)][g] = e4m3_value(v);
        }
      }
      mma_m16n8_accumulate(s, A, B);
      break;
    }
    case Collective::LdMatrix: {
      // PTX ldmatrix.sync.aligned.m8n8.{x1,x2,x4}[.trans].shared.b16: lanes 8*i .. 8*i+7 give the
      // addresses of the 8 rows (16 bytes each) of matrix i. Lane l receives, in register i, the two
      // b16 elements at row l/4, columns 2*(l%4) and 2*(l%4)+1 of matrix i (transposed with .trans:
      // rows 2*(l%4) and 2*(l%4)+1 of column l/4), the lower column in the low half.
      if (mask != 0xffffffffu) { fail("ldmatrix.sync.aligned needs all 32 lanes"); return; }
      const int count = first.count;
      uint16_t m[4][8][8];
      for (int i = 0; i < count; ++i) {
        for (int r = 0; r < 8; ++r) {
          const void* a = s[8 * i + r]->address;
          if (!in_shared(a, 16) || (reinterpret_cast<uintptr_t>(a) & 15)) {
            fail("ldmatrix: row address of lane " + std::to_string(8 * i + r) + " is not 16-byte aligned shared memory");
            return;
          }
          // The row is read on behalf of the lane that gave its address (the collective runs on
          // whichever lane arrived last).
          const int saved = race::g_ctx.tid;
          race::g_ctx.tid = warp * 32 + 8 * i + r;
          race::record(a, 16, false, L.fibers[size_t(warp * 32 + 8 * i + r)].collective_pc);
          race::g_ctx.tid = saved;
          std::memcpy(m[i][r], a, 16);
        }
      }
      for (int l = 0; l < 32; ++l) {
        const int g = l >> 2, t = l & 3;
        for (int i = 0; i < count; ++i) {
          const uint16_t lo = first.trans ? m[i][2 * t][g] : m[i][g][2 * t];
          const uint16_t hi = first.trans ? m[i][2 * t + 1][g] : m[i][g][2 * t + 1];
          s[l]->out_frag[i] = uint32_t(lo) | uint32_t(hi) << 16;
        }
      }
      break;
    }
  }
}

}  // namespace

const ThreadView& view() {
  static const ThreadView outside{};
  return g_launch && g_launch->current ? g_launch->current->view : outside;
}

void set_launch_observer(void (*observer)(const char*)) { g_launch_observer = observer; }
void set_seed(uint64_t s) { g_seed = s; }
uint64_t seed() { return g_seed; }
const char* last_error_message() { return g_error.c_str(); }
Stats stats() { return g_stats; }

void kernel_error(const char* what) { fail(what); }

void syncthreads(int line) {
  Fiber* f = g_launch->current;
  f->state = State::AtBarrier;
  f->barrier_line = line;
  yield_to_scheduler();
}

void warp_collective(Slot& slot) {
  Launch& L = *g_launch;
  Fiber* f = L.current;
  if (!(slot.mask >> f->lane & 1u)) {
    fail("warp collective at line " + std::to_string(slot.line) + " called by lane " + std::to_string(f->lane) + ", which is not in its mask");
  }
  const int lanes = std::min(32, L.n_threads - f->warp * 32);
  const unsigned valid = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1u;
  if (slot.mask & ~valid) fail("warp collective at line " + std::to_string(slot.line) + ": mask names lanes beyond the block");
  f->slot = &slot;
  f->state = State::AtWarp;
  f->collective_pc = __builtin_return_address(0);
  bool all = true;
  for (int l = 0; l < 32; ++l) {
    if (!(slot.mask >> l & 1u) || l == f->lane) continue;
    const Fiber& o = L.fibers[size_t(f->warp * 32 + l)];
    if (o.state == State::Done) {
      fail("warp collective at line " + std::to_string(slot.line) + ": lane " + std::to_string(l) + " named in the mask has exited");
    }
    // A lane still to come checks the lanes after it when it arrives; the last one checks them all.
    if (o.state != State::AtWarp) { all = false; break; }
    if (o.slot->op != slot.op || o.slot->mask != slot.mask) {
      fail("lanes " + std::to_string(f->lane) + " and " + std::to_string(l) + " are in different warp collectives (lines " +
           std::to_string(slot.line) + " and " + std::to_string(o.slot->line) + ") with overlapping masks");
    }
  }
  if (!all) {
    yield_to_scheduler();  // the last lane to arrive completes the collective and wakes us
    return;
  }
  // A collective the whole (live) warp takes part in orders every lane's earlier accesses before every
  // lane's later ones: a new warp interval. One over part of the warp is not modelled as ordering
  // anything (conservative: a kernel relying on it is reported).
  unsigned live = 0;
  for (int l = 0; l < lanes; ++l) {
    if (L.fibers[size_t(f->warp * 32 + l)].state != State::Done) live |= 1u << l;
  }
  if ((slot.mask & live) == live) ++L.warp_phase[f->warp];
  complete_collective(f->warp, slot.mask);
  for (int l = 0; l < 32; ++l) {
    if (!(slot.mask >> l & 1u)) continue;
    Fiber& o = L.fibers[size_t(f->warp * 32 + l)];
    o.slot = nullptr;
    o.state = State::Runnable;
  }
}

void* static_shared(size_t bytes, size_t align, const char* name) {
  Launch& L = *g_launch;
  Fiber* f = L.current;
  const size_t index = f->static_index++;
  if (index < L.statics.size()) {
    if (L.statics[index].bytes != bytes) fail(std::string("static shared '") + name + "' declared with different sizes by different threads");
    return L.smem.get() + L.statics[index].offset;
  }
  const size_t a = std::max<size_t>(align, 16);
  const size_t offset = (L.static_cursor + a - 1) / a * a;
  const size_t used = offset + bytes - kSharedRedZone;
  if (used > kStaticSharedLimit) fail(std::string("static shared memory exceeds 48 KiB at '") + name + "'");
  if (used + L.dyn_bytes > L.shared_limit) {
    fail("static (" + std::to_string(used) + " B) + dynamic (" + std::to_string(L.dyn_bytes) + " B) shared memory exceed the block limit of " +
         std::to_string(L.shared_limit) + " B");
  }
  std::memset(L.smem.get() + offset, kPoison, bytes);
  L.statics.push_back({offset, bytes, name});
  L.static_cursor = offset + bytes + kSharedRedZone;
  return L.smem.get() + offset;
}

void* dynamic_shared() { return g_launch->smem.get() + g_launch->dyn_offset; }

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  if (bytes != 4 && bytes != 8 && bytes != 16) fail("cp.async size must be 4, 8 or 16 bytes");
  if (src_bytes < 0 || src_bytes > bytes) fail("cp.async src-size outside [0, size]");
  if (!in_shared(dst, size_t(bytes)) || (reinterpret_cast<uintptr_t>(dst) % size_t(bytes))) fail("cp.async destination is not aligned shared memory");
  if (src_bytes > 0 && (reinterpret_cast<uintptr_t>(src) % size_t(bytes))) fail("cp.async source is not aligned to the copy size");
  // The destination's content is undefined from issue until the wait: the copy may land at any moment
  // in between. Poisoning it at issue exposes both orders — a thread still reading the old contents
  // (a missing barrier before the next tile's copy) and a thread reading before the wait.
  std::memset(dst, kPoison, size_t(bytes));
  race::cp_async_issued(dst, size_t(bytes), __builtin_return_address(0));
  g_launch->current->cp_open.push_back({dst, src, bytes, src_bytes});
}

void cp_async_commit() {
  Fiber* f = g_launch->current;
  f->cp_groups.push_back(std::move(f->cp_open));
  f->cp_open.clear();
}

void cp_async_wait(int allowed) {
  Fiber* f = g_launch->current;
  while (int(f->cp_groups.size()) > allowed) {
    for (const auto& c : f->cp_groups.front()) {
      race::cp_async_landed(c.dst, size_t(c.bytes), __builtin_return_address(0));
      std::memcpy(c.dst, c.src, size_t(c.src_bytes));
      std::memset(static_cast<uint8_t*>(c.dst) + c.src_bytes, 0, size_t(c.bytes - c.src_bytes));
    }
    f->cp_groups.erase(f->cp_groups.begin());
  }
}

}  // namespace glm::harness

namespace {
using namespace glm::harness;

cudaError_t launch_now(const void* fn, const char* name, dim3 grid, dim3 block, size_t dyn_bytes,
                       const std::function<void()>& body, const std::vector<const void*>& writable) {
  if (!g_injected_fault.empty()) {
    g_error = "kernel '" + std::string(name) + "': " + g_injected_fault;
    g_injected_fault.clear();
    g_last = cudaErrorLaunchFailure;
    return cudaErrorLaunchFailure;
  }
  auto config_error = [&](const std::string& what) {
    g_error = "kernel '" + std::string(name) + "': invalid launch configuration: " + what;
    g_last = cudaErrorInvalidConfiguration;
    return cudaErrorInvalidConfiguration;
  };
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  if (threads == 0 || threads > 1024 || block.z > 64) return config_error("block of " + std::to_string(threads) + " threads");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || grid.x > 0x7fffffffu) return config_error("grid dimensions");
  auto lim = g_dyn_limit.find(fn);
  const size_t limit = lim == g_dyn_limit.end() ? kDefaultSharedLimit : std::max<size_t>(kDefaultSharedLimit, size_t(lim->second));
  if (dyn_bytes > limit) return config_error(std::to_string(dyn_bytes) + " bytes of dynamic shared memory over the limit of " + std::to_string(limit));

  if (g_launch_observer) g_launch_observer(name);
  Launch L;
  L.name = name;
  L.body = &body;
  L.grid = grid;
  L.block = block;
  L.dyn_bytes = dyn_bytes;
  // Static + dynamic: 48 KiB without the opt-in; with it, CUDA bounds the dynamic part by the attribute
  // and static + attribute by the opt-in maximum (static memory does not count against the attribute).
  L.shared_limit = limit > kDefaultSharedLimit ? kOptInSharedLimit - limit + dyn_bytes : kDefaultSharedLimit;
  L.n_threads = int(threads);
  L.rng.seed(g_seed * 0x9E3779B97F4A7C15ull + (++g_launch_counter));
  static const bool racecheck = [] {
#if defined(GLM_HARNESS_UNINSTRUMENTED)
    return false;  // the kernels' own loads and stores are invisible here: the detector would see half
#else
    const char* e = std::getenv("GLM_HARNESS_RACECHECK");
    return !(e && std::strcmp(e, "0") == 0);
#endif
  }();
  race::g_ctx.enabled = racecheck;
  L.dyn_offset = kSharedRedZone + kStaticSharedLimit + kSharedRedZone;
  L.smem_bytes = L.dyn_offset + dyn_bytes + kSharedRedZone;
  L.smem = make_arena(L.smem_bytes);
  L.fibers.resize(size_t(threads));
  for (auto& f : L.fibers) {
    f.stack = take_stack();
    if (!f.stack) {
      for (auto& g : L.fibers) if (g.stack) g_stacks.push_back(g.stack);
      g_error = "harness: cannot allocate fiber stacks";
      g_last = cudaErrorMemoryAllocation;
      return g_last;
    }
  }
  g_launch = &L;
  ++g_stats.launches;
  race::begin_launch(L.smem_bytes);
  for (const void* p : writable) {
    uintptr_t base = 0;
    size_t bytes = 0;
    if (p && race::find_allocation(reinterpret_cast<uintptr_t>(p), &base, &bytes)) race::track_allocation(reinterpret_cast<const void*>(base), bytes);
  }
  const unsigned n_blocks = grid.x * grid.y * grid.z;
  std::vector<unsigned> blocks(n_blocks);
  for (unsigned b = 0; b < n_blocks; ++b) blocks[b] = b;
  std::shuffle(blocks.begin(), blocks.end(), L.rng);  // blocks may run in any order on a GPU
  for (unsigned b : blocks) {
    run_block(b);
    if (!L.error.empty()) break;
  }
  g_launch = nullptr;
  for (auto& f : L.fibers) g_stacks.push_back(f.stack);
  if (L.error.empty()) {
    const std::string g = check_global_red_zones();
    if (!g.empty()) L.error = "kernel '" + std::string(name) + "': " + g;
  }
  if (!L.error.empty()) {
    g_error = L.error;
    g_last = cudaErrorLaunchFailure;
    return cudaErrorLaunchFailure;
  }
  return cudaSuccess;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Runtime API emulation: device memory is host memory with poison and red zones.
// ---------------------------------------------------------------------------------------------
using namespace glm::harness;

namespace {
size_t g_device_total = size_t(1) << 30;
size_t g_device_in_use = 0;
}  // namespace

namespace glm::harness {
void set_device_memory(size_t total) { g_device_total = total; }
size_t device_bytes_in_use() { return g_device_in_use; }
void fail_next_launch(const char* why) { g_injected_fault = why ? why : "injected fault"; }
}  // namespace glm::harness

// A recorded piece of stream work (a kernel launch, an async copy or memset) with its arguments by value.
struct GlmHarnessNode {
  std::string what;
  std::function<cudaError_t()> run;
};
struct GlmHarnessStream {
  int id;
  bool capturing = false;
  bool invalidated = false;  // a capture-breaking call happened during the capture
  std::vector<GlmHarnessNode> nodes;
};
struct GlmHarnessGraph { std::vector<GlmHarnessNode> nodes; };
struct GlmHarnessGraphExec { std::vector<GlmHarnessNode> nodes; };

namespace {
std::vector<GlmHarnessStream*> g_capturing;  // streams in capture (global mode: every one constrains every thread)
cudaError_t g_pending = cudaSuccess;          // a failed call's error, reported by the next cudaGetLastError / launch
uint64_t g_captured_nodes = 0;
struct PinnedAlloc { size_t bytes; };
std::map<uintptr_t, PinnedAlloc> g_pinned;

template <class M> bool inside(const M& m, const void* p, size_t bytes, size_t (*size_of)(const typename M::mapped_type&)) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = m.upper_bound(a);
  if (it == m.begin()) return false;
  --it;
  return a >= it->first && a + bytes <= it->first + size_of(it->second);
}
bool is_device(const void* p, size_t bytes) {
  return inside(g_allocs, p, bytes, +[](const Alloc& a) { return a.bytes; });
}
bool is_pinned(const void* p, size_t bytes) {
  return inside(g_pinned, p, bytes, +[](const PinnedAlloc& a) { return a.bytes; });
}

cudaError_t fail_call(cudaError_t e, const std::string& what) {
  g_error = what;
  g_pending = e;
  return e;
}

// A synchronous call (or one that needs the device idle) while a stream captures: in the runtime's
// global capture mode it fails and invalidates every capture in progress.
cudaError_t capture_breaks(const char* call) {
  if (g_capturing.empty()) return cudaSuccess;
  for (GlmHarnessStream* s : g_capturing) s->invalidated = true;
  return fail_call(cudaErrorStreamCaptureUnsupported,
                   std::string(call) + " while a stream is capturing a graph: not allowed in global or thread-local capture mode; "
                                       "the capture is invalidated");
}

// Work issued to a capturing stream: recorded, or refused once the capture is invalidated.
cudaError_t record_node(cudaStream_t s, std::string what, std::function<cudaError_t()> run) {
  if (s->invalidated) {
    return fail_call(cudaErrorStreamCaptureInvalidated, what + " on a stream whose capture was invalidated");
  }
  s->nodes.push_back({std::move(what), std::move(run)});
  ++g_captured_nodes;
  return cudaSuccess;
}

cudaError_t take_pending() {
  const cudaError_t e = g_pending;
  g_pending = cudaSuccess;
  return e;
}
}  // namespace

namespace glm::harness {
uint64_t captured_nodes() { return g_captured_nodes; }

cudaError_t launch(const void* fn, const char* name, dim3 grid, dim3 block, size_t dyn_bytes, cudaStream_t stream,
                   std::function<void()> body, std::vector<const void*> pointers, std::vector<const void*> writable) {
  if (stream && stream->capturing) {
    const cudaError_t e = record_node(stream, std::string("kernel '") + name + "'", [=]() {
      for (const void* p : pointers) {
        if (p && !is_device(p, 0) && !is_pinned(p, 0)) {
          g_error = std::string("kernel '") + name +
                    "' replayed from a graph with a pointer argument into freed memory (the buffer was freed after the capture)";
          g_last = cudaErrorLaunchFailure;
          return cudaErrorLaunchFailure;
        }
      }
      return launch_now(fn, name, grid, block, dyn_bytes, body, writable);
    });
    if (e != cudaSuccess) return take_pending();
    return take_pending();  // an earlier uncleared error surfaces here, as after <<<>>>
  }
  const cudaError_t e = launch_now(fn, name, grid, block, dyn_bytes, body, writable);
  if (e != cudaSuccess) return e;
  return take_pending();
}
}  // namespace glm::harness

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  if (!stream) return fail_call(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy default stream");
  // Relaxed mode would allow the calls the other modes forbid; the backend never uses it.
  if (mode == cudaStreamCaptureModeRelaxed) return fail_call(cudaErrorInvalidValue, "the harness emulates global and thread-local capture modes only");
  if (stream->capturing) return fail_call(cudaErrorIllegalState, "cudaStreamBeginCapture on a stream already capturing");
  stream->capturing = true;
  stream->invalidated = false;
  stream->nodes.clear();
  g_capturing.push_back(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!stream || !stream->capturing) return fail_call(cudaErrorIllegalState, "cudaStreamEndCapture on a stream not capturing");
  stream->capturing = false;
  g_capturing.erase(std::find(g_capturing.begin(), g_capturing.end(), stream));
  std::vector<GlmHarnessNode> nodes = std::move(stream->nodes);
  stream->nodes.clear();
  if (stream->invalidated) {
    stream->invalidated = false;
    *graph = nullptr;
    return fail_call(cudaErrorStreamCaptureInvalidated, "cudaStreamEndCapture: the capture was invalidated by a call not allowed during capture");
  }
  *graph = new GlmHarnessGraph{std::move(nodes)};
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  *status = !stream || !stream->capturing ? cudaStreamCaptureStatusNone
            : stream->invalidated         ? cudaStreamCaptureStatusInvalidated
                                          : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!exec || !graph) return fail_call(cudaErrorInvalidValue, "cudaGraphInstantiate of a null graph");
  *exec = new GlmHarnessGraphExec{graph->nodes};
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return fail_call(cudaErrorInvalidValue, "cudaGraphLaunch of a null graph exec");
  if (stream && stream->capturing) return record_node(stream, "graph launch", [exec]() { return cudaGraphLaunch(exec, nullptr); });
  for (const GlmHarnessNode& n : exec->nodes) {
    const cudaError_t e = n.run();
    if (e != cudaSuccess) return e;  // a kernel's failure is sticky (g_last), as on the device
  }
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}

cudaError_t cudaMallocHost(void** ptr, size_t bytes) {
  if (const cudaError_t e = capture_breaks("cudaMallocHost")) return e;
  uint8_t* p = static_cast<uint8_t*>(::operator new[](std::max<size_t>(bytes, 1), std::align_val_t(256), std::nothrow));
  if (!p) { *ptr = nullptr; return fail_call(cudaErrorMemoryAllocation, "cudaMallocHost: out of host memory"); }
  g_pinned[reinterpret_cast<uintptr_t>(p)] = {bytes};
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaHostAlloc(void** ptr, size_t bytes, unsigned int) { return cudaMallocHost(ptr, bytes); }
cudaError_t cudaFreeHost(void* ptr) {
  if (!ptr) return cudaSuccess;
  if (const cudaError_t e = capture_breaks("cudaFreeHost")) return e;
  auto it = g_pinned.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_pinned.end()) return fail_call(cudaErrorInvalidValue, "cudaFreeHost of a pointer cudaMallocHost did not return");
  ::operator delete[](static_cast<uint8_t*>(ptr), std::align_val_t(256));
  g_pinned.erase(it);
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor: *value = 8; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  *total_bytes = g_device_total;
  *free_bytes = g_device_in_use < g_device_total ? g_device_total - g_device_in_use : 0;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  static int next_id = 0;
  *stream = new GlmHarnessStream{++next_id};
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int) { return cudaStreamCreate(stream); }
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete stream;
  return cudaSuccess;
}

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (const cudaError_t e = capture_breaks("cudaMalloc")) { *ptr = nullptr; return e; }
  if (bytes > g_device_total - std::min(g_device_total, g_device_in_use)) {
    *ptr = nullptr;
    g_error = "cudaMalloc: out of (emulated) device memory";
    return cudaErrorMemoryAllocation;  // like the runtime: reported, but not sticky
  }
  uint8_t* raw = static_cast<uint8_t*>(::operator new[](bytes + 2 * kGlobalRedZone, std::align_val_t(256), std::nothrow));
  if (!raw) { *ptr = nullptr; return g_last = cudaErrorMemoryAllocation; }
  std::memset(raw, kRedByte, kGlobalRedZone);
  std::memset(raw + kGlobalRedZone, kPoison, bytes);
  std::memset(raw + kGlobalRedZone + bytes, kRedByte, kGlobalRedZone);
  *ptr = raw + kGlobalRedZone;
  g_allocs[reinterpret_cast<uintptr_t>(*ptr)] = {raw, bytes};
  g_device_in_use += bytes;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (const cudaError_t e = capture_breaks("cudaFree")) return e;
  if (!ptr) return cudaSuccess;
  auto it = g_allocs.find(reinterpret_cast<uintptr_t>(ptr));
  if (it == g_allocs.end()) { g_error = "cudaFree of a pointer cudaMalloc did not return"; return g_last = cudaErrorInvalidValue; }
  g_device_in_use -= it->second.bytes;
  race::forget_allocation(ptr);
  ::operator delete[](it->second.raw, std::align_val_t(256));
  g_allocs.erase(it);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind) {
  if (const cudaError_t e = capture_breaks("cudaMemcpy")) return e;
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind k, cudaStream_t s) {
  if (s && s->capturing) {
    // A captured copy reads and writes its host side at replay: it must be pinned memory (the runtime
    // refuses pageable memory in a capture), device memory on the device side.
    auto ok = [bytes](const void* p) { return !bytes || is_device(p, bytes) || is_pinned(p, bytes); };
    if (!ok(dst) || !ok(src)) {
      s->invalidated = true;
      return fail_call(cudaErrorStreamCaptureUnsupported,
                       "cudaMemcpyAsync of pageable host memory during stream capture; the capture is invalidated");
    }
    const cudaError_t e = record_node(s, "cudaMemcpyAsync", [=]() {
      if (!ok(dst) || !ok(src)) {
        g_error = "cudaMemcpyAsync replayed from a graph on memory freed after the capture";
        g_last = cudaErrorLaunchFailure;
        return cudaErrorLaunchFailure;
      }
      if (bytes) std::memmove(dst, src, bytes);
      return cudaSuccess;
    });
    return e != cudaSuccess ? take_pending() : cudaSuccess;
  }
  if (bytes) std::memmove(dst, src, bytes);
  (void)k;
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, size_t bytes) {
  if (const cudaError_t e = capture_breaks("cudaMemset")) return e;
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* dst, int value, size_t bytes, cudaStream_t s) {
  if (s && s->capturing) {
    const cudaError_t e = record_node(s, "cudaMemsetAsync", [=]() {
      if (bytes) std::memset(dst, value, bytes);
      return cudaSuccess;
    });
    return e != cudaSuccess ? take_pending() : cudaSuccess;
  }
  if (bytes) std::memset(dst, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (const cudaError_t e = capture_breaks("cudaDeviceSynchronize")) return e;
  return g_last;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  if (const cudaError_t e = capture_breaks("cudaStreamSynchronize")) return e;
  return g_last;
}
cudaError_t cudaGetLastError() {
  const cudaError_t e = g_last != cudaSuccess ? g_last : g_pending;
  g_last = cudaSuccess;
  g_pending = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return g_last != cudaSuccess ? g_last : g_pending; }
const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : g_error.c_str(); }
cudaError_t glm_harness_func_set_attribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 || size_t(value) > kOptInSharedLimit) {
    g_error = "cudaFuncSetAttribute: unsupported attribute or value";
    return cudaErrorInvalidValue;
  }
  g_dyn_limit[fn] = value;
  return cudaSuccess;
}
