// The race detector's shadow state, its conflict rules and the compiler's instrumentation entry points
// (see racecheck.h for the model). This file itself is not instrumented.
#include "harness/racecheck.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <vector>

namespace glm::harness::race {

Context g_ctx;

namespace {

constexpr uint16_t kNoThread = 0xFFFF;
// kManyAtomic: atomics of two threads unordered with each other hit the byte in this phase (w_tid2 is
// the other one), so a plain access by any thread conflicts with at least one of them.
constexpr uint8_t kAtomic = 1, kAsyncPending = 2, kManyAtomic = 4;

// One byte's history within the current phase. Reads are summarised exactly for the question a later
// write asks (is any reader unordered with me?): which warps read, and for the first reader's warp, the
// lanes that read in its current warp interval; two sample readers keep source lines for the report.
struct Cell {
  uint32_t w_phase = 0, w_wphase = 0;
  int32_t w_pc = 0;
  uint16_t w_tid = kNoThread, w_tid2 = kNoThread;
  uint8_t w_flags = 0;
  int32_t w_pc2 = 0;
  uint32_t r_phase = 0, r_warps = 0, r_wphase = 0, r_lanes = 0;
  uint16_t r_tid[2] = {kNoThread, kNoThread};
  int32_t r_pc[2] = {0, 0};
};

// A tracked device allocation's cells, in pages made on first touch: a large buffer a kernel writes
// only in part (a workspace) costs shadow for that part only.
constexpr size_t kPageBits = 12, kPage = size_t(1) << kPageBits;
struct Shadow {
  uintptr_t lo = 0, hi = 0;
  std::vector<std::unique_ptr<Cell[]>> pages;
  Cell* at(uintptr_t a) {
    const size_t off = a - lo, page = off >> kPageBits;
    auto& pg = pages[page];
    if (!pg) pg = std::make_unique<Cell[]>(kPage);
    return &pg[off & (kPage - 1)];
  }
};

std::vector<Cell> g_smem_cells;                         // reused by every launch
std::map<uintptr_t, std::unique_ptr<Shadow>> g_global;  // tracked device allocations, by base
std::vector<Shadow*> g_hot;                             // the ones the running launch touched, searched first

// Code addresses are kept as 32-bit offsets from this function (one binary is far smaller than 2 GiB).
int32_t pack_pc(const void* pc) {
  return int32_t(reinterpret_cast<intptr_t>(pc) - reinterpret_cast<intptr_t>(&pack_pc));
}
const void* unpack_pc(int32_t off) {
  return reinterpret_cast<const void*>(reinterpret_cast<intptr_t>(&pack_pc) + off);
}

// file:line of a code address via addr2line (only when reporting; the binary carries line tables).
std::string lookup_line(int32_t packed);
std::string source_line(int32_t packed) {
  static std::map<int32_t, std::string> cache;  // addr2line is a process per address: look up once
  auto it = cache.find(packed);
  if (it == cache.end()) it = cache.emplace(packed, lookup_line(packed)).first;
  return it->second;
}
std::string lookup_line(int32_t packed) {
  if (packed == 0) return "an unknown line";
  const void* pc = unpack_pc(packed);
  Dl_info info{};
  if (!dladdr(pc, &info) || !info.dli_fname) return "an unknown line";
  const uintptr_t off = reinterpret_cast<uintptr_t>(pc) - reinterpret_cast<uintptr_t>(info.dli_fbase) - 1;
  std::string file = info.dli_fname;
  if (file.empty() || file[0] != '/') {  // the main program: its path (the child's /proc/self is its own)
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) file.assign(exe, size_t(n));
  }
  char cmd[1024];
  std::snprintf(cmd, sizeof cmd, "addr2line -e '%s' 0x%lx 2>/dev/null", file.c_str(), static_cast<unsigned long>(off));
  std::string out;
  if (FILE* p = popen(cmd, "r")) {
    char buf[512];
    if (std::fgets(buf, sizeof buf, p)) out = buf;
    pclose(p);
  }
  const size_t disc = out.find(" (discriminator");
  if (disc != std::string::npos) out.erase(disc);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  // Paths relative to the repository read better: keep from the last "cuda/" or "test/".
  for (const char* root : {"/cuda/", "/test/"}) {
    const size_t at = out.rfind(root);
    if (at != std::string::npos) { out = out.substr(at + 1); break; }
  }
  if (out.empty() || out[0] == '?') {
    char b[64];
    std::snprintf(b, sizeof b, "code offset 0x%lx", static_cast<unsigned long>(off));
    return b;
  }
  return out;
}

int warp_of(int tid) { return tid >> 5; }
int lane_of(int tid) { return tid & 31; }

[[noreturn]] __attribute__((noinline, cold)) void race(const char* kind, uintptr_t addr, int other, int32_t other_pc, const char* other_did,
                       int32_t pc, const char* this_does) {
  std::string what = std::string("data race (") + kind + ") on " + describe_address(addr) + ": " +
                     describe_thread(other) + " " + other_did + " it at " + source_line(other_pc) + ", and " +
                     describe_thread(g_ctx.tid) + " " + this_does + " it at " + source_line(pc) +
                     " with no __syncthreads";
  if (warp_of(other) == warp_of(g_ctx.tid)) what += ", __syncwarp or warp collective";
  what += " between them";
  report(what);
}

// The tracked allocation holding [a, a + bytes), if any. Reads look only at the launch's writable
// allocations and those it has written so far (every weight read passes here: kept to a short scan);
// a write into device memory not yet in that list adds its allocation.
Shadow* shadow_for(uintptr_t a, size_t bytes, bool write) {
  for (Shadow* s : g_hot) {
    if (a >= s->lo && a + bytes <= s->hi) return s;
  }
  if (!write) return nullptr;
  auto it = g_global.upper_bound(a);
  if (it != g_global.begin()) {
    Shadow* s = std::prev(it)->second.get();
    if (a >= s->lo && a + bytes <= s->hi) {
      g_hot.push_back(s);
      return s;
    }
  }
  uintptr_t base = 0;
  size_t size = 0;
  if (!find_allocation(a, &base, &size) || a + bytes > base + size) return nullptr;
  track_allocation(reinterpret_cast<const void*>(base), size);
  return shadow_for(a, bytes, write);
}

// The accessing thread and its intervals, computed once per access rather than per byte.
struct Who {
  int t, w, l;
  uint32_t P, wp, warp_bit, lane_bit;
};
inline Who who_now() {
  const int t = g_ctx.tid, w = warp_of(t);
  return {t, w, lane_of(t), g_ctx.phase, g_ctx.warp_phase[w], 1u << (w & 31), 1u << lane_of(t)};
}

[[noreturn]] __attribute__((noinline, cold)) void async_read(const Cell& c, uintptr_t addr, int32_t pc) {
  report("read of " + describe_address(addr) + " at " + source_line(pc) + " while the cp.async that " +
         describe_thread(c.w_tid) + " issued to it at " + source_line(c.w_pc) +
         " is still in flight (no cp.async.wait_group for it yet)");
}

inline __attribute__((always_inline)) void on_read(Cell& c, const Who& me, uintptr_t addr, int32_t pc, bool atomic) {
  const int t = me.t, w = me.w;
  const uint32_t P = me.P, wp = me.wp;
  // The common case: nobody wrote the byte in this interval and the read summary already counts this
  // thread (its warp, and for the first reader's warp its lane in this warp interval): nothing to
  // check or change (the sample readers keep the first two).
  if (c.r_phase == P && c.w_phase != P && !(c.w_flags & kAsyncPending) && !atomic && (c.r_warps & me.warp_bit) &&
      (warp_of(c.r_tid[0]) != w || (c.r_wphase == wp && (c.r_lanes & me.lane_bit)))) {
    return;
  }
  if ((c.w_flags & kAsyncPending) && c.w_phase >= g_ctx.block_first_phase && !atomic) async_read(c, addr, pc);
  if (c.w_phase == P && c.w_tid != t && !(atomic && (c.w_flags & kAtomic)) &&
      (warp_of(c.w_tid) != w || c.w_wphase == wp)) {
    race("read after write", addr, c.w_tid, c.w_pc, "writes", pc, "reads");
  }
  if (c.w_phase == P && !atomic && (c.w_flags & kManyAtomic)) {
    race("read after atomic", addr, c.w_tid2, c.w_pc2, "atomically writes", pc, "reads");
  }
  if (atomic) return;  // an atomic read never conflicts with a later atomic: not summarised
  const uint32_t bit = me.warp_bit;
  if (c.r_phase != P) {
    c.r_phase = P;
    c.r_warps = bit;
    c.r_wphase = wp;
    c.r_lanes = me.lane_bit;
    c.r_tid[0] = uint16_t(t);
    c.r_pc[0] = pc;
    c.r_tid[1] = kNoThread;
    return;
  }
  c.r_warps |= bit;
  if (w == warp_of(c.r_tid[0])) {
    if (c.r_wphase != wp) { c.r_wphase = wp; c.r_lanes = 0; }
    c.r_lanes |= me.lane_bit;
  }
  if (t != c.r_tid[0] && c.r_tid[1] == kNoThread) { c.r_tid[1] = uint16_t(t); c.r_pc[1] = pc; }
}

inline __attribute__((always_inline)) void on_write(Cell& c, const Who& me, uintptr_t addr, int32_t pc, uint8_t flags) {
  const int t = me.t, w = me.w, l = me.l;
  const uint32_t P = me.P, wp = me.wp;
  const bool atomic = flags & kAtomic;
  const bool unordered = c.w_phase == P && c.w_tid != t && (warp_of(c.w_tid) != w || c.w_wphase == wp);
  if (unordered && !(atomic && (c.w_flags & kAtomic))) {
    race("write after write", addr, c.w_tid, c.w_pc, "writes", pc, "writes");
  }
  if (c.w_phase == P && !atomic && (c.w_flags & kManyAtomic)) {
    race("write after atomic", addr, c.w_tid2, c.w_pc2, "atomically writes", pc, "writes");
  }
  if (atomic && c.w_phase == P && (c.w_flags & kAtomic)) {
    // Atomic after atomic: no conflict, but remember another thread's so a plain access later still
    // meets one it is unordered with.
    if (c.w_flags & kManyAtomic) flags |= kManyAtomic;
    else if (unordered) { flags |= kManyAtomic; c.w_tid2 = c.w_tid; c.w_pc2 = c.w_pc; }
  }
  if (c.r_phase == P) {
    const uint32_t bit = 1u << (w & 31);
    const int first_warp = warp_of(c.r_tid[0]);
    const bool other_warps = (c.r_warps & ~bit) != 0;
    const bool same_warp_lanes = first_warp == w && c.r_wphase == wp && (c.r_lanes & ~(1u << l)) != 0;
    if (other_warps || same_warp_lanes) {
      // A sample reader that conflicts, for the report (the summary is exact; the samples may not be).
      int who = -1;
      int32_t who_pc = 0;
      for (int i = 0; i < 2; ++i) {
        const int r = c.r_tid[i];
        if (r == kNoThread || r == t) continue;
        if (warp_of(r) != w || (first_warp == w && c.r_wphase == wp && (c.r_lanes >> lane_of(r) & 1u))) {
          who = r;
          who_pc = c.r_pc[i];
          break;
        }
      }
      if (who < 0) {
        // The summary says which: a lane of this warp, or some thread of another warp.
        if (same_warp_lanes) who = w * 32 + __builtin_ctz(c.r_lanes & ~(1u << l));
        else who = (__builtin_ctz(c.r_warps & ~bit)) * 32;
      }
      race("write after read", addr, who, who_pc, who_pc ? "reads" : "(or a lane of its warp) reads", pc, "writes");
    }
  }
  c.w_phase = P;
  c.w_wphase = wp;
  c.w_pc = pc;
  c.w_tid = uint16_t(t);
  c.w_flags = flags;
  c.r_phase = 0;  // later writers are ordered after these reads iff after this write (or conflict with it)
}

inline bool active() { return g_ctx.in_block && g_ctx.tid >= 0 && g_ctx.enabled; }

void access(const void* p, size_t bytes, bool write, uint8_t flags, const void* pc) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  Cell* c = nullptr;
  Shadow* s = nullptr;
  if (a >= g_ctx.smem_lo && a + bytes <= g_ctx.smem_hi) c = &g_smem_cells[a - g_ctx.smem_lo];
  else if (a >= g_ctx.stack_lo && a < g_ctx.stack_hi) return;
  else if (!(s = shadow_for(a, bytes, write))) return;
  const int32_t packed = pack_pc(pc);
  const Who me = who_now();
  // Device memory: one page lookup unless the access straddles two pages.
  if (s && ((a - s->lo) >> kPageBits) == ((a + bytes - 1 - s->lo) >> kPageBits)) { c = s->at(a); s = nullptr; }
  for (size_t i = 0; i < bytes; ++i) {
    Cell& cell = c ? c[i] : *s->at(a + i);
    if (write) on_write(cell, me, a + i, packed, flags);
    else on_read(cell, me, a + i, packed, flags & kAtomic);
  }
}

}  // namespace

