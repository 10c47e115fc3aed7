// The device wrappers of cuda/common.cuh (mma.sync m16n8k16 bf16, ldmatrix, cp.async) against the PTX
// ISA's documented fragment/data layouts, written out independently here. On the harness this checks
// the emulation against the documented layouts; on a GPU (scripts/gpu-check.sh) the same tests check
// the emulation's model against the hardware — the only place that proof can come from.
#include "kernel_test.h"

using namespace glm_test;

namespace {

// Fragment coordinates, PTX ISA "Matrix Fragments for mma.m16n8k16" (.bf16, f32 accumulators):
// group = lane / 4, tig = lane % 4.
GLM_DEVICE void a_coord(int lane, int i, int& row, int& col) {  // i = 0..7 (register i/2, half i%2)
  row = lane / 4 + ((i / 2) % 2) * 8;
  col = (lane % 4) * 2 + (i % 2) + (i / 4) * 8;
}
GLM_DEVICE void b_coord(int lane, int i, int& row, int& col) {  // i = 0..3
  row = (lane % 4) * 2 + (i % 2) + (i / 2) * 8;
  col = lane / 4;
}
GLM_DEVICE void c_coord(int lane, int i, int& row, int& col) {  // i = 0..3
  row = lane / 4 + (i / 2) * 8;
  col = (lane % 4) * 2 + (i % 2);
}

// One warp: D = A (16x16, row-major bf16) * B (16x8, row-major bf16) + C, fragments built by hand.
GLM_KERNEL void mma_fragment_kernel(float* d, const uint16_t* a, const uint16_t* b, const float* c) {
  const int lane = int(threadIdx.x);
  uint32_t af[4] = {0, 0, 0, 0}, bf[2] = {0, 0};
  float acc[4];
  for (int i = 0; i < 8; ++i) {
    int r, k;
    a_coord(lane, i, r, k);
    af[i / 2] |= uint32_t(a[r * 16 + k]) << (16 * (i % 2));
  }
  for (int i = 0; i < 4; ++i) {
    int k, n;
    b_coord(lane, i, k, n);
    bf[i / 2] |= uint32_t(b[k * 8 + n]) << (16 * (i % 2));
  }
  for (int i = 0; i < 4; ++i) {
    int r, n;
    c_coord(lane, i, r, n);
    acc[i] = c[r * 8 + n];
  }
  glm::dev::mma_m16n8k16_bf16(acc, af, bf);
  for (int i = 0; i < 4; ++i) {
    int r, n;
    c_coord(lane, i, r, n);
    d[r * 8 + n] = acc[i];
  }
}

// One warp: ldmatrix .x4 and .x4.trans of a 16x16 b16 tile (four 8x8 matrices: rows 0-7 / 8-15 x
// cols 0-7 / 8-15, matrix i at rows 8*(i%2), cols 8*(i/2)); writes every lane's raw registers.
GLM_KERNEL void ldmatrix_kernel(uint32_t* plain, uint32_t* trans, const uint16_t* tile) {
  GLM_SHARED(uint16_t, s, 16 * 16);
  const int lane = int(threadIdx.x);
  for (int i = lane; i < 256; i += 32) s[i] = tile[i];
  __syncwarp();
  const int m = lane / 8, r = lane % 8;
  const uint16_t* row = s + (8 * (m % 2) + r) * 16 + 8 * (m / 2);
  uint32_t p[4], t[4];
  glm::dev::ldmatrix<4, false>(p, row);
  glm::dev::ldmatrix<4, true>(t, row);
  for (int i = 0; i < 4; ++i) {
    plain[lane * 4 + i] = p[i];
    trans[lane * 4 + i] = t[i];
  }
}

// The portable GEMM pattern the matmul kernels will use: C[M,N] = A[M,K] * W[N,K]^T (bf16 in, fp32
// out), one warp per 16x8 tile; A and W rows stream into shared memory with cp.async (rows past M/N
// zero-filled), fragments come from ldmatrix (A: .x4; W rows are B's columns: .x2 without .trans).
constexpr int kMaxK = 128;
GLM_KERNEL void tile_gemm_kernel(float* c, const uint16_t* a, const uint16_t* w, int M, int N, int K) {
  GLM_SHARED(uint16_t, as, 16 * kMaxK);
  GLM_SHARED(uint16_t, ws, 8 * kMaxK);
  const int lane = int(threadIdx.x);
  const int m0 = int(blockIdx.y) * 16, n0 = int(blockIdx.x) * 8;
  const int pieces = K / 8;  // 16-byte pieces per row
  for (int i = lane; i < 16 * pieces; i += 32) {
    const int r = i / pieces, p = i % pieces;
    const bool ok = m0 + r < M;
    glm::dev::cp_async_16(as + r * K + p * 8, ok ? a + int64_t(m0 + r) * K + p * 8 : a, ok ? 16 : 0);
  }
  for (int i = lane; i < 8 * pieces; i += 32) {
    const int r = i / pieces, p = i % pieces;
    const bool ok = n0 + r < N;
    glm::dev::cp_async_16(ws + r * K + p * 8, ok ? w + int64_t(n0 + r) * K + p * 8 : w, ok ? 16 : 0);
  }
  glm::dev::cp_async_commit();
  glm::dev::cp_async_wait<0>();
  __syncwarp();
  float acc[4] = {0, 0, 0, 0};
  for (int k0 = 0; k0 < K; k0 += 16) {
    uint32_t af[4], bf[2];
    const int m = lane / 8, r = lane % 8;
    glm::dev::ldmatrix<4, false>(af, as + (8 * (m % 2) + r) * K + k0 + 8 * (m / 2));
    glm::dev::ldmatrix<2, false>(bf, ws + r * K + k0 + 8 * (m % 2));  // lanes 16-31: addresses ignored
    glm::dev::mma_m16n8k16_bf16(acc, af, bf);
  }
  for (int i = 0; i < 4; ++i) {
    const int r = m0 + lane / 4 + (i / 2) * 8, n = n0 + (lane % 4) * 2 + (i % 2);
    if (r < M && n < N) c[int64_t(r) * N + n] = acc[i];
  }
}

std::vector<uint16_t> random_bf16(std::mt19937& rng, size_t n) {
  std::vector<uint16_t> v(n);
  std::uniform_real_distribution<float> d(-2.0f, 2.0f);
  for (auto& x : v) x = to_bf16(d(rng));
  return v;
}

}  // namespace

