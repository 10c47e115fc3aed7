// Causal attention for a step's rows over the paged KV cache (keys already appended): row r is
// (sequence row_seq[r], position row_pos[r]) and attends to positions 0..row_pos[r] of its sequence —
// prefill chunks, mixed batches of long prompts and single decode tokens alike.
//
// A block owns a tile of up to `rows_per_block` consecutive rows and one kv head. Consecutive rows of
// the same sequence form a segment; for each segment the block streams that sequence's K/V tiles
// (kTile positions, cp.async, K and V in two groups as in attention_decode) up to the segment's largest
// position once, and every (row, query head of the kv group) of the segment uses them — the GQA group
// and the query tile share each K/V load. Per query, an online softmax exactly like attention_decode's:
//   s_j = (q * scale) · k_j (-inf past the row's position);  m' = max(m, max_j s_j);  p_j = exp(s_j - m');
//   l = l * exp(m - m') + sum_j p_j;  o = o * exp(m - m') + sum_j p_j v_j;  out = o / l.
// Tile 0 always holds position 0, so m is finite after it and a tile wholly past a row's position
// leaves that row unchanged (p = 0, alpha = 1).
//
// fp32 throughout on CUDA cores — the reference-grade version; a tensor-core (mma / wgmma) flash
// kernel is the fast path still to come. Rows are best sorted by sequence (the engine's plan is), but
// any order is correct: an interleaved order only shortens the segments.
//
// KV element types as in attention_decode (kv_rows.cuh): BF16 / FP8 tiles are staged raw and decoded
// into the fp32 K/V tiles; the F32 instantiation is the kernel as before.
#include <algorithm>

#include "common.cuh"
#include "kv_rows.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kTile = 32;  // positions per K/V tile; one lane per position in the softmax step
constexpr int kPad = 4;    // K rows padded by 16 bytes
constexpr int kMaxQueries = 64;  // (row, head) queries per block
constexpr int kMaxGroup = 16;
constexpr int kMaxHeadDim = 256;

struct SmemLayout {
  int q, o, k, v, p, m, l, alpha, raw, sc, total;  // float offsets
};
// raw_row_bytes / scales: the narrow types' staging, as in attention_decode.
GLM_HOST_DEVICE SmemLayout smem_layout(int nq, int head_dim, int raw_row_bytes = 0, bool scales = false) {
  SmemLayout s;
  s.q = 0;
  s.o = s.q + nq * head_dim;
  s.k = s.o + nq * head_dim;
  s.v = s.k + kTile * (head_dim + kPad);
  s.p = s.v + kTile * head_dim;
  s.m = s.p + nq * kTile;
  s.l = s.m + kMaxQueries;
  s.alpha = s.l + kMaxQueries;
  s.raw = s.alpha + kMaxQueries;
  s.sc = s.raw + 2 * kTile * raw_row_bytes / 4;
  s.total = s.sc + (scales ? 2 * kTile : 0);
  return s;
}

