// Reading and writing rows of the paged KV pool in any of its element types (ops.h KvLayout): the
// pieces kv_append, kv_copy_page and the three attention kernels share.
//
// Addressing: a row is (page, K|V, kv head, position in page); its index in the layer pool is
//   r = ((page * 2 + which) * n_kv_heads + head) * page_tokens + position,
// its elements start at byte r * row_bytes and (FP8) its scale is scales[r]. The same index serves the
// elements and the scales, so the scale array needs no layout of its own.
//
// Attention kernels stage a tile's raw rows in shared memory with cp.async (16-byte pieces when the row
// width allows, else 4-byte ones; every type's row is a multiple of 4 bytes since head_dim % 4 == 0) and
// then decode them to fp32 in shared memory: value = float(code) * scale for FP8 (one fp32 rounding of a
// 4-bit code times the scale: 2^-24 relative), exact widening for BF16. From there every kernel runs the
// very math it runs on an F32 pool holding those values; F32 pools keep their direct copy (bit-identical
// to the kernels before narrow types existed).
#pragma once
#include "common.cuh"
#include "ops.h"

namespace glm::cuda::kv {

template <KvElem T>
struct Elem;
template <>
struct Elem<KvElem::F32> {
  static constexpr int kBytes = 4;
};
template <>
struct Elem<KvElem::BF16> {
  static constexpr int kBytes = 2;
};
template <>
struct Elem<KvElem::FP8> {
  static constexpr int kBytes = 1;
};

GLM_HOST_DEVICE int64_t row_index(int64_t page, int which, int head, int pos, int n_kv_heads, int page_tokens) {
  return ((page * 2 + which) * n_kv_heads + head) * int64_t(page_tokens) + pos;
}

// Issues the cp.async copies of `rows` raw rows of one (K|V, kv head): row j is position t0 + j of the
// sequence whose page table is `pages`, zero-filled outside [first, last] (so it decodes to 0: a zero code times a
// zero scale), into raw + j * row_bytes, in kPiece-byte pieces (16 when row_bytes is a multiple of 16,
// else 4: a template argument, since both loops in one kernel made ptxas spill); with a row's first
// piece, FP8's scale into sc[j]. The caller commits the group.
template <KvElem T, int kPiece>
GLM_DEVICE void issue_raw_rows(uint8_t* raw, float* sc, const uint8_t* pool, const float* scales, const int32_t* pages,
                               int which, int head, int t0, int first, int last, int rows, int n_kv_heads,
                               int page_tokens, int row_bytes, int tid, int n_threads) {
  static_assert(kPiece == 16 || kPiece == 4, "cp.async pieces of 16 or 4 bytes");
  const int pieces = row_bytes / kPiece;
  for (int i = tid; i < rows * pieces; i += n_threads) {
    const int j = i / pieces, c = (i - j * pieces) * kPiece, pos = t0 + j;
    const bool valid = pos >= first && pos <= last;
    const int64_t row = valid ? row_index(pages[pos / page_tokens], which, head, pos % page_tokens, n_kv_heads, page_tokens) : 0;
    const uint8_t* src = pool + row * row_bytes + (valid ? c : 0);
    if constexpr (kPiece == 16) dev::cp_async_16(raw + j * row_bytes + c, src, valid ? 16 : 0);
    else dev::cp_async_4(raw + j * row_bytes + c, src, valid ? 4 : 0);
    if constexpr (T == KvElem::FP8) {
      if (c == 0) dev::cp_async_4(sc + j, scales + row, valid ? 4 : 0);
    }
  }
}

// A kernel's KV template argument (one, for GLM_LAUNCH): the element type and the cp.async piece.
template <KvElem kType, int kPieceBytes>
struct Tiles {
  static constexpr KvElem T = kType;
  static constexpr int kPiece = kPieceBytes;
  // __launch_bounds__' minimum blocks per SM: 1 for the narrow types, whose decode passes otherwise made
  // CUDA 13's ptxas trade a few spilled bytes for occupancy (12-60 B at 40-72 registers); with 1 it
  // keeps them in 72-90 registers, which still allows more blocks per SM than the shared memory does.
  // 0 (no minimum) for F32: that kernel compiles exactly as before the narrow types.
  static constexpr int kMinBlocks = kType == KvElem::F32 ? 0 : 1;
};

// Calls launch(Tiles<...>{}) with the tiles of the pool's element type: 16-byte cp.async pieces when a
// row's width is a multiple of 16 bytes (F32 rows always are), else 4-byte ones.
template <class Launch>
cudaError_t with_tiles(KvElem type, bool wide, Launch&& launch) {
  switch (type) {
    case KvElem::F32: return launch(Tiles<KvElem::F32, 16>{});
    case KvElem::BF16: return wide ? launch(Tiles<KvElem::BF16, 16>{}) : launch(Tiles<KvElem::BF16, 4>{});
    case KvElem::FP8: return wide ? launch(Tiles<KvElem::FP8, 16>{}) : launch(Tiles<KvElem::FP8, 4>{});
  }
  return cudaSuccess;
}

// Elements [c, c + 4) of a staged raw row as fp32 values (c % 4 == 0); scale: the row's FP8 scale.
template <KvElem T>
GLM_DEVICE float4 decode4(const uint8_t* raw_row, int c, float scale) {
  if constexpr (T == KvElem::BF16) {
    const uint2 w = *reinterpret_cast<const uint2*>(raw_row + 2 * c);  // 8-byte aligned: rows are 8-byte multiples
    return float4{dev::bf16x2_lo(w.x), dev::bf16x2_hi(w.x), dev::bf16x2_lo(w.y), dev::bf16x2_hi(w.y)};
  } else if constexpr (T == KvElem::FP8) {
    const uint32_t w = *reinterpret_cast<const uint32_t*>(raw_row + c);
    // Branch-free widening (exact for every finite code); it reads the NaN codes 0x7f / 0xff as +-480,
    // so they are put back (the CPU's read keeps NaN). Then one fp32 rounding of code * scale (exact
    // for a zero scale).
    float f[4];
    dev::fp8x4_to_float(w, f);
    const float nan = dev::bits_to_float(0x7fc00000u);
#pragma unroll
    for (int k = 0; k < 4; ++k) f[k] = ((w >> (8 * k)) & 0x7fu) == 0x7fu ? nan : f[k] * scale;
    return float4{f[0], f[1], f[2], f[3]};
  } else {
    return *reinterpret_cast<const float4*>(raw_row + 4 * c);
  }
}

// Decodes `rows` staged raw rows of head_dim elements into fp32 rows dst + j * dst_stride.
template <KvElem T>
GLM_DEVICE void decode_rows(float* dst, int dst_stride, const uint8_t* raw, const float* sc, int rows, int head_dim,
                            int row_bytes, int tid, int n_threads) {
  const int quads = head_dim / 4;
  for (int i = tid; i < rows * quads; i += n_threads) {
    const int j = i / quads, c = (i - j * quads) * 4;
    const float s = T == KvElem::FP8 ? sc[j] : 1.0f;
    *reinterpret_cast<float4*>(dst + j * dst_stride + c) = decode4<T>(raw + j * row_bytes, c, s);
  }
}

}  // namespace glm::cuda::kv
