// Routed-expert MLP for BF16 experts (issue 5), prefill path: tokens grouped by expert (moe_align),
// then two grouped tensor-core GEMMs and a combine:
//   1. gate+up: per 64-slot tile of one expert, 32 gate and the same 32 up columns in one block, so
//      the epilogue holds g and u of an element in the same thread and writes bf16(silu(g) * u)
//      into act[slot, inter] — the SiLU*mul never makes a round trip through memory;
//   2. down: act rows x down_e^T, scaled by the pair's routing weight, into part[slot, hidden] (fp32);
//   3. combine: y[t] = sum over t's picks, in pick order, of part[slot(t, k)] — deterministic, instead
//      of atomics into y (costs one fp32 write + read of part: 2 * pairs * hidden * 4 bytes).
// Both GEMMs share one kernel body (mode 0 / 1): the layout of linear_gemm's bf16 kernel (64x64
// block, 4 warps of 32x32, mma.sync m16n8k16, K steps of 64 double-buffered through registers, rows
// of 72 bf16). A block learns its expert by binary search of its tile index in tile_offsets; tiles past
// the last exit at once, so the grid is sized by the bound ceil(pairs / 64) + E without a host sync.
//
// Numerics: x is rounded to bf16 for the tensor cores, and the activation is stored in bf16 (the down
// GEMM would round it there anyway): two relative 2^-9 roundings on top of fp32 accumulation, the
// precision of the checkpoint's own bf16 MLP. The decode path (n_tokens <= 4) keeps fp32 x instead.
//
// Quantized experts (moe_experts_fp8, moe_experts_mxfp4) run the same kernels: only the weight tile
// loader changes, widening each 8-element chunk to bf16 on its way into shared memory (no bf16 copy of
// the weights in global memory). MXFP4: E2M1 * 2^e is a bf16, exact. FP8 PerChannel: e4m3 is a bf16,
// exact, and the row scale multiplies the fp32 accumulator in the epilogue. FP8 Block128: the tiles
// hold the exact e4m3 values too; a block's gate (or up, or down) rows lie in one 128-row scale band and
// a K step of 64 in one 128-column block, so one scale applies per (half-tile, K step): the
// accumulators are kept in units of the current block's scale and multiplied by the ratio old/new
// when the block changes (two fp32 roundings per 128 columns), then by the last scale at the end.
#include <algorithm>
#include <cmath>

#include "common.cuh"
#include "launch_util.h"
#include "mma_warp_tile.cuh"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kBM = 64, kBN = 64, kBK = 64, kThreads = 128, kRow = kBK + 8;
constexpr int kTile = int(kMoeTileRows);
static_assert(kTile == kBM, "a 64-row GEMM tile is one moe_align tile");

// Weight formats of the grouped kernel (template code: mode in bit 0, format in bits 1-2).
enum Fmt { kBf16 = 0, kFp8Channel = 1, kFp8Block = 2, kMxfp4 = 3 };
constexpr int code(int mode, Fmt f) { return mode | int(f) << 1; }

struct Staged {
  float4 a32[8];  // mode 0: fp32 x, 64 rows x 16 float4
  uint4 a16[4];   // mode 1: bf16 act, 64 rows x 8 chunks
  uint4 b[4];     // 8 weights per chunk as stored: bf16 (16 bytes), e4m3 (.x .y), E2M1 (.x)
  float bs[4];    // the chunk's scale: FP8 Block128, MXFP4 (E8M0 decoded)
};

// One projection of one expert as the loader reads it: rows [N, K] in the format, and its scales.
struct WSrc {
  const void* data;
  const void* scales;
};

GLM_DEVICE uint32_t pack_bf16x2(float lo, float hi) {
  return uint32_t(dev::float_to_bf16(lo)) | uint32_t(dev::float_to_bf16(hi)) << 16;
}