void begin_launch(size_t smem_bytes) {
  if (g_smem_cells.size() < smem_bytes) g_smem_cells.resize(smem_bytes);
  g_hot.clear();
}

void track_allocation(const void* base, size_t bytes) {
  const uintptr_t b = reinterpret_cast<uintptr_t>(base);
  auto& s = g_global[b];
  if (!s || s->hi - s->lo != bytes) {
    s = std::make_unique<Shadow>();
    s->lo = b;
    s->hi = b + bytes;
    s->pages.resize((bytes + kPage - 1) >> kPageBits);
    g_hot.clear();  // may hold the replaced shadow
  }
  if (std::find(g_hot.begin(), g_hot.end(), s.get()) == g_hot.end()) g_hot.push_back(s.get());
}

void forget_allocation(const void* base) {
  auto it = g_global.find(reinterpret_cast<uintptr_t>(base));
  if (it == g_global.end()) return;
  g_hot.erase(std::remove(g_hot.begin(), g_hot.end(), it->second.get()), g_hot.end());
  g_global.erase(it);
}

void record(const void* addr, size_t bytes, bool write, const void* pc) {
  if (active()) access(addr, bytes, write, 0, pc);
}
void record_atomic(const void* addr, size_t bytes, bool write, const void* pc) {
  if (active()) access(addr, bytes, write, kAtomic, pc);
}

