// Token selection on device with engine/sampler.cc's rule (choose_token, after penalize_logit), so a
// sampled decode step downloads one int32 per row instead of a logits row, and selection can sit inside a
// captured graph. One block per row; no sort. The rule over the candidates (non-NaN, non -inf penalised
// logits) ordered by (logit desc, id asc):
//   - temperature 0: argmax (ties to the lowest id, NaN never wins; -1 when every logit is NaN);
//   - no candidate: -1 (the host reports Numerical); a +inf logit: the lowest id holding it;
//   - else p_i = exp((l_i - max) / T); top-k keeps the first k, top-p the shortest prefix whose mass
//     reaches top_p * sum, min-p those with p_i >= min_p; u * total (u from the host's generator) picks
//     the first element whose cumulative mass exceeds it.
// Each prefix cut is a radix descent over the 32-bit order key of the logit (4 passes of 256-bin
// histograms of counts or masses, largest key first), then, only if the cut falls inside a run of equal
// logits, a descent over ~id to find the r-th lowest id among them. Probabilities are fp32 expf of the
// (double) tempered difference, summed in double; min-p compares in double near its threshold. So a
// token differs from the CPU's only when top_p * sum or u * total lies within ~1e-6 (relative to the
// sum) of a cumulative-mass boundary — the fp32 probabilities and the summation order (see the test).
// Optionally the logprobs of compute_logprobs (log-softmax of the raw logits; up to 32 best).
#include <climits>

#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

// 1024 threads: more loads in flight for a single row; also, at 512 and 256 ptxas spilled (24 / 16 bytes)
// while at 1024 (<= 64 registers) it fits in ~60.
constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
constexpr int kBins = 256;
constexpr int kMaxTopLogprobs = 32;

