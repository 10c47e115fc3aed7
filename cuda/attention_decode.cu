// Decode attention (one query token per sequence) over the paged KV cache, split along the sequence
// (flash-decoding) with an exact combine, GQA-aware: a block owns one (sequence, kv head, chunk) and
// every query head of that kv head's group, so each K/V row crosses from memory once per group
// instead of once per query head (12x fewer bytes for GLM-4.5's 96/8 heads).
//
// Per block, tiles of kTile positions stream through shared memory with cp.async (K and V in two
// groups, so scores start while V is still in flight). For each tile and head g:
//   s_j = (q_g * scale) · k_j;  m' = max(m, max_j s_j);  p_j = exp(s_j - m');
//   l = l * exp(m - m') + sum_j p_j;  o = o * exp(m - m') + sum_j p_j v_j.
// The chunk's normalised o/l and (m, l) go to the workspace; the combine kernel weighs chunk c by
// exp(m_c - M) * l_c, which reproduces the single-pass softmax exactly (up to fp32 rounding).
// The lengths are read on the device; max_len only sizes the chunks, so a caller may pass the page
// table's capacity (the CUDA backend does, for graph capture): chunks past a sequence's end exit at once.
//
// KV element types (kv_rows.cuh): F32 tiles are copied straight into the fp32 K/V tiles; BF16 and FP8
// tiles land raw in a staging area (plus FP8's row scales) and are decoded into the same fp32 tiles, so
// the scores, softmax and weighted sum are the F32 code on the decoded values. The F32 instantiation is
// the kernel as it was before the narrow types, instruction for instruction.
#include "common.cuh"
#include "kv_rows.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;      // positions per tile; == warpSize: the softmax step gives one lane per position
constexpr int kPad = 4;        // K rows padded by 16 bytes: row-parallel dot products hit different banks
constexpr int kMaxGroup = 16;  // query heads per kv head
constexpr int kMaxHeadDim = 256;
static_assert(kTile == 32, "the softmax step maps one lane to one position");

struct SmemLayout {
  int q, k, v, p, o, m, l, alpha, raw, sc, total;  // float offsets
};
// raw_row_bytes: 0 for F32 pools; else one raw row's bytes (the K and V staging: kTile rows each, then
// FP8's 2 x kTile scales). Offsets stay multiples of 4 floats (16-byte cp.async destinations).
GLM_HOST_DEVICE SmemLayout smem_layout(int group, int head_dim, int raw_row_bytes = 0, bool scales = false) {
  SmemLayout s;
  s.q = 0;
  s.k = s.q + group * head_dim;
  s.v = s.k + kTile * (head_dim + kPad);
  s.p = s.v + kTile * head_dim;
  s.o = s.p + group * kTile;
  s.m = s.o + group * head_dim;
  s.l = s.m + kMaxGroup;
  s.alpha = s.l + kMaxGroup;
  s.raw = s.alpha + kMaxGroup;
  s.sc = s.raw + 2 * kTile * raw_row_bytes / 4;
  s.total = s.sc + (scales ? 2 * kTile : 0);
  return s;
}

