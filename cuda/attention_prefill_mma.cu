// Causal attention for a step's rows on tensor cores (flash attention, FA2-style): the contract of
// attention_prefill (row_seq / row_pos over the paged KV pool, any mix of sequences, padding rows
// with row_pos < 0 get zeros), with the products on mma.sync m16n8k16 bf16 and fp32 accumulation.
//
// Work split. The queries of one kv head are flattened as qi = row * group + (head % group): a block
// owns kQueries consecutive ones (rows need not align with blocks, so any group size fills the tile) and
// its kv head. Consecutive rows of one sequence form a segment; per segment the block streams that
// sequence's K/V tiles (kTile positions) up to the segment's largest position once, and all its warps
// — every query head of the GQA group, several rows — use each tile. Warp w owns queries 16w..16w+15 of
// the segment (an m16 tile) and skips tiles wholly past its rows' positions (causal skipping).
//
// Per tile: K/V rows are fetched with cp.async into a staging buffer as stored (fp32, or BF16 / FP8 with
// FP8's row scales: kv_rows.cuh; the next tile's fetch runs under this tile's math), decoded to fp32
// values (FP8: code * scale) and converted to bf16 tiles in shared memory, then per warp
//   S = Q K^T (Q and K fragments through ldmatrix);
//   s *= scale * log2(e); masked (-inf) past the row's position;
//   m' = max(m, rowmax s); p = exp2(s - m') rounded to bf16; l = l * 2^(m - m') + sum p; O = O * 2^(m-m') + P V
// (P straight from the S accumulators into A fragments, V through ldmatrix.trans). l sums the rounded
// p, so the output is an exact convex combination of the bf16 V rows up to fp32 summation. Tile 0 holds
// position 0, so every real row's m is finite after it; a row with no keys (padding, or a warp's unused
// query slots) keeps m = -inf, p = 0, l = 0 and writes zeros.
//
// Numerics. Q and K are split into bf16 hi + lo (hi = bf16(x), lo = bf16(x - hi)) and S takes three
// products, ql kh + qh kl + qh kh (ql kl < 2^-16 relative is dropped): a score error of a plain bf16
// product is ~2^-8 of sum_i |q_i k_i|, an absolute logit error that exp turns into a relative error
// of the weights and that grows with sharp (large-logit, e.g. qk-normed) attention; with the split it is
// ~2^-16 of it. That triples the S products (twice the mma work of plain bf16 overall). V and P are
// plain bf16: their rounding (<= 2^-9 relative each) moves a convex combination of V rows by at most
// 2^-8 of max |v| and averages out over keys (test_attention_prefill_mma.cc measures ~1e-3 relative).
#include <algorithm>

#include "common.cuh"
#include "kv_rows.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kQueries = 16 * kWarps;  // (row, head) queries per block
constexpr int kTile = 32;              // key positions per K/V tile
constexpr int kMaxGroup = 16;
constexpr float kLog2e = 1.4426950408889634f;

// One instantiation per head_dim and KV element type (a single template argument: GLM_LAUNCH takes one).
template <int kHeadDim, KvElem kType>
struct Cfg {
  static constexpr int kD = kHeadDim;
  static constexpr KvElem T = kType;
  static constexpr int kRowBytes = kD * kv::Elem<T>::kBytes;  // a stored K/V row: a multiple of 16 bytes for kD >= 16
  static constexpr int kRow = kD + 8;  // bf16 per row: 16-byte rows, ldmatrix phases spread over banks
  static constexpr int q = 0;                                   // bf16 [hi|lo][kQueries][kRow]
  static constexpr int k = q + 2 * kQueries * kRow * 2;         // bf16 [hi|lo][kTile][kRow]
  static constexpr int v = k + 2 * kTile * kRow * 2;            // bf16 [kTile][kRow]
  static constexpr int stage = v + kTile * kRow * 2;            // as stored: [2][kTile][kRowBytes] (K then V)
  static constexpr int sc = stage + 2 * kTile * kRowBytes;      // FP8: fp32 [2][kTile] row scales
  static constexpr int bytes = sc + (T == KvElem::FP8 ? 2 * kTile * 4 : 0);
};