// ptxas: hot attention_prefill_kernel
template <class K>  // kv::Tiles<type, cp.async piece>
GLM_KERNEL void GLM_LAUNCH_BOUNDS_MIN(kThreads, K::kMinBlocks) attention_prefill_kernel(
    float* out, const float* q, const void* pool_v, const float* scales, const int32_t* page_table, const int32_t* row_seq,
    const int32_t* row_pos, int rows, int rows_per_block, int n_heads, int n_kv_heads, int head_dim, int page_tokens,
    int pages_per_seq, float scale, int first_key) {
  GLM_DYNAMIC_SHARED(float, smem);
  GLM_SHARED(int, seg, 2);  // the current segment's end row and largest position
  const int kvh = int(blockIdx.y);
  const int group = n_heads / n_kv_heads;
  constexpr KvElem T = K::T;
  constexpr bool kRaw = T != KvElem::F32;
  const int row_bytes = head_dim * kv::Elem<T>::kBytes;
  const SmemLayout L = smem_layout(rows_per_block * group, head_dim, kRaw ? row_bytes : 0, T == KvElem::FP8);
  float* q_s = smem + L.q;
  float* o_s = smem + L.o;
  float* k_s = smem + L.k;
  float* v_s = smem + L.v;
  float* p_s = smem + L.p;
  float* m_s = smem + L.m;
  float* l_s = smem + L.l;
  float* alpha_s = smem + L.alpha;
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int r0 = int(blockIdx.x) * rows_per_block, r_end = min(rows, r0 + rows_per_block);
  const int row16 = head_dim / 4;
  const int64_t head_floats = int64_t(page_tokens) * head_dim;
  const int64_t page_floats = 2 * int64_t(n_kv_heads) * head_floats;
  const int capacity = pages_per_seq * page_tokens;
  const float* pool = static_cast<const float*>(pool_v);
  uint8_t* raw = reinterpret_cast<uint8_t*>(smem + L.raw);  // narrow types: [K|V][kTile][row_bytes]
  float* sc = smem + L.sc;                                  // FP8: [K|V][kTile] row scales

  for (int s_begin = r0; s_begin < r_end;) {  // block-uniform: every thread reads the same rows
    // Thread 0 finds the segment (rows of this sequence) and its last key; shared, so the scan's
    // registers are not live across the tile loop.
    if (tid == 0) {
      const int sq = row_seq[s_begin];
      int e = s_begin + 1, mp = -1;
      while (e < r_end && row_seq[e] == sq) ++e;
      for (int r = s_begin; r < e; ++r) mp = max(mp, min(row_pos[r], capacity - 1));
      seg[0] = e;
      seg[1] = mp;
    }
    __syncthreads();
    const int seq = row_seq[s_begin], s_end = seg[0], max_pos = seg[1];
    const int nq = (s_end - s_begin) * group;  // query qi: row s_begin + qi / group, head kvh * group + qi % group
    const int32_t* pages = page_table + int64_t(seq) * pages_per_seq;

    for (int i = tid; i < nq * head_dim; i += kThreads) {
      const int qi = i / head_dim, c = i - qi * head_dim;
      const int row = s_begin + qi / group, h = kvh * group + qi % group;
      q_s[i] = q[(int64_t(row) * n_heads + h) * head_dim + c] * scale;
      o_s[i] = 0.0f;
    }
    for (int qi = tid; qi < nq; qi += kThreads) {
      m_s[qi] = -INFINITY;
      l_s[qi] = 0.0f;
    }
    __syncthreads();  // mutant-exempt: the tile loop's first barrier orders these writes before its reads; with no tile (an all-padding segment) each thread reads back only o_s/l_s it wrote itself

    // Keys from first_key on (the MTP layer's slot 0 holds no pair): every tile starts there, so no
    // position below it is loaded or scored.
    for (int t0 = first_key; t0 <= max_pos; t0 += kTile) {
      // K (group 1) and V (group 2); positions past max_pos are zero-filled (0 * NaN would poison o).
      for (int which = 0; which < 2; ++which) {
        if constexpr (kRaw) {
          kv::issue_raw_rows<T, K::kPiece>(raw + which * kTile * row_bytes, sc + which * kTile, static_cast<const uint8_t*>(pool_v),
                                scales, pages, which, kvh, t0, t0, max_pos, kTile, n_kv_heads, page_tokens, row_bytes, tid, kThreads);
        } else {
          for (int i = tid; i < kTile * row16; i += kThreads) {
            const int j = i / row16, c = (i % row16) * 4, pos = t0 + j;
            const bool valid = pos <= max_pos;
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
      dev::cp_async_wait<1>();
      __syncthreads();
      if constexpr (kRaw) {
        kv::decode_rows<T>(k_s, head_dim + kPad, raw, sc, kTile, head_dim, row_bytes, tid, kThreads);
        __syncthreads();
      }

      for (int i = tid; i < nq * kTile; i += kThreads) {
        const int qi = i / kTile, j = i - qi * kTile;
        float s = -INFINITY;
        if (t0 + j <= row_pos[s_begin + qi / group] && t0 + j <= max_pos) {  // causal; never past the table
          const float* qq = q_s + qi * head_dim;
          const float* kj = k_s + j * (head_dim + kPad);
          s = 0.0f;
          for (int c = 0; c < head_dim; ++c) s += qq[c] * kj[c];
        }
        p_s[i] = s;
      }
      __syncthreads();  // mutant-exempt: kTile == 32 and kThreads == 32 * kWarps, so the thread that writes p_s[qi * kTile + j] is lane j of warp qi % kWarps, the one that reads it

      for (int qi = warp; qi < nq; qi += kWarps) {
        const float s = p_s[qi * kTile + lane];
        const float m_old = m_s[qi];
        const float m_new = fmaxf(m_old, dev::warp_max(s));  // finite: tile 0 holds position 0
        const float p = m_new == -INFINITY ? 0.0f : __expf(s - m_new);  // -inf only for a padding row (pos < 0)
        const float sum = dev::warp_sum(p);
        p_s[qi * kTile + lane] = p;
        if (lane == 0) {
          const float alpha = m_old == -INFINITY ? 0.0f : __expf(m_old - m_new);
          alpha_s[qi] = alpha;
          l_s[qi] = l_s[qi] * alpha + sum;
          m_s[qi] = m_new;
        }
      }
      dev::cp_async_wait<0>();
      __syncthreads();
      if constexpr (kRaw) {
        kv::decode_rows<T>(v_s, head_dim, raw + kTile * row_bytes, sc + kTile, kTile, head_dim, row_bytes, tid, kThreads);
        __syncthreads();
      }

      for (int i = tid; i < nq * head_dim; i += kThreads) {
        const int qi = i / head_dim, c = i - qi * head_dim;
        const float* pq = p_s + qi * kTile;
        float acc = o_s[i] * alpha_s[qi];
        for (int j = 0; j < kTile; ++j) acc += pq[j] * v_s[j * head_dim + c];
        o_s[i] = acc;
      }
      __syncthreads();  // the next tile overwrites k_s, v_s, p_s
    }

    // 1/l once per query (alpha_s is free now): one division per query instead of per element keeps
    // the IEEE-division slow path out of the store loop (it cost a stack frame on sm_80).
    for (int qi = tid; qi < nq; qi += kThreads) alpha_s[qi] = l_s[qi] > 0.0f ? 1.0f / l_s[qi] : 0.0f;  // padding row: zeros
    __syncthreads();
    for (int i = tid; i < nq * head_dim; i += kThreads) {
      const int qi = i / head_dim, c = i - qi * head_dim;
      const int row = s_begin + qi / group, h = kvh * group + qi % group;
      out[(int64_t(row) * n_heads + h) * head_dim + c] = o_s[i] * alpha_s[qi];
    }
    __syncthreads();  // mutant-exempt: the next segment writes q_s / o_s / m_s only after its first barrier (line 102); seg[], which thread 0 writes before that barrier, was last read before line 117's
    s_begin = s_end;
  }
}

template <class K>
cudaError_t launch(const dim3& grid, size_t smem, cudaStream_t s, float* out, const float* q, const void* pool,
                   const float* scales, const int32_t* page_table, const int32_t* row_seq, const int32_t* row_pos,
                   const PrefillAttentionArgs& a, const KvLayout& L, int rows_per_block) {
  if (smem > 48 * 1024) {  // opt in above 48 KiB (64 queries at head_dim 128: 105 KiB, + 16 KiB of BF16 staging)
    const cudaError_t e = cudaFuncSetAttribute(attention_prefill_kernel<K>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  return GLM_LAUNCH(attention_prefill_kernel<K>, grid, dim3(kThreads), smem, s, out, q, pool, scales, page_table, row_seq,
                    row_pos, int(a.rows), rows_per_block, int(a.n_heads), int(L.n_kv_heads), int(L.head_dim),
                    int(L.page_tokens), int(a.pages_per_seq), a.scale, int(a.first_key));
}

}  // namespace

Status attention_prefill(Stream stream, float* out, const float* q, const void* pool, const float* scales, const KvLayout& L,
                         const int32_t* page_table, const int32_t* row_seq, const int32_t* row_pos,
                         const PrefillAttentionArgs& a) {
  constexpr const char* op = "attention_prefill";
  if (!out || !q || !pool || !page_table || !row_seq || !row_pos) return detail::invalid(op, "null pointer");
  if (L.type == KvElem::FP8 && !scales) return detail::invalid(op, "an FP8 pool needs its scales");
  if (a.rows < 0) return detail::invalid(op, "negative rows");
  if (a.n_heads <= 0 || L.n_kv_heads <= 0 || a.n_heads % L.n_kv_heads) return detail::invalid(op, "n_heads must be a positive multiple of n_kv_heads");
  const int64_t group = a.n_heads / L.n_kv_heads;
  if (group > kMaxGroup) return detail::invalid(op, "more than 16 query heads per kv head");
  if (L.head_dim <= 0 || L.head_dim % 4 || L.head_dim > kMaxHeadDim) return detail::invalid(op, "head_dim must be a multiple of 4 and <= 256");
  if (L.page_tokens <= 0 || a.pages_per_seq <= 0) return detail::invalid(op, "bad page table shape");
  if (L.n_kv_heads > 65535 || a.rows > 0x3fffffff || a.pages_per_seq * L.page_tokens > 0x3fffffff) return detail::invalid(op, "dimensions too large");
  if (!(a.scale > 0.0f)) return detail::invalid(op, "scale must be > 0");
  if (a.first_key < 0 || a.first_key > a.pages_per_seq * L.page_tokens) return detail::invalid(op, "first_key outside the page table");
  if (!detail::aligned(pool, 16)) return detail::invalid(op, "pool must be 16-byte aligned");
  if (a.rows == 0) return Status::ok();
  const int rows_per_block = int(std::max<int64_t>(1, std::min<int64_t>(16, kMaxQueries / group)));
  const bool raw = L.type != KvElem::F32;
  const size_t smem = size_t(smem_layout(rows_per_block * int(group), int(L.head_dim), raw ? int(L.row_bytes()) : 0,
                                         L.type == KvElem::FP8).total) *
                      sizeof(float);
  const cudaStream_t s = detail::to_stream(stream.handle);
  const dim3 grid(unsigned((a.rows + rows_per_block - 1) / rows_per_block), unsigned(L.n_kv_heads));
  const cudaError_t e = kv::with_tiles(L.type, L.row_bytes() % 16 == 0, [&](auto tiles) {
    return launch<decltype(tiles)>(grid, smem, s, out, q, pool, scales, page_table, row_seq, row_pos, a, L, rows_per_block);
  });
  return detail::launched(op, e);
}

}  // namespace glm::cuda