// ptxas: hot attention_split_kernel
template <class K>  // kv::Tiles<type, cp.async piece>
GLM_KERNEL void GLM_LAUNCH_BOUNDS_MIN(kThreads, K::kMinBlocks) attention_split_kernel(
    float* part_o, float* part_ml, const float* q, const void* pool_v, const float* scales, const int32_t* page_table,
    const int32_t* seq_lens, int n_heads, int n_kv_heads, int head_dim, int page_tokens, int pages_per_seq,
    int n_splits, int chunk, float scale, int first_key) {
  GLM_DYNAMIC_SHARED(float, smem);
  const int split = int(blockIdx.x), kvh = int(blockIdx.y), b = int(blockIdx.z);
  const int group = n_heads / n_kv_heads;
  constexpr KvElem T = K::T;
  constexpr bool kRaw = T != KvElem::F32;
  const int row_bytes = head_dim * kv::Elem<T>::kBytes;
  const SmemLayout L = smem_layout(group, head_dim, kRaw ? row_bytes : 0, T == KvElem::FP8);
  float* q_s = smem + L.q;
  float* k_s = smem + L.k;
  float* v_s = smem + L.v;
  float* p_s = smem + L.p;
  float* o_s = smem + L.o;
  float* m_s = smem + L.m;
  float* l_s = smem + L.l;
  float* alpha_s = smem + L.alpha;
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int len = seq_lens[b];
  const int begin = max(split * chunk, first_key);  // keys below first_key are not attended to
  const int end = min(len, split * chunk + chunk);
  if (begin >= end) {
    // A chunk past the sequence's end (the grid is sized from the page table's capacity so a captured
    // graph's launch does not depend on the lengths) or wholly below first_key: an empty partial, l = 0,
    // which the combine skips without reading part_o. Uniform per block, so no barrier is abandoned.
    for (int g = tid; g < group; g += kThreads) {
      const int64_t h = int64_t(b) * n_heads + kvh * group + g;
      part_ml[(h * n_splits + split) * 2] = -INFINITY;
      part_ml[(h * n_splits + split) * 2 + 1] = 0.0f;
    }
    return;
  }

  for (int i = tid; i < group * head_dim; i += kThreads) {
    q_s[i] = q[(int64_t(b) * n_heads + kvh * group) * head_dim + i] * scale;  // the group's heads are adjacent
    o_s[i] = 0.0f;
  }
  for (int g = tid; g < group; g += kThreads) {
    m_s[g] = -INFINITY;
    l_s[g] = 0.0f;
  }
  __syncthreads();  // mutant-exempt: the tile loop runs at least once (begin < end) and its first barrier orders these writes before any read

  const int row16 = head_dim / 4;  // 16-byte pieces per row
  const int64_t head_floats = int64_t(page_tokens) * head_dim;
  const int64_t page_floats = 2 * int64_t(n_kv_heads) * head_floats;
  const int32_t* pages = page_table + int64_t(b) * pages_per_seq;
  const float* pool = static_cast<const float*>(pool_v);
  uint8_t* raw = reinterpret_cast<uint8_t*>(smem + L.raw);  // narrow types: [K|V][kTile][row_bytes]
  float* sc = smem + L.sc;                                  // FP8: [K|V][kTile] row scales
  for (int t0 = begin; t0 < end; t0 += kTile) {
    // Issue the tile's K (group 1) and V (group 2) copies; rows past `end` are zero-filled, so V rows
    // that get probability 0 hold 0 rather than stale data (0 * NaN would poison the sum).
    for (int which = 0; which < 2; ++which) {
      if constexpr (kRaw) {
        kv::issue_raw_rows<T, K::kPiece>(raw + which * kTile * row_bytes, sc + which * kTile, static_cast<const uint8_t*>(pool_v), scales,
                              pages, which, kvh, t0, t0, end - 1, kTile, n_kv_heads, page_tokens, row_bytes, tid, kThreads);
      } else {
        for (int i = tid; i < kTile * row16; i += kThreads) {
          const int j = i / row16, c = (i % row16) * 4, pos = t0 + j;
          const bool valid = pos < end;
          const float* src = pool;
          if (valid) {
            src = pool + int64_t(pages[pos / page_tokens]) * page_floats + which * int64_t(n_kv_heads) * head_floats +
                  kvh * head_floats + int64_t(pos % page_tokens) * head_dim + c;
          }
          float* dst = which == 0 ? k_s + j * (head_dim + kPad) + c : v_s + j * head_dim + c;
          dev::cp_async_16(dst, src, valid ? 16 : 0);
        }
      }
      dev::cp_async_commit();
    }
    dev::cp_async_wait<1>();  // this thread's K pieces have landed
    __syncthreads();          // ... and everyone's
    if constexpr (kRaw) {
      kv::decode_rows<T>(k_s, head_dim + kPad, raw, sc, kTile, head_dim, row_bytes, tid, kThreads);
      __syncthreads();
    }

    for (int i = tid; i < group * kTile; i += kThreads) {
      const int g = i / kTile, j = i % kTile;
      float s = -INFINITY;
      if (t0 + j < end) {
        const float* qg = q_s + g * head_dim;
        const float* kj = k_s + j * (head_dim + kPad);
        s = 0.0f;
        for (int c = 0; c < head_dim; ++c) s += qg[c] * kj[c];
      }
      p_s[i] = s;
    }
    __syncthreads();  // mutant-exempt: kTile == 32 and kThreads == 32 * kWarps, so the thread that writes p_s[g * kTile + j] is lane j of warp g % kWarps, the one that reads it

    for (int g = warp; g < group; g += kWarps) {
      const float s = p_s[g * kTile + lane];
      const float m_old = m_s[g];
      const float m_new = fmaxf(m_old, dev::warp_max(s));  // finite: position t0 < end is in the tile
      const float p = __expf(s - m_new);                   // masked: exp(-inf) = 0
      const float sum = dev::warp_sum(p);
      p_s[g * kTile + lane] = p;
      if (lane == 0) {
        const float alpha = __expf(m_old - m_new);  // first tile: exp(-inf) = 0
        alpha_s[g] = alpha;
        l_s[g] = l_s[g] * alpha + sum;
        m_s[g] = m_new;
      }
    }
    dev::cp_async_wait<0>();
    __syncthreads();
    if constexpr (kRaw) {
      kv::decode_rows<T>(v_s, head_dim, raw + kTile * row_bytes, sc + kTile, kTile, head_dim, row_bytes, tid, kThreads);
      __syncthreads();
    }

    for (int i = tid; i < group * head_dim; i += kThreads) {
      const int g = i / head_dim, c = i % head_dim;
      const float* pg = p_s + g * kTile;
      float acc = o_s[i] * alpha_s[g];
      for (int j = 0; j < kTile; ++j) acc += pg[j] * v_s[j * head_dim + c];
      o_s[i] = acc;
    }
    __syncthreads();  // the next tile overwrites k_s, v_s and p_s
  }

  for (int i = tid; i < group * head_dim; i += kThreads) {
    const int g = i / head_dim, c = i % head_dim;
    const int64_t h = int64_t(b) * n_heads + kvh * group + g;
    const float l = l_s[g];
    part_o[(h * n_splits + split) * head_dim + c] = l > 0.0f ? o_s[i] / l : 0.0f;
  }
  for (int g = tid; g < group; g += kThreads) {
    const int64_t h = int64_t(b) * n_heads + kvh * group + g;
    part_ml[(h * n_splits + split) * 2] = m_s[g];
    part_ml[(h * n_splits + split) * 2 + 1] = l_s[g];
  }
}