// Mode 0 (gate+up): A = x[token of slot], K = hidden, B rows 0-31 gate rows n0.., 32-63 up rows n0..
// Mode 1 (down):    A = act[slot],       K = inter,  B rows 0-63 down rows n0..
template <int kMode, Fmt kFmt>
GLM_DEVICE void load_step(Staged& st, const float* x, const uint16_t* act, WSrc w0, WSrc w1, const int* row_src, int N, int K,
                          int n0, int k0, int tid) {
  if constexpr (kMode == 0) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15, col = k0 + 4 * c4;
      const int src = row_src[r];
      st.a32[i] = src >= 0 && col < K ? __ldg(reinterpret_cast<const float4*>(x + int64_t(src) * K + col)) : float4{0, 0, 0, 0};
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = tid + kThreads * i, r = idx >> 3, c8 = idx & 7, col = k0 + 8 * c8;
      const int src = row_src[r];
      st.a16[i] = src >= 0 && col < K ? __ldg(reinterpret_cast<const uint4*>(act + int64_t(src) * K + col)) : uint4{0, 0, 0, 0};
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 3, c8 = idx & 7, col = k0 + 8 * c8;
    WSrc w = w0;
    int row = n0 + r;
    if (kMode == 0 && r >= 32) {
      w = w1;
      row = n0 + r - 32;
    }
    const bool ok = row < N && col < K;
    st.b[i] = uint4{0, 0, 0, 0};
    st.bs[i] = 1.0f;
    if (!ok) continue;
    if constexpr (kFmt == kBf16) {
      st.b[i] = __ldg(reinterpret_cast<const uint4*>(static_cast<const uint16_t*>(w.data) + int64_t(row) * K + col));
    } else if constexpr (kFmt == kMxfp4) {
      const int nb = K / 32;
      const int64_t blk = int64_t(row) * nb + col / 32;
      st.b[i].x = __ldg(reinterpret_cast<const uint32_t*>(static_cast<const uint8_t*>(w.data) + blk * 16 + (col & 31) / 2));
      st.bs[i] = dev::e8m0_to_float(__ldg(static_cast<const uint8_t*>(w.scales) + blk));
    } else {
      const uint2 v = __ldg(reinterpret_cast<const uint2*>(static_cast<const uint8_t*>(w.data) + int64_t(row) * K + col));
      st.b[i].x = v.x;
      st.b[i].y = v.y;
      // Block128 tiles stay exact (the kernel applies the scale to the accumulators); a zero scale
      // (an all-zero block) must still contribute nothing, whatever its codes.
      if constexpr (kFmt == kFp8Block)
        st.bs[i] = __ldg(static_cast<const float*>(w.scales) + int64_t(row / 128) * ((K + 127) / 128) + col / 128) != 0.0f ? 1.0f : 0.0f;
    }
  }
}

template <int kMode, Fmt kFmt>
GLM_DEVICE void store_step(const Staged& st, uint16_t* as, uint16_t* bs, int tid) {
  if constexpr (kMode == 0) {
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int idx = tid + kThreads * i, r = idx >> 4, c4 = idx & 15;
      const uint2 v{pack_bf16x2(st.a32[i].x, st.a32[i].y), pack_bf16x2(st.a32[i].z, st.a32[i].w)};
      *reinterpret_cast<uint2*>(as + r * kRow + 4 * c4) = v;
    }
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int idx = tid + kThreads * i, r = idx >> 3, c8 = idx & 7;
      *reinterpret_cast<uint4*>(as + r * kRow + 8 * c8) = st.a16[i];
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int idx = tid + kThreads * i, r = idx >> 3, c8 = idx & 7;
    uint4 v = st.b[i];
    if constexpr (kFmt == kMxfp4) {
      uint32_t h[4];
      dev::mxfp4_word_to_bf16x2(st.b[i].x, h);
      // code * 2^e is exact in fp32 and in bf16: the bf16 is the fp32's top half.
      uint32_t o[4];
#pragma unroll
      for (int j = 0; j < 4; ++j)
        o[j] = dev::byte_perm(dev::float_to_bits(dev::bf16x2_lo(h[j]) * st.bs[i]), dev::float_to_bits(dev::bf16x2_hi(h[j]) * st.bs[i]),
                              0x7632u);
      v = uint4{o[0], o[1], o[2], o[3]};
    } else if constexpr (kFmt != kBf16) {
      float f[8];
      float lo[4], hi[4];
      dev::fp8x4_to_float(st.b[i].x, lo);
      dev::fp8x4_to_float(st.b[i].y, hi);
#pragma unroll
      for (int j = 0; j < 4; ++j) f[j] = lo[j] * st.bs[i], f[4 + j] = hi[j] * st.bs[i];  // * 1 (exact) or * 0
      v = uint4{pack_bf16x2(f[0], f[1]), pack_bf16x2(f[2], f[3]), pack_bf16x2(f[4], f[5]), pack_bf16x2(f[6], f[7])};
    }
    *reinterpret_cast<uint4*>(bs + r * kRow + 8 * c8) = v;
  }
}