void cp_async_issued(const void* dst, size_t bytes, const void* pc) {
  if (active()) access(dst, bytes, true, kAsyncPending, pc);
}
void cp_async_landed(const void* dst, size_t bytes, const void* pc) {
  if (active()) access(dst, bytes, true, 0, pc);
}

}  // namespace glm::harness::race

namespace glm::harness {
void atomic_access(const void* p, size_t bytes, const void* pc) { race::record_atomic(p, bytes, true, pc); }
}  // namespace glm::harness

// ---------------------------------------------------------------------------------------------
// The entry points -fsanitize=thread code calls (ABI of the TSan runtime's interface, which this
// replaces). Plain accesses record; atomics do the operation and record it as an atomic access.
// ---------------------------------------------------------------------------------------------
using glm::harness::race::g_ctx;

namespace {
inline void plain(const void* p, size_t n, bool write, const void* pc) { glm::harness::race::record(p, n, write, pc); }
}  // namespace

#define GLM_RACE_ACCESS(n)                                                                                      \
  extern "C" void __tsan_read##n(void* p) { plain(p, n, false, __builtin_return_address(0)); }                  \
  extern "C" void __tsan_write##n(void* p) { plain(p, n, true, __builtin_return_address(0)); }                  \
  extern "C" void __tsan_unaligned_read##n(void* p) { plain(p, n, false, __builtin_return_address(0)); }        \
  extern "C" void __tsan_unaligned_write##n(void* p) { plain(p, n, true, __builtin_return_address(0)); }