// ptxas: hot attention_combine_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) attention_combine_kernel(float* out, const float* part_o,
                                                                     const float* part_ml, int n_heads, int head_dim,
                                                                     int n_splits) {
  const int64_t h = int64_t(blockIdx.y) * n_heads + blockIdx.x;  // (sequence, head)
  const float* ml = part_ml + h * n_splits * 2;
  float m_max = -INFINITY;
  for (int s = 0; s < n_splits; ++s) m_max = fmaxf(m_max, ml[2 * s]);
  float denom = 0.0f;
  for (int s = 0; s < n_splits; ++s) {
    if (ml[2 * s + 1] > 0.0f) denom += __expf(ml[2 * s] - m_max) * ml[2 * s + 1];
  }
  for (int c = int(threadIdx.x); c < head_dim; c += int(blockDim.x)) {
    float acc = 0.0f;
    for (int s = 0; s < n_splits; ++s) {
      if (ml[2 * s + 1] > 0.0f) acc += __expf(ml[2 * s] - m_max) * ml[2 * s + 1] * part_o[(h * n_splits + s) * head_dim + c];
    }
    out[h * head_dim + c] = denom > 0.0f ? acc / denom : 0.0f;  // an empty sequence attends to nothing
  }
}

int64_t chunk_for(const DecodeAttentionArgs& a) {
  const int64_t per = (a.max_len + a.n_splits - 1) / a.n_splits;
  return (per + kTile - 1) / kTile * kTile;
}