// Expert e's projection [N, K] inside the stacked tensors (scales stacked the same way).
template <Fmt kFmt>
GLM_DEVICE WSrc expert_src(const void* data, const void* scales, int e, int N, int K) {
  const int64_t rows = int64_t(e) * N;
  if constexpr (kFmt == kBf16) return {static_cast<const uint16_t*>(data) + rows * K, nullptr};
  if constexpr (kFmt == kMxfp4) return {static_cast<const uint8_t*>(data) + rows * (K / 32) * 16, static_cast<const uint8_t*>(scales) + rows * (K / 32)};
  if constexpr (kFmt == kFp8Channel) return {static_cast<const uint8_t*>(data) + rows * K, static_cast<const float*>(scales) + rows};
  return {static_cast<const uint8_t*>(data) + rows * K,
          static_cast<const float*>(scales) + int64_t(e) * ((N + 127) / 128) * ((K + 127) / 128)};
}

struct GroupedArgs {
  const float* x;              // [T, hidden]
  const void* gate;            // [E, inter, hidden] in the format
  const void* up;
  const void* down;            // [E, hidden, inter]
  const void* gate_s;          // scales, stacked per expert like the weights (null for BF16)
  const void* up_s;
  const void* down_s;
  const float* expert_weights; // [T * k]
  const int32_t* offsets;      // [E + 1]
  const int32_t* tile_offsets; // [E + 1]
  const int32_t* slot_pair;    // [pairs]
  uint16_t* act;               // [pairs, inter] bf16
  float* part;                 // [pairs, hidden]
  int hidden, inter, E, top_k;
};

// ptxas: hot moe_grouped_kernel
template <int kCode>
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) moe_grouped_kernel(GroupedArgs g) {
  constexpr int kMode = kCode & 1;
  constexpr Fmt kFmt = Fmt(kCode >> 1);
  GLM_SHARED(uint16_t, as, 2 * kBM * kRow);
  GLM_SHARED(uint16_t, bs, 2 * kBN * kRow);
  GLM_SHARED(int, row_src, kBM);  // mode 0: token row of x; mode 1: slot row of act; -1: padding
  GLM_SHARED(float, row_w, kBM);  // mode 1: routing weight of the slot's pair
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int tile = int(blockIdx.y);
  if (tile >= g.tile_offsets[g.E]) return;  // uniform over the block: before any barrier
  int lo = 0, hi = g.E - 1;                 // the expert e with tile_offsets[e] <= tile < tile_offsets[e + 1]
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (g.tile_offsets[mid] <= tile) lo = mid;
    else hi = mid - 1;
  }
  const int e = lo;
  const int slot0 = g.offsets[e] + (tile - g.tile_offsets[e]) * kTile, slot_end = g.offsets[e + 1];
  if (tid < kBM) {
    const int slot = slot0 + tid;
    const bool valid = slot < slot_end;
    const int pair = valid ? g.slot_pair[slot] : -1;
    row_src[tid] = !valid ? -1 : kMode == 0 ? pair / g.top_k : slot;
    row_w[tid] = valid ? g.expert_weights[pair] : 0.0f;
  }
  __syncthreads();

  const int N = kMode == 0 ? g.inter : g.hidden, K = kMode == 0 ? g.hidden : g.inter;
  const int n0 = int(blockIdx.x) * (kMode == 0 ? 32 : kBN);
  const WSrc w0 = kMode == 0 ? expert_src<kFmt>(g.gate, g.gate_s, e, g.inter, g.hidden) : expert_src<kFmt>(g.down, g.down_s, e, g.hidden, g.inter);
  const WSrc w1 = kMode == 0 ? expert_src<kFmt>(g.up, g.up_s, e, g.inter, g.hidden) : w0;
  const int wm = warp >> 1, wn = warp & 1;
  const int steps = (K + kBK - 1) / kBK;

  float acc[2][4][4];
  dev::warp_tile_zero(acc);

  // FP8 Block128: the scale unit of the accumulators of the first half (gate, or all of down) and of the
  // second (up).
  float unit0 = 1.0f, unit1 = 1.0f;

  Staged st;
  load_step<kMode, kFmt>(st, g.x, g.act, w0, w1, row_src, N, K, n0, 0, tid);
  store_step<kMode, kFmt>(st, as, bs, tid);
  __syncthreads();
  for (int t = 0; t < steps; ++t) {
    const int buf = t & 1;
    if (t + 1 < steps) load_step<kMode, kFmt>(st, g.x, g.act, w0, w1, row_src, N, K, n0, (t + 1) * kBK, tid);
    if constexpr (kFmt == kFp8Block) {
      const int64_t at = int64_t(n0 / 128) * ((K + 127) / 128) + (t * kBK) / 128;
      const float s0 = __ldg(static_cast<const float*>(w0.scales) + at);
      const float s1 = kMode == 0 ? __ldg(static_cast<const float*>(w1.scales) + at) : s0;
      // A zero scale keeps the unit (its tile was stored as zeros).
      const float r0 = s0 != 0.0f && s0 != unit0 ? unit0 / s0 : 1.0f, r1 = s1 != 0.0f && s1 != unit1 ? unit1 / s1 : 1.0f;
      if (r0 != 1.0f || r1 != 1.0f) {
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 4; ++j)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[i][j][c] *= (kMode == 1 || j < 2) ? r0 : r1;
      }
      if (s0 != 0.0f) unit0 = s0;
      if (s1 != 0.0f) unit1 = s1;
    }
    const uint16_t* a_tile = as + buf * kBM * kRow + (wm * 32) * kRow;
    const uint16_t* b_tile = bs + buf * kBN * kRow;
    // B row groups: mode 0: gate rows wn*16.. (n8 tiles 0, 1) and the matching up rows 32 + wn*16..
    // (tiles 2, 3); mode 1: rows wn*32.. and wn*32 + 16..
