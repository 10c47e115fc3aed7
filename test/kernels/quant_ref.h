// Plain CPU references for the quantized-format kernel tests (FP8 E4M3, MXFP4; spec §5, §10): the
// format decoders written out from the spec tables independently of cuda/common.cuh, test-side
// quantizers (simple, deterministic; the project's real quantizer is elsewhere), and float64 products.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

namespace glm_test::quant {

inline double e4m3_value(uint8_t v) {
  const int e = (v >> 3) & 15, m = v & 7;
  if (e == 15 && m == 7) return NAN;
  const double mag = e == 0 ? std::ldexp(double(m), -9) : std::ldexp(1.0 + m / 8.0, e - 7);
  return (v & 0x80) ? -mag : mag;
}
// Nearest E4M3 (ties to the even code), saturating at 448: the definition the kernels' conversion must
// match. Codes 0..0x7e are increasing in value, so a search over them finds the neighbours.
inline uint8_t e4m3_nearest(double x) {
  if (std::isnan(x)) return 0x7f;
  const uint8_t sign = std::signbit(x) ? 0x80 : 0;
  const double a = std::fabs(x);
  if (a >= 448.0) return uint8_t(sign | 0x7e);
  int lo = 0, hi = 0x7e;  // invariant: value(lo) <= a < value(hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (e4m3_value(uint8_t(mid)) <= a ? lo : hi) = mid;
  }
  const double dl = a - e4m3_value(uint8_t(lo)), dh = e4m3_value(uint8_t(hi)) - a;
  const int best = dl < dh ? lo : dh < dl ? hi : ((lo & 1) == 0 ? lo : hi);
  return uint8_t(sign | best);
}

constexpr double kE2m1[16] = {0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6};  // spec §10 table
inline double e8m0_value(uint8_t c) { return c == 0xff ? NAN : std::ldexp(1.0, int(c) - 127); }

struct Mxfp4 {
  std::vector<uint8_t> blocks, scales;  // [n, k/32, 16], [n, k/32]
  int64_t n = 0, k = 0;
  double at(int64_t r, int64_t c) const {
    const int64_t nb = k / 32, b = c / 32, j = c % 32;
    const uint8_t byte = blocks[size_t((r * nb + b) * 16 + j / 2)];
    return kE2m1[(j & 1) ? byte >> 4 : byte & 15] * e8m0_value(scales[size_t(r * nb + b)]);
  }
};
// OpenAI's ROUND_UP rule (spec §10): scale = 2^ceil(log2(amax / 6)), never clips; nearest code.
inline Mxfp4 quantize_mxfp4(const std::vector<float>& w, int64_t n, int64_t k) {
  Mxfp4 q;
  q.n = n;
  q.k = k;
  const int64_t nb = k / 32;
  q.blocks.assign(size_t(n * nb * 16), 0);
  q.scales.assign(size_t(n * nb), 127);
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      double amax = 0;
      for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(double(w[size_t(r * k + b * 32 + j)])));
      int e = amax > 0 ? int(std::ceil(std::log2(amax / 6.0))) : -127;
      e = std::max(-127, std::min(127, e));
      q.scales[size_t(r * nb + b)] = uint8_t(e + 127);
      const double s = std::ldexp(1.0, e);
      for (int j = 0; j < 32; ++j) {
        const double v = w[size_t(r * k + b * 32 + j)] / s;
        int best = 0;
        for (int c = 1; c < 16; ++c) if (std::fabs(kE2m1[c] - v) < std::fabs(kE2m1[best] - v)) best = c;
        uint8_t& byte = q.blocks[size_t((r * nb + b) * 16 + j / 2)];
        byte = uint8_t(byte | (best << ((j & 1) ? 4 : 0)));
      }
    }
  }
  return q;
}

// FP8 weight quantization: per output channel (scale [n]) or per 128x128 block (scale [ceil(n/128),
// ceil(k/128)]); scale = amax / 448, q = nearest(w / scale).
struct Fp8 {
  std::vector<uint8_t> q;
  std::vector<float> scales;
  int64_t n = 0, k = 0;
  bool block = false;
  double scale_of(int64_t r, int64_t c) const {
    return block ? scales[size_t((r / 128) * ((k + 127) / 128) + c / 128)] : scales[size_t(r)];
  }
  double at(int64_t r, int64_t c) const { return e4m3_value(q[size_t(r * k + c)]) * scale_of(r, c); }
};
inline Fp8 quantize_fp8(const std::vector<float>& w, int64_t n, int64_t k, bool block) {
  Fp8 f;
  f.n = n;
  f.k = k;
  f.block = block;
  f.q.resize(size_t(n * k));
  const int64_t bn = block ? 128 : 1, bk = block ? 128 : k;
  const int64_t gn = (n + bn - 1) / bn, gk = (k + bk - 1) / bk;
  f.scales.resize(size_t(gn * gk));
  for (int64_t i = 0; i < gn; ++i) {
    for (int64_t j = 0; j < gk; ++j) {
      float amax = 0;
      for (int64_t r = i * bn; r < std::min(n, (i + 1) * bn); ++r)
        for (int64_t c = j * bk; c < std::min(k, (j + 1) * bk); ++c) amax = std::max(amax, std::fabs(w[size_t(r * k + c)]));
      const float s = amax / 448.0f;
      f.scales[size_t(i * gk + j)] = s;
      for (int64_t r = i * bn; r < std::min(n, (i + 1) * bn); ++r)
        for (int64_t c = j * bk; c < std::min(k, (j + 1) * bk); ++c) f.q[size_t(r * k + c)] = s > 0 ? e4m3_nearest(double(w[size_t(r * k + c)] / s)) : 0;
    }
  }
  return f;
}

// Dynamic activation quantization, the kernel's definition: s = amax / 448 (fp32), q = e4m3(x / s) (fp32 quotient).
inline void quantize_activations(const std::vector<float>& x, int64_t m, int64_t k, int64_t group, std::vector<uint8_t>& q,
                                 std::vector<float>& s) {
  const int64_t groups = (k + group - 1) / group;
  q.assign(size_t(m * k), 0);
  s.assign(size_t(m * groups), 0);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      float amax = 0;
      for (int64_t c = g * group; c < std::min(k, (g + 1) * group); ++c) amax = std::max(amax, std::fabs(x[size_t(r * k + c)]));
      const float sc = amax / 448.0f;
      s[size_t(r * groups + g)] = sc;
      for (int64_t c = g * group; c < std::min(k, (g + 1) * group); ++c) q[size_t(r * k + c)] = sc > 0 ? e4m3_nearest(double(x[size_t(r * k + c)] / sc)) : 0;
    }
  }
}

}  // namespace glm_test::quant