// Monotone in the float order for non-NaN values (the caller maps -0 to +0, which compare equal).
GLM_DEVICE uint32_t order_key(float v) {
  const uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
GLM_DEVICE float key_value(uint32_t k) {
  return dev::bits_to_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

struct Scratch {
  double mass[kBins];
  int count[kBins];
  int any_id[kBins];  // the largest id in a bin of the last digit: the id when the bin holds one element
  double wd[kWarps];
  float wf[kWarps];
  int wi[kWarps], wc[kWarps];
  int digit;
  double above;
  float max_v;
  int max_i, n_cand;
  double sum;
  int n_top;
  uint32_t top_key[kMaxTopLogprobs];
  int top_id[kMaxTopLogprobs];
};

struct Found {
  uint32_t key;   // the element key where the running weight crosses the target
  double above;   // weight of the admitted elements with a larger key
  int eq_count;   // admitted elements with exactly this key
  int eq_id;      // one of them (the only one when eq_count == 1)
};

// The kept set of a row: candidates (non-NaN, non -inf penalised logits) up to the current cut (key >
// cut_key, or key == cut_key and id <= cut_id) and, once on, min-p. Passed by value so its state lives in
// registers.
struct Kept {
  const float* src;
  double m, inv_t, min_p;
  uint32_t max_key;
  int max_i;
  uint32_t cut_key;
  int cut_id;
  bool min_p_on;
  GLM_DEVICE float prob(float v) const { return expf(float((double(v) - m) * inv_t)); }
  GLM_DEVICE bool operator()(int i, uint32_t& key, float& v) const {
    v = src[i];
    if (v != v || v == -INFINITY) return false;
    if (v == 0.0f) v = 0.0f;  // -0 ties with +0
    key = order_key(v);
    if (!(key > cut_key || (key == cut_key && i <= cut_id))) return false;
    if (!min_p_on || (key == max_key && i == max_i)) return true;
    // min-p: p >= min_p as the CPU decides it in double; fp32 decides only well away from the threshold
    // (expf of an argument rounded to fp32: ~1e-5 relative at arguments near -100).
    const float pf = prob(v);
    if (pf > min_p * (1 + 1e-4)) return true;
    if (pf < min_p * (1 - 1e-4)) return false;
    return exp((double(v) - m) * inv_t) >= min_p;
  }
};
// Every non-NaN raw logit: the support of the log-softmax the logprobs report (-inf included).
struct Raw {
  const float* src;
  GLM_DEVICE bool operator()(int i, uint32_t& key, float& v) const {
    v = src[i];
    if (v != v) return false;
    if (v == 0.0f) v = 0.0f;
    key = order_key(v);
    return true;
  }
};
// The admitted elements with one key, ordered by id through the key ~id (largest key = lowest id).
template <class Elem>
struct ById {
  Elem elem;
  uint32_t key;
  GLM_DEVICE bool operator()(int i, uint32_t& k, float& v) const {
    if (!elem(i, k, v) || k != key) return false;
    k = ~uint32_t(i);
    return true;
  }
};

// Radix descent, largest key first: the key v with W(> v) < target <= W(>= v) (strict: W(> v) <= target
// < W(>= v)); when rounding leaves the target above the total, the smallest admitted key. W counts the
// admitted elements, or sums prob(v) over them when use_mass. Every thread calls it (barriers inside).
template <class Elem>
GLM_DEVICE Found descend(Scratch& s, int vocab, const Elem& elem, const Kept& kept, bool use_mass, double target,
                         bool strict) {
  const int tid = int(threadIdx.x);
  uint32_t prefix = 0, mask = 0;
  double above = 0;
  int d = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = tid; b < kBins; b += kThreads) {
      s.count[b] = 0;
      s.mass[b] = 0;
      s.any_id[b] = -1;
    }
    __syncthreads();
    for (int i = tid; i < vocab; i += kThreads) {
      uint32_t key;
      float v;
      if (!elem(i, key, v) || (key & mask) != prefix) continue;
      const int b = int((key >> shift) & 0xffu);
      atomicAdd(&s.count[b], 1);
      if (use_mass) atomicAdd(&s.mass[b], double(kept.prob(v)));
      if (shift == 0) atomicMax(&s.any_id[b], i);
    }
    __syncthreads();
    if (tid == 0) {
      int pick = -1, last = 0;
      double last_above = above;
      for (int b = kBins - 1; b >= 0; --b) {
        if (s.count[b] == 0) continue;
        const double w = use_mass ? s.mass[b] : double(s.count[b]);
        if (strict ? above + w > target : above + w >= target) {
          pick = b;
          break;
        }
        last = b;
        last_above = above;
        above += w;
      }
      if (pick < 0) {
        pick = last;
        above = last_above;
      }
      s.digit = pick;
      s.above = above;
    }
    __syncthreads();
    d = s.digit;
    above = s.above;
    prefix |= uint32_t(d) << shift;
    mask |= 0xffu << shift;
  }
  const Found f{prefix, above, s.count[d], s.any_id[d]};
  __syncthreads();  // the scratch is reused by the next call
  return f;
}

// The id of the r-th (1-based, by id) admitted element with key `key` (r <= eq_count).
template <class Elem>
GLM_DEVICE int nth_id(Scratch& s, int vocab, const Elem& elem, const Kept& kept, uint32_t key, int r, int eq_count,
                      int eq_id) {
  if (eq_count == 1) return eq_id;
  return int(~descend(s, vocab, ById<Elem>{elem, key}, kept, false, double(r), false).key);
}

// Block sum in a fixed order (warp tree, then warps in order), so the result is the same on every run.
GLM_DEVICE double block_sum(Scratch& s, double v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(dev::kFullMask, v, off);
  if ((threadIdx.x & 31) == 0) s.wd[threadIdx.x >> 5] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int w = 0; w < kWarps; ++w) t += s.wd[w];
    s.sum = t;
  }
  __syncthreads();
  const double r = s.sum;
  __syncthreads();  // mutant-exempt: s.sum is next written after the next call's first barrier (line 187), and s.wd reads end at line 193's
  return r;
}