#pragma unroll
    for (int ks = 0; ks < kBK / 16; ++ks)
      dev::warp_tile_kstep<kRow, kMode == 0 ? 32 : 16>(acc, a_tile, b_tile, kMode == 0 ? wn * 16 : wn * 32, ks * 16, lane);
    if (t + 1 < steps) store_step<kMode, kFmt>(st, as + (buf ^ 1) * kBM * kRow, bs + (buf ^ 1) * kBN * kRow, tid);
    __syncthreads();
  }
  if constexpr (kFmt == kFp8Block) {
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[i][j][c] *= (kMode == 1 || j < 2) ? unit0 : unit1;
  }
#pragma unroll
  for (int i = 0; i < 2; ++i) {
#pragma unroll
    for (int c = 0; c < 4; ++c) {
      const int r = wm * 32 + dev::warp_tile_row(lane, i, c);
      if (slot0 + r >= slot_end) continue;
      const int64_t slot = slot0 + r;
      if constexpr (kMode == 0) {
#pragma unroll
        for (int j = 0; j < 2; ++j) {  // tiles 0, 1: gate; 2, 3: up of the same columns
          const int col = n0 + wn * 16 + dev::warp_tile_col(lane, j, c);
          if (col < N) {
            float gv = acc[i][j][c], uv = acc[i][j + 2][c];
            if constexpr (kFmt == kFp8Channel) {  // row scales of gate / up, applied to the fp32 sums
              gv *= __ldg(static_cast<const float*>(w0.scales) + col);
              uv *= __ldg(static_cast<const float*>(w1.scales) + col);
            }
            g.act[slot * N + col] = dev::float_to_bf16(gv / (1.0f + expf(-gv)) * uv);
          }
        }
      } else {
        const float wgt = row_w[r];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int col = n0 + wn * 32 + dev::warp_tile_col(lane, j, c);
          if (col < N) {
            float v = acc[i][j][c];
            if constexpr (kFmt == kFp8Channel) v *= __ldg(static_cast<const float*>(w0.scales) + col);
            g.part[slot * N + col] = wgt * v;
          }
        }
      }
    }
  }
}

// y[t, :] = sum_k part[pair_slot[t * top_k + k], :] in pick order; no valid pick: zeros.
// ptxas: hot moe_combine_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(256) moe_combine_kernel(float* y, const float* part, const int32_t* pair_slot, int T,
                                                         int hidden, int top_k) {
  const int64_t i = int64_t(blockIdx.x) * 256 + threadIdx.x, quads = int64_t(T) * (hidden / 4);
  if (i >= quads) return;
  const int t = int(i / (hidden / 4)), q = int(i % (hidden / 4));
  float4 s{0, 0, 0, 0};
  for (int k = 0; k < top_k; ++k) {
    const int slot = pair_slot[t * top_k + k];
    if (slot < 0) continue;
    const float4 v = __ldg(reinterpret_cast<const float4*>(part + int64_t(slot) * hidden) + q);
    s.x += v.x;
    s.y += v.y;
    s.z += v.z;
    s.w += v.w;
  }
  reinterpret_cast<float4*>(y + int64_t(t) * hidden)[q] = s;
}