GLM_DEVICE uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(dev::float_to_bf16(lo)) | uint32_t(dev::float_to_bf16(hi)) << 16;
}
// Four floats -> their bf16 (RNE) and the bf16 of the remainders (x - hi is exact in fp32): hi + lo
// holds 16 significant bits of x.
GLM_DEVICE void split_bf16x4(const float4& x, uint2& hi, uint2& lo) {
  hi = uint2{pack_bf16x2(x.x, x.y), pack_bf16x2(x.z, x.w)};
  lo = uint2{pack_bf16x2(x.x - dev::bf16x2_lo(hi.x), x.y - dev::bf16x2_hi(hi.x)),
             pack_bf16x2(x.z - dev::bf16x2_lo(hi.y), x.w - dev::bf16x2_hi(hi.y))};
}

// ptxas: hot attention_prefill_mma_kernel
template <class S>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) attention_prefill_mma_kernel(
    float* out, const float* q, const void* pool_v, const float* scales, const int32_t* page_table, const int32_t* row_seq,
    const int32_t* row_pos, int rows, int n_heads, int n_kv_heads, int page_tokens, int pages_per_seq, float scale_log2) {
  constexpr int kD = S::kD;
  constexpr KvElem T = S::T;
  constexpr int kRow = S::kRow;
  constexpr int kDSteps = kD / 16;  // k steps of S = QK^T; also pairs of d-tiles in O
  GLM_DYNAMIC_SHARED(unsigned char, smem);
  GLM_SHARED(int, seg, 2);  // the current segment's end row and largest key position
  uint16_t* q_s = reinterpret_cast<uint16_t*>(smem + S::q);
  uint16_t* k_s = reinterpret_cast<uint16_t*>(smem + S::k);
  uint16_t* v_s = reinterpret_cast<uint16_t*>(smem + S::v);
  float* stage = reinterpret_cast<float*>(smem + S::stage);  // F32 pools
  uint8_t* stage_raw = smem + S::stage;                        // BF16 / FP8 pools
  float* stage_sc = reinterpret_cast<float*>(smem + S::sc);    // FP8 row scales
  const float* pool = static_cast<const float*>(pool_v);

  const int kvh = int(blockIdx.y);
  const int group = n_heads / n_kv_heads;
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t4 = lane & 3;  // mma fragment row group and thread-in-group
  const int lm = lane >> 3, lr = lane & 7;  // ldmatrix: which matrix this lane addresses, and its row
  const int64_t total_q = int64_t(rows) * group;
  // Highest query tiles first: their rows see the most keys, and starting them early shortens the tail.
  const int q_begin = int(gridDim.x - 1 - blockIdx.x) * kQueries;
  const int q_end = int(total_q < int64_t(q_begin) + kQueries ? total_q : int64_t(q_begin) + kQueries);
  const int64_t head_floats = int64_t(page_tokens) * kD;
  const int64_t page_floats = 2 * int64_t(n_kv_heads) * head_floats;
  const int capacity = pages_per_seq * page_tokens;

  for (int s_begin = q_begin / group; s_begin * group < q_end;) {  // block-uniform segment loop
    if (tid == 0) {
      const int sq = row_seq[s_begin];
      int e = s_begin + 1, mp = -1;
      while (e * group < q_end && row_seq[e] == sq) ++e;
      for (int r = s_begin; r < e; ++r) mp = max(mp, min(row_pos[r], capacity - 1));
      seg[0] = e;
      seg[1] = mp;
    }
    __syncthreads();
    const int s_end = seg[0], max_pos = seg[1];
    const int seq = row_seq[s_begin];
    const int sq0 = max(q_begin, s_begin * group), sq1 = min(q_end, s_end * group);  // this segment's queries
    const int nq = sq1 - sq0;
    const int32_t* pages = page_table + int64_t(seq) * pages_per_seq;

    // The first tile's fetch goes out before the Q tile is built.
    auto fetch = [&](int t0) {
      if constexpr (T != KvElem::F32) {
        // K and V rows as stored (16-byte pieces: kD >= 16) and, with a row's first piece, FP8's scale;
        // one group. (Zero-filled past max_pos: a zero code times a zero scale.)
        constexpr int kPieces = S::kRowBytes / 16;
        for (int i = tid; i < 2 * kTile * kPieces; i += kThreads) {
          const int which = i / (kTile * kPieces), rem = i - which * (kTile * kPieces);
          const int j = rem / kPieces, c = (rem % kPieces) * 16, pos = t0 + j;
          const bool valid = pos <= max_pos;
          const int64_t row = valid ? kv::row_index(pages[pos / page_tokens], which, kvh, pos % page_tokens, n_kv_heads, page_tokens) : 0;
          dev::cp_async_16(stage_raw + (which * kTile + j) * S::kRowBytes + c,
                           static_cast<const uint8_t*>(pool_v) + row * S::kRowBytes + (valid ? c : 0), valid ? 16 : 0);
          if constexpr (T == KvElem::FP8) {
            if (c == 0) dev::cp_async_4(stage_sc + which * kTile + j, scales + row, valid ? 4 : 0);
          }
        }
        dev::cp_async_commit();
        return;
      }
      for (int i = tid; i < 2 * kTile * (kD / 4); i += kThreads) {
        const int which = i / (kTile * (kD / 4)), rem = i - which * (kTile * (kD / 4));
        const int j = rem / (kD / 4), c = (rem % (kD / 4)) * 4, pos = t0 + j;
        const bool valid = pos <= max_pos;  // past it: zero-filled (0 * a NaN pad would poison O)
        const float* src = pool;
        if (valid) {
          src = pool + int64_t(pages[pos / page_tokens]) * page_floats + which * int64_t(n_kv_heads) * head_floats +
                kvh * head_floats + int64_t(pos % page_tokens) * kD + c;
        }
        dev::cp_async_16(stage + (which * kTile + j) * kD + c, src, valid ? 16 : 0);
      }
      dev::cp_async_commit();
    };
    if (max_pos >= 0) fetch(0);

    // Q tile as bf16 hi + lo (unscaled: the scale is applied to S in fp32); slots past nq are zeros.
    for (int i = tid; i < kQueries * (kD / 4); i += kThreads) {
      const int slot = i / (kD / 4), c = (i % (kD / 4)) * 4;
      uint2 hi{0u, 0u}, lo{0u, 0u};
      if (slot < nq) {
        const int qi = sq0 + slot, row = qi / group, h = kvh * group + qi % group;
        split_bf16x4(*reinterpret_cast<const float4*>(q + (int64_t(row) * n_heads + h) * kD + c), hi, lo);
      }
      *reinterpret_cast<uint2*>(q_s + slot * kRow + c) = hi;
      *reinterpret_cast<uint2*>(q_s + (kQueries + slot) * kRow + c) = lo;
    }
    __syncthreads();  // mutant-exempt: q_s is read only inside the tile loop, after its first barrier (line 189)

    // This thread's two query rows (g, g + 8 of the warp's m16 tile): their key limit, -1 for none.
    const int slot_lo = warp * 16 + g, slot_hi = slot_lo + 8;
    const int lim_lo = slot_lo < nq ? min(row_pos[(sq0 + slot_lo) / group], max_pos) : -1;
    const int lim_hi = slot_hi < nq ? min(row_pos[(sq0 + slot_hi) / group], max_pos) : -1;
    int warp_lim = max(lim_lo, lim_hi);
    for (int o = 16; o > 0; o >>= 1) warp_lim = max(warp_lim, __shfl_xor_sync(dev::kFullMask, warp_lim, o));

    // A fragments of Q (matrices (rows 0-7|8-15) x (k 0-7|8-15)) are re-read from q_s per tile: holding
    // hi and lo for all of head_dim in registers (64 for head_dim 128) cost occupancy and spilled.
    const uint16_t* q_frag = q_s + (warp * 16 + 8 * (lm & 1) + lr) * kRow + 8 * (lm >> 1);

    float o_acc[2 * kDSteps][4];
#pragma unroll
    for (int j = 0; j < 2 * kDSteps; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) o_acc[j][c] = 0.0f;
    float m_lo = -INFINITY, m_hi = -INFINITY, l_lo = 0.0f, l_hi = 0.0f;  // l: this thread's partial sums

    for (int t0 = 0; t0 <= max_pos; t0 += kTile) {
      dev::cp_async_wait<0>();
      __syncthreads();  // the tile is in stage, and every warp is done with the previous k_s / v_s
      // Stage -> bf16 tiles: K split into hi + lo, V rounded. (One element group's store, shared by the
      // F32 loop and the decoding loop of the narrow types.)
      auto store_bf16 = [&](int which, int j, int c, const float4& x) {
        if (which) {
          *reinterpret_cast<uint2*>(v_s + j * kRow + c) = uint2{pack_bf16x2(x.x, x.y), pack_bf16x2(x.z, x.w)};
        } else {
          uint2 hi, lo;
          split_bf16x4(x, hi, lo);
          *reinterpret_cast<uint2*>(k_s + j * kRow + c) = hi;
          *reinterpret_cast<uint2*>(k_s + (kTile + j) * kRow + c) = lo;
        }
      };
      if constexpr (T == KvElem::F32) {
        for (int i = tid; i < 2 * kTile * (kD / 4); i += kThreads) {
          const int which = i / (kTile * (kD / 4)), rem = i - which * (kTile * (kD / 4));
          const int j = rem / (kD / 4), c = (rem % (kD / 4)) * 4;
          store_bf16(which, j, c, *reinterpret_cast<const float4*>(stage + (which * kTile + j) * kD + c));
        }
      } else {
        for (int i = tid; i < 2 * kTile * (kD / 4); i += kThreads) {
          const int which = i / (kTile * (kD / 4)), rem = i - which * (kTile * (kD / 4));
          const int j = rem / (kD / 4), c = (rem % (kD / 4)) * 4;
          const float sc = T == KvElem::FP8 ? stage_sc[which * kTile + j] : 1.0f;
          store_bf16(which, j, c, kv::decode4<T>(stage_raw + (which * kTile + j) * S::kRowBytes, c, sc));
        }
      }
      __syncthreads();  // bf16 tiles ready; stage is free for the next fetch
      if (t0 + kTile <= max_pos) fetch(t0 + kTile);

      if (t0 <= warp_lim) {  // warp-uniform
        // S = Q K^T: 16 queries x kTile keys, in kTile/8 n-tiles.
        float s[kTile / 8][4];
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j)
#pragma unroll
          for (int c = 0; c < 4; ++c) s[j][c] = 0.0f;
#pragma unroll
        for (int ks = 0; ks < kDSteps; ++ks) {
          uint32_t qh[4], ql[4];
          dev::ldmatrix<4, false>(qh, q_frag + ks * 16);
          dev::ldmatrix<4, false>(ql, q_frag + kQueries * kRow + ks * 16);
#pragma unroll
          for (int jp = 0; jp < kTile / 16; ++jp) {  // B: (keys 0-7: k 0-7, 8-15), (keys 8-15: k 0-7, 8-15)
            uint32_t kf[4], kl[4];
            const uint16_t* b = k_s + (jp * 16 + 8 * (lm >> 1) + lr) * kRow + ks * 16 + 8 * (lm & 1);
            dev::ldmatrix<4, false>(kf, b);
            dev::ldmatrix<4, false>(kl, b + kTile * kRow);
            const uint32_t b0[2] = {kf[0], kf[1]}, b1[2] = {kf[2], kf[3]};
            const uint32_t l0[2] = {kl[0], kl[1]}, l1[2] = {kl[2], kl[3]};
            // q k = qh kh + qh kl + ql kh (+ ql kl, below 2^-16 relative: dropped); small terms first.
            dev::mma_m16n8k16_bf16(s[2 * jp], ql, b0);
            dev::mma_m16n8k16_bf16(s[2 * jp + 1], ql, b1);
            dev::mma_m16n8k16_bf16(s[2 * jp], qh, l0);
            dev::mma_m16n8k16_bf16(s[2 * jp + 1], qh, l1);
            dev::mma_m16n8k16_bf16(s[2 * jp], qh, b0);
            dev::mma_m16n8k16_bf16(s[2 * jp + 1], qh, b1);
          }
        }
        // Scale, mask, row max (a row's 32 keys are spread over the 4 lanes of its quad).
        float mx_lo = -INFINITY, mx_hi = -INFINITY;
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
#pragma unroll
          for (int c = 0; c < 4; ++c) {
            const int key = t0 + 8 * j + 2 * t4 + (c & 1);
            const bool hi = c >= 2;
            const float v = key <= (hi ? lim_hi : lim_lo) ? s[j][c] * scale_log2 : -INFINITY;
            s[j][c] = v;
            if (hi) mx_hi = fmaxf(mx_hi, v);
            else mx_lo = fmaxf(mx_lo, v);
          }
        }
#pragma unroll
        for (int o = 1; o < 4; o <<= 1) {
          mx_lo = fmaxf(mx_lo, __shfl_xor_sync(dev::kFullMask, mx_lo, o));
          mx_hi = fmaxf(mx_hi, __shfl_xor_sync(dev::kFullMask, mx_hi, o));
        }
        const float mn_lo = fmaxf(m_lo, mx_lo), mn_hi = fmaxf(m_hi, mx_hi);
        // Exact rescaling; a row still without keys (m' = -inf) stays at zero.
        const float a_lo = mn_lo == -INFINITY ? 1.0f : exp2f(m_lo - mn_lo);
        const float a_hi = mn_hi == -INFINITY ? 1.0f : exp2f(m_hi - mn_hi);
        m_lo = mn_lo;
        m_hi = mn_hi;
        uint32_t pf[kTile / 16][4];  // P as A fragments, k = keys
        float sum_lo = 0.0f, sum_hi = 0.0f;
#pragma unroll
        for (int j = 0; j < kTile / 8; ++j) {
          const float base_lo = mn_lo == -INFINITY ? 0.0f : mn_lo, base_hi = mn_hi == -INFINITY ? 0.0f : mn_hi;
          const uint32_t lo = pack_bf16x2(exp2f(s[j][0] - base_lo), exp2f(s[j][1] - base_lo));
          const uint32_t hi = pack_bf16x2(exp2f(s[j][2] - base_hi), exp2f(s[j][3] - base_hi));
          sum_lo += dev::bf16x2_lo(lo) + dev::bf16x2_hi(lo);
          sum_hi += dev::bf16x2_lo(hi) + dev::bf16x2_hi(hi);
          // n-tile j covers keys 8j..8j+7 = k 0-7 (even j) or 8-15 (odd j) of k-step j/2.
          pf[j >> 1][(j & 1) * 2 + 0] = lo;
          pf[j >> 1][(j & 1) * 2 + 1] = hi;
        }
        l_lo = l_lo * a_lo + sum_lo;
        l_hi = l_hi * a_hi + sum_hi;
#pragma unroll
        for (int j = 0; j < 2 * kDSteps; ++j) {
          o_acc[j][0] *= a_lo;
          o_acc[j][1] *= a_lo;
          o_acc[j][2] *= a_hi;
          o_acc[j][3] *= a_hi;
        }
        // O += P V: V rows are keys (k), columns d (n); ldmatrix.trans gives the col-major B fragments:
        // matrices (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 8-15).
#pragma unroll
        for (int kk = 0; kk < kTile / 16; ++kk) {
#pragma unroll
          for (int dp = 0; dp < kDSteps; ++dp) {
            uint32_t vf[4];
            dev::ldmatrix<4, true>(vf, v_s + (kk * 16 + 8 * (lm & 1) + lr) * kRow + dp * 16 + 8 * (lm >> 1));
            const uint32_t b0[2] = {vf[0], vf[1]}, b1[2] = {vf[2], vf[3]};
            dev::mma_m16n8k16_bf16(o_acc[2 * dp], pf[kk], b0);
            dev::mma_m16n8k16_bf16(o_acc[2 * dp + 1], pf[kk], b1);
          }
        }
      }
    }

    // Epilogue: the quad's partial sums, then out = O / l (zeros where l = 0: padding or no row).