// The sampled (temperature > 0) choice among n_cand > 0 candidates with a finite maximum max_v.
GLM_DEVICE int sample_from(Scratch& s, const float* src, int vocab, const SampleParams& P, float max_v, int max_i,
                           int n_cand) {
  const int tid = int(threadIdx.x);
  Kept kept{src, double(max_v), 1.0 / P.temperature, P.min_p, order_key(max_v == 0.0f ? 0.0f : max_v), max_i, 0u,
            INT_MAX, false};
  // The r-th (1-based) kept element with key `key`, as an id (r <= eq_count).
  auto kept_mass = [&s, vocab, tid](const Kept& k) {
    double acc = 0;
    for (int i = tid; i < vocab; i += kThreads) {
      uint32_t key;
      float v;
      if (k(i, key, v)) acc += double(k.prob(v));
    }
    return block_sum(s, acc);
  };

  if (P.top_k > 0 && P.top_k < n_cand) {
    const Found f = descend(s, vocab, kept, kept, false, double(P.top_k), false);
    const int r = int(P.top_k - int64_t(f.above));
    const int id = r < f.eq_count ? nth_id(s, vocab, kept, kept, f.key, r, f.eq_count, f.eq_id) : INT_MAX;
    kept.cut_key = f.key;
    kept.cut_id = id;
  }
  if (P.top_p < 1) {
    const double target = P.top_p * kept_mass(kept);
    const Found f = descend(s, vocab, kept, kept, true, target, false);
    const double p = double(kept.prob(key_value(f.key)));
    int n = f.eq_count;
    if (p > 0) n = int(fmin(fmax(ceil((target - f.above) / p), 1.0), double(f.eq_count)));
    const int id = n < f.eq_count ? nth_id(s, vocab, kept, kept, f.key, n, f.eq_count, f.eq_id)
                                  : (f.key == kept.cut_key ? kept.cut_id : INT_MAX);
    kept.cut_key = f.key;
    kept.cut_id = id;
  }
  kept.min_p_on = P.min_p > 0;
  const double u = P.u * kept_mass(kept);
  const Found f = descend(s, vocab, kept, kept, true, u, true);
  const double p = double(kept.prob(key_value(f.key)));
  int n = f.eq_count;
  if (p > 0) n = int(fmin(fmax(floor((u - f.above) / p) + 1, 1.0), double(f.eq_count)));
  return nth_id(s, vocab, kept, kept, f.key, n, f.eq_count, f.eq_id);
}