template <class K>
cudaError_t launch_split(const dim3& grid, size_t smem, cudaStream_t s, float* part_o, float* part_ml, const float* q,
                         const void* pool, const float* scales, const int32_t* page_table, const int32_t* seq_lens,
                         const DecodeAttentionArgs& a, const KvLayout& L, int chunk) {
  if (smem > 48 * 1024) {
    // Above 48 KiB a block must opt in (sm_80: up to 163 KiB, sm_90: 227 KiB); idempotent and cheap.
    const cudaError_t e = cudaFuncSetAttribute(attention_split_kernel<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  return GLM_LAUNCH(attention_split_kernel<K>, grid, dim3(kThreads), smem, s, part_o, part_ml, q, pool, scales, page_table,
                    seq_lens, int(a.n_heads), int(L.n_kv_heads), int(L.head_dim), int(L.page_tokens), int(a.pages_per_seq),
                    int(a.n_splits), chunk, a.scale, int(a.first_key));
}

}  // namespace

int64_t attention_decode_workspace_floats(const KvLayout& layout, const DecodeAttentionArgs& a) {
  return a.batch * a.n_heads * a.n_splits * (layout.head_dim + 2);
}

Status attention_decode(Stream stream, float* out, const float* q, const void* pool, const float* scales, const KvLayout& L,
                        const int32_t* page_table, const int32_t* seq_lens, const DecodeAttentionArgs& a,
                        float* workspace, int64_t workspace_floats) {
  constexpr const char* op = "attention_decode";
  if (!out || !q || !pool || !page_table || !seq_lens || !workspace) return detail::invalid(op, "null pointer");
  if (L.type == KvElem::FP8 && !scales) return detail::invalid(op, "an FP8 pool needs its scales");
  if (a.batch <= 0 || a.n_heads <= 0 || L.n_kv_heads <= 0 || a.n_heads % L.n_kv_heads) return detail::invalid(op, "n_heads must be a positive multiple of n_kv_heads");
  if (a.n_heads / L.n_kv_heads > kMaxGroup) return detail::invalid(op, "more than 16 query heads per kv head");
  if (L.head_dim <= 0 || L.head_dim % 4 || L.head_dim > kMaxHeadDim) return detail::invalid(op, "head_dim must be a multiple of 4 and <= 256");
  if (L.page_tokens <= 0 || a.pages_per_seq <= 0 || a.max_len <= 0 || a.max_len > a.pages_per_seq * L.page_tokens) return detail::invalid(op, "max_len exceeds the page table");
  if (a.n_splits < 1 || a.n_splits > 1024) return detail::invalid(op, "n_splits must be in [1, 1024]");
  if (a.batch > 65535 || L.n_kv_heads > 65535 || a.max_len > 0x3fffffff || a.pages_per_seq > 0x7fffffff) return detail::invalid(op, "dimensions too large");
  if (!(a.scale > 0.0f)) return detail::invalid(op, "scale must be > 0");
  if (a.first_key < 0 || a.first_key > a.max_len) return detail::invalid(op, "first_key must be in [0, max_len]");
  if (!detail::aligned(pool, 16)) return detail::invalid(op, "pool must be 16-byte aligned");
  if (workspace_floats < attention_decode_workspace_floats(L, a)) return detail::invalid(op, "workspace too small");

  const int group = int(a.n_heads / L.n_kv_heads);
  const bool raw = L.type != KvElem::F32;
  const size_t smem =
      size_t(smem_layout(group, int(L.head_dim), raw ? int(L.row_bytes()) : 0, L.type == KvElem::FP8).total) * sizeof(float);
  const cudaStream_t s = detail::to_stream(stream.handle);
  float* part_o = workspace;
  float* part_ml = workspace + a.batch * a.n_heads * a.n_splits * L.head_dim;
  const dim3 grid(unsigned(a.n_splits), unsigned(L.n_kv_heads), unsigned(a.batch));
  const int chunk = int(chunk_for(a));
  cudaError_t err = kv::with_tiles(L.type, L.row_bytes() % 16 == 0, [&](auto tiles) {
    return launch_split<decltype(tiles)>(grid, smem, s, part_o, part_ml, q, pool, scales, page_table, seq_lens, a, L, chunk);
  });
  if (err != cudaSuccess) return detail::launched(op, err);
  err = GLM_LAUNCH(attention_combine_kernel, dim3(unsigned(a.n_heads), unsigned(a.batch)), dim3(kThreads), 0, s, out,
                   part_o, part_ml, int(a.n_heads), int(L.head_dim), int(a.n_splits));
  return detail::launched(op, err);
}

}  // namespace glm::cuda