#pragma unroll
    for (int o = 1; o < 4; o <<= 1) {
      l_lo += __shfl_xor_sync(dev::kFullMask, l_lo, o);
      l_hi += __shfl_xor_sync(dev::kFullMask, l_hi, o);
    }
    const float inv_lo = l_lo > 0.0f ? 1.0f / l_lo : 0.0f, inv_hi = l_hi > 0.0f ? 1.0f / l_hi : 0.0f;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int slot = half ? slot_hi : slot_lo;
      if (slot < nq) {
        const int qi = sq0 + slot, row = qi / group, h = kvh * group + qi % group;
        float* dst = out + (int64_t(row) * n_heads + h) * kD + 2 * t4;
        const float inv = half ? inv_hi : inv_lo;
#pragma unroll
        for (int j = 0; j < 2 * kDSteps; ++j)
          *reinterpret_cast<float2*>(dst + 8 * j) = float2{o_acc[j][2 * half] * inv, o_acc[j][2 * half + 1] * inv};
      }
    }
    __syncthreads();  // mutant-exempt: the next segment writes q_s and stage only after its first barrier (line 114); seg[], which thread 0 writes before that barrier, was last read before line 167's
    s_begin = s_end;
  }
}

template <int kD, KvElem T>
cudaError_t launch(const dim3& grid, cudaStream_t s, float* out, const float* q, const void* pool, const float* scales,
                   const int32_t* page_table, const int32_t* row_seq, const int32_t* row_pos, int rows, int n_heads,
                   int n_kv_heads, int page_tokens, int pages_per_seq, float scale_log2) {
  using S = Cfg<kD, T>;
  constexpr int smem = S::bytes;
  if (smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(attention_prefill_mma_kernel<S>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
  }
  return GLM_LAUNCH(attention_prefill_mma_kernel<S>, grid, dim3(kThreads), size_t(smem), s, out, q, pool, scales, page_table,
                    row_seq, row_pos, rows, n_heads, n_kv_heads, page_tokens, pages_per_seq, scale_log2);
}

template <KvElem T>
cudaError_t launch_type(int64_t head_dim, const dim3& grid, cudaStream_t s, float* out, const float* q, const void* pool,
                        const float* scales, const int32_t* page_table, const int32_t* row_seq, const int32_t* row_pos,
                        int rows, int n_heads, int n_kv_heads, int page_tokens, int pages_per_seq, float scale_log2) {
  switch (head_dim) {
    case 16: return launch<16, T>(grid, s, out, q, pool, scales, page_table, row_seq, row_pos, rows, n_heads, n_kv_heads, page_tokens, pages_per_seq, scale_log2);
    case 32: return launch<32, T>(grid, s, out, q, pool, scales, page_table, row_seq, row_pos, rows, n_heads, n_kv_heads, page_tokens, pages_per_seq, scale_log2);
    case 64: return launch<64, T>(grid, s, out, q, pool, scales, page_table, row_seq, row_pos, rows, n_heads, n_kv_heads, page_tokens, pages_per_seq, scale_log2);
    default: return launch<128, T>(grid, s, out, q, pool, scales, page_table, row_seq, row_pos, rows, n_heads, n_kv_heads, page_tokens, pages_per_seq, scale_log2);
  }
}

}  // namespace