// compute_logprobs on device: log_z = max + log(sum exp(l - max)) over the non-NaN raw logits (fp32 expf
// summed in double), the chosen token's logprob, and the top_n best (value desc, id asc; id -1 and NaN
// past the non-NaN count).
GLM_DEVICE void write_logprobs(Scratch& s, const float* raw, int vocab, int token, int top_n, const SampleLogprobs& lp,
                               int64_t row) {
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  float mx = -INFINITY;
  int nv = 0;
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = raw[i];
    if (v != v) continue;
    mx = fmaxf(mx, v);
    ++nv;
  }
  for (int off = 16; off > 0; off >>= 1) {
    mx = fmaxf(mx, __shfl_xor_sync(dev::kFullMask, mx, off));
    nv += __shfl_xor_sync(dev::kFullMask, nv, off);
  }
  if (lane == 0) {
    s.wf[warp] = mx;
    s.wc[warp] = nv;
  }
  __syncthreads();
  if (tid == 0) {
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, s.wf[w]);
    int total = 0;
    for (int w = 0; w < kWarps; ++w) total += s.wc[w];
    s.max_v = mx;
    s.n_cand = total;
  }
  __syncthreads();
  const double m = double(s.max_v);
  const int n_valid = s.n_cand;
  double acc = 0;
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = raw[i];
    if (v == v) acc += double(expf(float(double(v) - m)));
  }
  const double log_z = m + log(block_sum(s, acc));
  if (tid == 0) lp.chosen[row] = token >= 0 ? float(double(raw[token]) - log_z) : NAN;
  if (top_n <= 0) return;
  const int n = top_n < n_valid ? top_n : n_valid;
  const Raw all{raw};
  const Kept none{raw, 0, 0, 0, 0, 0, 0, 0, false};  // descend's prob, unused for counts
  int cut_id = INT_MAX;
  uint32_t cut_key = 0;
  if (n > 0) {
    const Found f = descend(s, vocab, all, none, false, double(n), false);
    const int r = n - int(f.above);
    cut_key = f.key;
    if (r < f.eq_count) cut_id = nth_id(s, vocab, all, none, f.key, r, f.eq_count, f.eq_id);
  }
  if (tid == 0) s.n_top = 0;
  __syncthreads();
  for (int i = tid; i < vocab && n > 0; i += kThreads) {
    uint32_t key;
    float v;
    if (!all(i, key, v) || !(key > cut_key || (key == cut_key && i <= cut_id))) continue;
    const int slot = atomicAdd(&s.n_top, 1);
    if (slot < kMaxTopLogprobs) {
      s.top_key[slot] = key;
      s.top_id[slot] = i;
    }
  }
  __syncthreads();
  if (tid == 0) {
    const int got = s.n_top < n ? s.n_top : n;
    for (int a = 1; a < got; ++a) {  // insertion sort of <= 32 by (key desc, id asc)
      const uint32_t k = s.top_key[a];
      const int id = s.top_id[a];
      int b = a - 1;
      for (; b >= 0 && (s.top_key[b] < k || (s.top_key[b] == k && s.top_id[b] > id)); --b) {
        s.top_key[b + 1] = s.top_key[b];
        s.top_id[b + 1] = s.top_id[b];
      }
      s.top_key[b + 1] = k;
      s.top_id[b + 1] = id;
    }
    for (int j = 0; j < top_n; ++j) {
      lp.top_ids[row * lp.top_stride + j] = j < got ? s.top_id[j] : -1;
      lp.top_logprobs[row * lp.top_stride + j] = j < got ? float(double(key_value(s.top_key[j])) - log_z) : NAN;
    }
  }
  __syncthreads();  // mutant-exempt: write_logprobs is the kernel's last step; nothing reads or writes the scratch after it
}