TEST(wrapper_mma_m16n8k16_bf16_fragments) {
  std::mt19937 rng(21);
  const auto a = random_bf16(rng, 256), b = random_bf16(rng, 128);
  const auto c = random_floats(rng, 128);
  std::vector<double> ref(128);
  for (int r = 0; r < 16; ++r) {
    for (int n = 0; n < 8; ++n) {
      double s = c[size_t(r * 8 + n)];
      for (int k = 0; k < 16; ++k) s += double(from_bf16(a[size_t(r * 16 + k)])) * from_bf16(b[size_t(k * 8 + n)]);
      ref[size_t(r * 8 + n)] = s;
    }
  }
  DeviceBuffer<uint16_t> d_a(a), d_b(b);
  DeviceBuffer<float> d_c(c), d_d(128);
  for_each_seed([&](uint64_t) {
    d_d.poison();
    CHECK(GLM_LAUNCH(mma_fragment_kernel, dim3(1), dim3(32), 0, nullptr, d_d.get(), d_a.get(), d_b.get(), d_c.get()) == cudaSuccess);
    // Budget: bf16 products are exact in fp32; 16 fp32 additions in an unspecified order.
    if (device_ok("mma")) expect_close("mma D", d_d.download(), ref, 1e-5, 1e-5);
  });
}

TEST(wrapper_ldmatrix_x4_plain_and_trans) {
  std::vector<uint16_t> tile(256);
  for (int i = 0; i < 256; ++i) tile[size_t(i)] = uint16_t(i * 7 + 3);  // distinct values
  std::vector<uint32_t> ref_p(128), ref_t(128);
  for (int lane = 0; lane < 32; ++lane) {
    for (int i = 0; i < 4; ++i) {
      const int r0 = 8 * (i % 2), c0 = 8 * (i / 2), g = lane / 4, t = lane % 4;
      auto at = [&](int r, int col) { return uint32_t(tile[size_t((r0 + r) * 16 + c0 + col)]); };
      ref_p[size_t(lane * 4 + i)] = at(g, 2 * t) | at(g, 2 * t + 1) << 16;
      ref_t[size_t(lane * 4 + i)] = at(2 * t, g) | at(2 * t + 1, g) << 16;
    }
  }
  DeviceBuffer<uint16_t> d_tile(tile);
  DeviceBuffer<uint32_t> d_p(128), d_t(128);
  for_each_seed([&](uint64_t) {
    d_p.poison();
    d_t.poison();
    CHECK(GLM_LAUNCH(ldmatrix_kernel, dim3(1), dim3(32), 0, nullptr, d_p.get(), d_t.get(), d_tile.get()) == cudaSuccess);
    if (device_ok("ldmatrix")) {
      // Bit-exact: ldmatrix moves bits.
      CHECK(d_p.download() == ref_p) << "ldmatrix.x4 registers differ from the PTX layout";
      CHECK(d_t.download() == ref_t) << "ldmatrix.x4.trans registers differ from the PTX layout";
    }
  });
}

TEST(wrapper_cp_async_ldmatrix_mma_tile_gemm) {
  std::mt19937 rng(22);
  for (const auto& shape : std::vector<std::tuple<int, int, int>>{{16, 8, 16}, {37, 21, 48}, {5, 3, 128}}) {
    const int M = std::get<0>(shape), N = std::get<1>(shape), K = std::get<2>(shape);
    const auto a = random_bf16(rng, size_t(M * K)), w = random_bf16(rng, size_t(N * K));
    std::vector<double> ref(size_t(M * N));
    for (int r = 0; r < M; ++r) {
      for (int n = 0; n < N; ++n) {
        double s = 0;
        for (int k = 0; k < K; ++k) s += double(from_bf16(a[size_t(r * K + k)])) * from_bf16(w[size_t(n * K + k)]);
        ref[size_t(r * N + n)] = s;
      }
    }
    DeviceBuffer<uint16_t> d_a(a), d_w(w);
    DeviceBuffer<float> d_c(size_t(M * N));
    for_each_seed([&](uint64_t) {
      d_c.poison();
      CHECK(GLM_LAUNCH(tile_gemm_kernel, dim3(unsigned((N + 7) / 8), unsigned((M + 15) / 16)), dim3(32), 0, nullptr, d_c.get(),
                       d_a.get(), d_w.get(), M, N, K) == cudaSuccess);
      // Budget: exact bf16 products summed in fp32 over K <= 128 terms of magnitude <= 4.
      if (device_ok("tile gemm")) expect_close("tile gemm", d_c.download(), ref, 1e-4, 1e-5);
    });
  }
}