GLM_RACE_ACCESS(1)
GLM_RACE_ACCESS(2)
GLM_RACE_ACCESS(4)
GLM_RACE_ACCESS(8)
GLM_RACE_ACCESS(16)
#undef GLM_RACE_ACCESS

extern "C" void __tsan_read_range(void* p, unsigned long n) { plain(p, n, false, __builtin_return_address(0)); }
extern "C" void __tsan_write_range(void* p, unsigned long n) { plain(p, n, true, __builtin_return_address(0)); }
// Clang turns memcpy/memset/memmove in instrumented code into these (g++ reports them as ranges).
extern "C" void* __tsan_memcpy(void* d, const void* s, unsigned long n) {
  plain(s, n, false, __builtin_return_address(0));
  plain(d, n, true, __builtin_return_address(0));
  return __builtin_memcpy(d, s, n);
}
extern "C" void* __tsan_memmove(void* d, const void* s, unsigned long n) {
  plain(s, n, false, __builtin_return_address(0));
  plain(d, n, true, __builtin_return_address(0));
  return __builtin_memmove(d, s, n);
}
extern "C" void* __tsan_memset(void* d, int v, unsigned long n) {
  plain(d, n, true, __builtin_return_address(0));
  return __builtin_memset(d, v, n);
}
extern "C" void __tsan_init() {}
extern "C" void __tsan_func_entry(void*) {}
extern "C" void __tsan_func_exit() {}
extern "C" void __tsan_vptr_update(void**, void*) {}
extern "C" void __tsan_vptr_read(void**) {}
extern "C" void __tsan_atomic_thread_fence(int) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
extern "C" void __tsan_atomic_signal_fence(int) { __atomic_signal_fence(__ATOMIC_SEQ_CST); }