// Workspace: five int arrays, then act (bf16) and part (fp32), each 256-byte aligned.
struct Layout {
  int64_t counts, offsets, tile_offsets, slot_pair, pair_slot, act, part, total;
};
Layout layout(const MoeDecodeArgs& a) {
  auto up = [](int64_t b) { return (b + 255) / 256 * 256; };
  const int64_t pairs = a.n_tokens * a.top_k;
  Layout l{};
  int64_t o = 0;
  l.counts = o;       o += up(4 * a.n_experts);
  l.offsets = o;      o += up(4 * (a.n_experts + 1));
  l.tile_offsets = o; o += up(4 * (a.n_experts + 1));
  l.slot_pair = o;    o += up(4 * pairs);
  l.pair_slot = o;    o += up(4 * pairs);
  l.act = o;          o += up(2 * pairs * a.inter);
  l.part = o;         o += up(4 * pairs * a.hidden);
  l.total = o;
  return l;
}

}  // namespace

int64_t moe_experts_bf16_workspace_bytes(const MoeDecodeArgs& a) {
  if (a.n_tokens <= kMoeDecodeMaxTokens) return moe_experts_decode_workspace_floats(a) * int64_t(sizeof(float));
  return layout(a).total;
}

namespace {

template <Fmt kFmt>
cudaError_t launch_grouped(const GroupedArgs& g, int64_t max_tiles, cudaStream_t s) {
  cudaError_t e = GLM_LAUNCH(moe_grouped_kernel<code(0, kFmt)>, dim3(unsigned((g.inter + 31) / 32), unsigned(max_tiles)),
                             dim3(kThreads), 0, s, g);
  if (e == cudaSuccess)
    e = GLM_LAUNCH(moe_grouped_kernel<code(1, kFmt)>, dim3(unsigned((g.hidden + kBN - 1) / kBN), unsigned(max_tiles)),
                   dim3(kThreads), 0, s, g);
  return e;
}

// The grouped (prefill) path for every format: weights in g.gate/up/down (+ scales), already checked.
Status run_grouped(const char* op, Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                   GroupedArgs g, Fmt fmt, const MoeDecodeArgs& a, void* workspace, int64_t workspace_bytes) {
  if (!y || !x || !expert_ids || !expert_weights || !g.gate || !g.up || !g.down || !workspace) return detail::invalid(op, "null pointer");
  if (fmt != kBf16 && (!g.gate_s || !g.up_s || !g.down_s)) return detail::invalid(op, "null scales");
  if (a.top_k < 1 || a.top_k > 64 || a.n_experts < 1 || a.n_experts > 1024 || a.hidden <= 0 || a.inter <= 0 || a.hidden % 32 ||
      a.inter % 32 || a.hidden > (1 << 20) || a.inter > (1 << 20) || a.n_tokens * a.top_k > (int64_t(1) << 24))
    return detail::invalid(op, "bad dimensions (hidden and inter multiples of 32, n_experts <= 1024)");
  if (!detail::aligned(x, 16) || !detail::aligned(y, 16) || !detail::aligned(workspace, 256) || !detail::aligned(g.gate, 16) ||
      !detail::aligned(g.up, 16) || !detail::aligned(g.down, 16))
    return detail::invalid(op, "x, y, weights 16-byte and workspace 256-byte aligned");
  const Layout l = layout(a);
  if (workspace_bytes < l.total) return detail::invalid(op, "workspace too small");
  char* base = static_cast<char*>(workspace);
  auto at = [&](int64_t off) { return reinterpret_cast<int32_t*>(base + off); };
  MoeAlignOut al;
  al.counts = at(l.counts);
  al.offsets = at(l.offsets);
  al.tile_offsets = at(l.tile_offsets);
  al.slot_pair = at(l.slot_pair);
  al.pair_slot = at(l.pair_slot);
  if (Status st = moe_align(stream, al, expert_ids, a.n_tokens, a.top_k, a.n_experts); !st.is_ok()) return st;

  g.x = x;
  g.expert_weights = expert_weights;
  g.offsets = al.offsets;
  g.tile_offsets = al.tile_offsets;
  g.slot_pair = al.slot_pair;
  g.act = reinterpret_cast<uint16_t*>(base + l.act);
  g.part = reinterpret_cast<float*>(base + l.part);
  g.hidden = int(a.hidden);
  g.inter = int(a.inter);
  g.E = int(a.n_experts);
  g.top_k = int(a.top_k);
  const int64_t pairs = a.n_tokens * a.top_k;
  const int64_t max_tiles = (pairs + kTile - 1) / kTile + std::min<int64_t>(a.n_experts, pairs);
  if (max_tiles > 65535) return detail::invalid(op, "too many tokens for one launch");
  const cudaStream_t s = detail::to_stream(stream.handle);
  cudaError_t e = cudaSuccess;
  switch (fmt) {
    case kBf16: e = launch_grouped<kBf16>(g, max_tiles, s); break;
    case kFp8Channel: e = launch_grouped<kFp8Channel>(g, max_tiles, s); break;
    case kFp8Block: e = launch_grouped<kFp8Block>(g, max_tiles, s); break;
    case kMxfp4: e = launch_grouped<kMxfp4>(g, max_tiles, s); break;
  }
  if (e == cudaSuccess) {
    const int64_t quads = a.n_tokens * (a.hidden / 4);
    e = GLM_LAUNCH(moe_combine_kernel, dim3(unsigned((quads + 255) / 256)), dim3(256), 0, s, y, g.part, al.pair_slot,
                   int(a.n_tokens), int(a.hidden), int(a.top_k));
  }
  return detail::launched(op, e);
}

}  // namespace

