// MoE token grouping for the prefill expert GEMMs: from expert_ids [T, k] builds, on device,
//   counts[e], offsets[e] (exclusive prefix, offsets[E] = valid pairs), tile_offsets[e] (first
//   kMoeTileRows-row tile of expert e; tile_offsets[E] = tiles in all), slot_pair[slot] (the pair
//   t * k + j stored at each slot, experts in order, pairs of one expert in increasing index) and
//   pair_slot[pair] (its inverse; -1 for an id outside [0, E), which is skipped).
// The order inside an expert is the pair order — a stable counting sort, not an atomic cursor — so
// every later stage (and the per-token combine) is deterministic run to run.
//
// One block of 512 threads: integer counts (shared atomics: the result does not depend on their
// order), a serial prefix over E <= 1024 in one thread, then the pairs in chunks of 512, each thread
// ranking its pair among the lower threads of the chunk with the same expert (512 shared reads per
// thread per chunk: ~16k for a 2048-token prefill with top-8, tens of microseconds; a warp-match
// version is the obvious speed-up if it ever shows in a profile).
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 512;
constexpr int kMaxExperts = 1024;

// ptxas: hot moe_align_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) moe_align_kernel(int32_t* counts, int32_t* offsets, int32_t* tile_offsets,
                                                            int32_t* slot_pair, int32_t* pair_slot, const int32_t* ids,
                                                            int pairs, int E) {
  GLM_SHARED(int, cnt, kMaxExperts);
  GLM_SHARED(int, cursor, kMaxExperts);
  GLM_SHARED(int, chunk_e, kThreads);
  const int tid = int(threadIdx.x);
  for (int e = tid; e < E; e += kThreads) cnt[e] = 0;
  __syncthreads();
  for (int i = tid; i < pairs; i += kThreads) {
    const int e = ids[i];
    if (e >= 0 && e < E) atomicAdd(&cnt[e], 1);
  }
  __syncthreads();
  if (tid == 0) {
    int off = 0, tiles = 0;
    for (int e = 0; e < E; ++e) {
      counts[e] = cnt[e];
      offsets[e] = off;
      tile_offsets[e] = tiles;
      cursor[e] = off;
      off += cnt[e];
      tiles += (cnt[e] + int(kMoeTileRows) - 1) / int(kMoeTileRows);
    }
    offsets[E] = off;
    tile_offsets[E] = tiles;
  }
  __syncthreads();  // mutant-exempt: cursor[] is read only inside the chunk loop, after its first barrier (line 58); without a chunk nothing reads it
  for (int base = 0; base < pairs; base += kThreads) {
    const int i = base + tid;
    int e = i < pairs ? ids[i] : -1;
    if (e >= E) e = -1;
    chunk_e[tid] = e;
    __syncthreads();
    int rank = 0;
    bool last = true;
    if (e >= 0) {
      for (int j = 0; j < kThreads; ++j) {
        if (chunk_e[j] != e) continue;
        if (j < tid) ++rank;
        else if (j > tid) last = false;
      }
      const int slot = cursor[e] + rank;
      slot_pair[slot] = i;
      pair_slot[i] = slot;
    } else if (i < pairs) {
      pair_slot[i] = -1;
    }
    __syncthreads();  // every thread of the chunk has read cursor[] before the last ones advance it
    if (e >= 0 && last) cursor[e] += rank + 1;
    __syncthreads();  // mutant-exempt: chunk_e reads end at line 73's barrier and the next chunk reads cursor[] only after line 58's
  }
}

}  // namespace

Status moe_align(Stream stream, const MoeAlignOut& out, const int32_t* expert_ids, int64_t n_tokens, int64_t top_k,
                 int64_t n_experts) {
  const char* op = "moe_align";
  if (!out.counts || !out.offsets || !out.tile_offsets || !out.slot_pair || !out.pair_slot || !expert_ids)
    return detail::invalid(op, "null pointer");
  if (n_experts < 1 || n_experts > kMaxExperts) return detail::invalid(op, "n_experts must be in [1, 1024]");
  if (n_tokens < 0 || top_k < 1 || n_tokens * top_k > (int64_t(1) << 30)) return detail::invalid(op, "bad n_tokens / top_k");
  return detail::launched(op, GLM_LAUNCH(moe_align_kernel, dim3(1), dim3(kThreads), 0, detail::to_stream(stream.handle),
                                         out.counts, out.offsets, out.tile_offsets, out.slot_pair, out.pair_slot, expert_ids,
                                         int(n_tokens * top_k), int(n_experts)));
}

}  // namespace glm::cuda