// Atomics: the operation itself (sequentially consistent whatever order was asked: the harness runs
// one fiber at a time), recorded as an atomic read (load) or an atomic write (anything that stores).
#define GLM_RACE_REC(write) \
  glm::harness::race::record_atomic(const_cast<const void*>(static_cast<const volatile void*>(a)), sizeof(*a), write, __builtin_return_address(0))
#define GLM_RACE_RMW(n, T, name, op)                                              \
  extern "C" T __tsan_atomic##n##_##name(volatile T* a, T v, int) {               \
    GLM_RACE_REC(true);                                                           \
    return op(a, v, __ATOMIC_SEQ_CST);                                            \
  }
#define GLM_RACE_ATOMICS(n, T)                                                                        \
  extern "C" T __tsan_atomic##n##_load(const volatile T* a, int) {                                    \
    GLM_RACE_REC(false);                                                                              \
    return __atomic_load_n(a, __ATOMIC_SEQ_CST);                                                      \
  }                                                                                                   \
  extern "C" void __tsan_atomic##n##_store(volatile T* a, T v, int) {                                 \
    GLM_RACE_REC(true);                                                                               \
    __atomic_store_n(a, v, __ATOMIC_SEQ_CST);                                                         \
  }                                                                                                   \
  GLM_RACE_RMW(n, T, exchange, __atomic_exchange_n)                                                   \
  GLM_RACE_RMW(n, T, fetch_add, __atomic_fetch_add)                                                   \
  GLM_RACE_RMW(n, T, fetch_sub, __atomic_fetch_sub)                                                   \
  GLM_RACE_RMW(n, T, fetch_and, __atomic_fetch_and)                                                   \
  GLM_RACE_RMW(n, T, fetch_or, __atomic_fetch_or)                                                     \
  GLM_RACE_RMW(n, T, fetch_xor, __atomic_fetch_xor)                                                   \
  GLM_RACE_RMW(n, T, fetch_nand, __atomic_fetch_nand)                                                 \
  extern "C" int __tsan_atomic##n##_compare_exchange_strong(volatile T* a, T* c, T v, int, int) {     \
    GLM_RACE_REC(true);                                                                               \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);           \
  }                                                                                                   \
  extern "C" int __tsan_atomic##n##_compare_exchange_weak(volatile T* a, T* c, T v, int, int) {       \
    GLM_RACE_REC(true);                                                                               \
    return __atomic_compare_exchange_n(a, c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);           \
  }                                                                                                   \
  extern "C" T __tsan_atomic##n##_compare_exchange_val(volatile T* a, T c, T v, int, int) {           \
    GLM_RACE_REC(true);                                                                               \
    __atomic_compare_exchange_n(a, &c, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);                 \
    return c;                                                                                         \
  }
GLM_RACE_ATOMICS(8, unsigned char)
GLM_RACE_ATOMICS(16, unsigned short)
GLM_RACE_ATOMICS(32, unsigned int)
GLM_RACE_ATOMICS(64, unsigned long long)
#undef GLM_RACE_ATOMICS
#undef GLM_RACE_RMW
#undef GLM_RACE_REC