Status moe_experts_bf16(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                        const Bf16Experts& w, const MoeDecodeArgs& a, void* workspace, int64_t workspace_bytes) {
  if (a.n_tokens <= kMoeDecodeMaxTokens) {
    return moe_experts_decode_bf16(stream, y, x, expert_ids, expert_weights, w, a, static_cast<float*>(workspace),
                                   workspace_bytes / int64_t(sizeof(float)));
  }
  GroupedArgs g{};
  g.gate = w.gate, g.up = w.up, g.down = w.down;
  return run_grouped("moe_experts_bf16", stream, y, x, expert_ids, expert_weights, g, kBf16, a, workspace, workspace_bytes);
}

Status moe_experts_fp8(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                       const Fp8Experts& w, const MoeDecodeArgs& a, void* workspace, int64_t workspace_bytes) {
  if (a.n_tokens <= kMoeDecodeMaxTokens) {
    return moe_experts_decode_fp8(stream, y, x, expert_ids, expert_weights, w, a, static_cast<float*>(workspace),
                                  workspace_bytes / int64_t(sizeof(float)));
  }
  GroupedArgs g{};
  g.gate = w.gate, g.up = w.up, g.down = w.down;
  g.gate_s = w.gate_scales, g.up_s = w.up_scales, g.down_s = w.down_scales;
  const Fmt f = w.scaling == Fp8Scaling::Block128 ? kFp8Block : kFp8Channel;
  return run_grouped("moe_experts_fp8", stream, y, x, expert_ids, expert_weights, g, f, a, workspace, workspace_bytes);
}

Status moe_experts_mxfp4(Stream stream, float* y, const float* x, const int32_t* expert_ids, const float* expert_weights,
                         const Mxfp4Experts& w, const MoeDecodeArgs& a, void* workspace, int64_t workspace_bytes) {
  if (a.n_tokens <= kMoeDecodeMaxTokens) {
    return moe_experts_decode_mxfp4(stream, y, x, expert_ids, expert_weights, w, a, static_cast<float*>(workspace),
                                    workspace_bytes / int64_t(sizeof(float)));
  }
  GroupedArgs g{};
  g.gate = w.gate_blocks, g.up = w.up_blocks, g.down = w.down_blocks;
  g.gate_s = w.gate_scales, g.up_s = w.up_scales, g.down_s = w.down_scales;
  return run_grouped("moe_experts_mxfp4", stream, y, x, expert_ids, expert_weights, g, kMxfp4, a, workspace, workspace_bytes);
}

}  // namespace glm::cuda