bool attention_prefill_mma_supports(int64_t head_dim) { return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128; }

Status attention_prefill_mma(Stream stream, float* out, const float* q, const void* pool, const float* scales,
                             const KvLayout& L, const int32_t* page_table, const int32_t* row_seq, const int32_t* row_pos,
                             const PrefillAttentionArgs& a) {
  constexpr const char* op = "attention_prefill_mma";
  if (!out || !q || !pool || !page_table || !row_seq || !row_pos) return detail::invalid(op, "null pointer");
  if (L.type == KvElem::FP8 && !scales) return detail::invalid(op, "an FP8 pool needs its scales");
  if (a.rows < 0) return detail::invalid(op, "negative rows");
  if (a.n_heads <= 0 || L.n_kv_heads <= 0 || a.n_heads % L.n_kv_heads) return detail::invalid(op, "n_heads must be a positive multiple of n_kv_heads");
  if (a.n_heads / L.n_kv_heads > kMaxGroup) return detail::invalid(op, "more than 16 query heads per kv head");
  if (!attention_prefill_mma_supports(L.head_dim)) return detail::invalid(op, "head_dim must be 16, 32, 64 or 128");
  if (L.page_tokens <= 0 || a.pages_per_seq <= 0) return detail::invalid(op, "bad page table shape");
  if (L.n_kv_heads > 65535 || a.rows * a.n_heads > 0x3fffffff || a.pages_per_seq * L.page_tokens > 0x3fffffff) {
    return detail::invalid(op, "dimensions too large");
  }
  if (!(a.scale > 0.0f)) return detail::invalid(op, "scale must be > 0");
  if (a.first_key != 0) return detail::invalid(op, "first_key is not supported (attention_prefill takes it)");
  if (!detail::aligned(pool, 16) || !detail::aligned(q, 16) || !detail::aligned(out, 8)) {
    return detail::invalid(op, "pool and q must be 16-byte aligned, out 8-byte aligned");
  }
  if (a.rows == 0) return Status::ok();
  const int64_t group = a.n_heads / L.n_kv_heads;
  const dim3 grid(unsigned((a.rows * group + kQueries - 1) / kQueries), unsigned(L.n_kv_heads));
  const cudaStream_t s = detail::to_stream(stream.handle);
  const float sl = a.scale * kLog2e;
  const int rows = int(a.rows), nh = int(a.n_heads), nkv = int(L.n_kv_heads), pt = int(L.page_tokens), pps = int(a.pages_per_seq);
  cudaError_t e = cudaSuccess;
  switch (L.type) {
    case KvElem::F32: e = launch_type<KvElem::F32>(L.head_dim, grid, s, out, q, pool, scales, page_table, row_seq, row_pos, rows, nh, nkv, pt, pps, sl); break;
    case KvElem::BF16: e = launch_type<KvElem::BF16>(L.head_dim, grid, s, out, q, pool, scales, page_table, row_seq, row_pos, rows, nh, nkv, pt, pps, sl); break;
    case KvElem::FP8: e = launch_type<KvElem::FP8>(L.head_dim, grid, s, out, q, pool, scales, page_table, row_seq, row_pos, rows, nh, nkv, pt, pps, sl); break;
  }
  return detail::launched(op, e);
}

}  // namespace glm::cuda