// ptxas: hot sample_tokens_kernel
GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads)
    sample_tokens_kernel(int32_t* tokens, const float* logits, float* work, int vocab, const SampleParams* params,
                         const int32_t* history, SampleLogprobs lp) {
  GLM_SHARED(Scratch, scratch, 1);
  Scratch& s = scratch[0];
  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5;
  const int64_t row = int64_t(blockIdx.x);
  const SampleParams P = params[row];
  const float* src = logits + row * vocab;

  // Penalties (penalize_logit's fp32 operations) and a grammar's mask on a copy of the row: the raw
  // logits stay intact.
  const bool rep = P.repetition_penalty != 1, add = P.presence_penalty != 0 || P.frequency_penalty != 0;
  const bool penalised = history && P.history_count > 0 && (rep || add);
  const bool masked = history && P.mask_begin >= 0;
  if (penalised || masked) {
    float* w = work + row * vocab;
    for (int i = tid; i < vocab; i += kThreads) w[i] = src[i];
    __syncthreads();
    if (penalised) {
      const int32_t* h = history + 2 * int64_t(P.history_begin);
      for (int j = tid; j < P.history_count; j += kThreads) {
        const int32_t t = h[2 * j], n = h[2 * j + 1];
        if (t < 0 || t >= vocab) continue;
        float l = w[t];
        if (rep) {
          const float r = float(P.repetition_penalty);
          l = l > 0 ? l / r : l * r;
        }
        if (n > 0 && add) l -= float(P.presence_penalty + P.frequency_penalty * double(n));
        w[t] = l;
      }
      __syncthreads();
    }
    if (masked) {
      const uint32_t* allowed = reinterpret_cast<const uint32_t*>(history) + P.mask_begin;
      for (int i = tid; i < vocab; i += kThreads) {
        if (!((allowed[i >> 5] >> (i & 31)) & 1u)) w[i] = NAN;
      }
      __syncthreads();
    }
    src = w;
  }

  // Pass 1: argmax (argmax_tokens' rule) and the number of candidates.
  float bv = 0.0f;
  int bi = -1, nc = 0;
  for (int i = tid; i < vocab; i += kThreads) {
    const float v = src[i];
    if (v != v) continue;
    nc += v != -INFINITY;
    if (bi < 0 || v > bv) {
      bv = v;
      bi = i;
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    const float ov = __shfl_xor_sync(dev::kFullMask, bv, off);
    const int oi = __shfl_xor_sync(dev::kFullMask, bi, off);
    nc += __shfl_xor_sync(dev::kFullMask, nc, off);
    if (oi >= 0 && (bi < 0 || ov > bv || (ov == bv && oi < bi))) {
      bv = ov;
      bi = oi;
    }
  }
  if (lane == 0) {
    s.wf[warp] = bv;
    s.wi[warp] = bi;
    s.wc[warp] = nc;
  }
  __syncthreads();
  if (tid == 0) {
    int total = 0;
    for (int w = 0; w < kWarps; ++w) {
      total += s.wc[w];
      if (s.wi[w] >= 0 && (bi < 0 || s.wf[w] > bv || (s.wf[w] == bv && s.wi[w] < bi))) {
        bv = s.wf[w];
        bi = s.wi[w];
      }
    }
    s.max_v = bv;
    s.max_i = bi;
    s.n_cand = total;
  }
  __syncthreads();
  const float max_v = s.max_v;
  const int max_i = s.max_i, n_cand = s.n_cand;
  int token = max_i;  // temperature 0 or a +inf logit: argmax
  if (P.temperature != 0 && n_cand == 0) token = -1;
  if (P.temperature != 0 && n_cand > 0 && max_v != INFINITY) token = sample_from(s, src, vocab, P, max_v, max_i, n_cand);
  if (tid == 0) tokens[row] = token;
  if (lp.chosen && P.top_logprobs >= 0) {
    write_logprobs(s, logits + row * vocab, vocab, token, int(fmin(double(P.top_logprobs), double(lp.top_stride))),
                   lp, row);
  }
}

}  // namespace

Status sample_tokens(Stream stream, int32_t* tokens, const float* logits, int64_t rows, int64_t vocab,
                     const SampleParams* params, const int32_t* history, float* workspace,
                     const SampleLogprobs* logprobs) {
  const char* op = "sample_tokens";
  if (!tokens || !logits || !params || !workspace) return detail::invalid(op, "null pointer");
  SampleLogprobs lp;
  if (logprobs) {
    lp = *logprobs;
    if (!lp.chosen || (lp.top_stride > 0 && (!lp.top_ids || !lp.top_logprobs))) return detail::invalid(op, "null logprobs pointer");
    if (lp.top_stride < 0 || lp.top_stride > kMaxTopLogprobs) return detail::invalid(op, "top_stride outside [0, 32]");
  }
  if (rows < 0 || rows > 0x7fffffff || vocab <= 0 || vocab > 0x7fffffff) return detail::invalid(op, "bad rows / vocab");
  if (rows == 0) return Status::ok();
  return detail::launched(op, GLM_LAUNCH(sample_tokens_kernel, dim3(unsigned(rows)), dim3(kThreads), 0,
                                         detail::to_stream(stream.handle), tokens, logits, workspace, int(vocab),
                                         params, history, lp));
}

}  // namespace glm::cuda
