#include "cuda_backend/cuda_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "cpu/kernels.h"
#include "cuda_backend/runtime.h"

namespace glm::cuda_backend {

namespace {

// Device memory left unplanned on a real GPU: the context's own lazy allocations (kernel local memory,
// the graph exec, the launcher's argument buffers) must still fit after the KV pool takes the rest.
#if defined(GLM_CUDA_HARNESS)
constexpr uint64_t kHeadroomBytes = 0;
#else
constexpr uint64_t kHeadroomBytes = uint64_t(256) << 20;
#endif
// Every device allocation is rounded to this (cudaMalloc's own alignment) in the plan.
constexpr uint64_t kAlign = 256;

uint64_t round_up(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
std::string bytes_str(uint64_t b) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%llu bytes (%.2f GiB)", static_cast<unsigned long long>(b), double(b) / double(1ull << 30));
  return buf;
}

bool weight_type(DType d, cuda::WeightType* out) {
  switch (d) {
    case DType::F32: *out = cuda::WeightType::F32; return true;
    case DType::BF16: *out = cuda::WeightType::BF16; return true;
    case DType::F16: *out = cuda::WeightType::F16; return true;
    default: return false;
  }
}

// bf16 bits (RNE) and back, for the GEMM self-test's host data.
uint16_t cuda_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float cuda_bf16_value(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Op ids in the graph signatures (CudaBackend::gate).
enum GraphOp : int { kOpEmbed = 1, kOpRmsnorm, kOpLinear, kOpLinearMany, kOpQkRope, kOpAttention, kOpSwiglu, kOpMoe,
                     kOpGather, kOpArgmax, kOpSample, kOpConcat };

uint64_t matrix_bytes(const Matrix& m) { return uint64_t(m.rows) * uint64_t(m.cols) * uint64_t(dtype_bits(m.dtype) / 8); }
// Whether an unquantized copy holds the very bytes of `original` (GLM-4.5's MTP layer repeats the
// embedding and the head): then one device copy serves both.
bool same_matrix(const Matrix& copy, const Matrix& original) {
  if (!copy.data || !original.data) return false;
  if (copy.data == original.data) return true;
  if (copy.quant != Quant::None || original.quant != Quant::None || copy.dtype != original.dtype || copy.rows != original.rows ||
      copy.cols != original.cols) {
    return false;
  }
  return std::memcmp(copy.data, original.data, size_t(matrix_bytes(copy))) == 0;
}
// Bytes of a quantized matrix's scales as the device holds them (FP8: fp32, MXFP4: E8M0 bytes); 0 unquantized.
uint64_t quant_scale_bytes(const Matrix& m) { return m.bytes() - uint64_t(m.rows) * uint64_t(m.row_bytes()); }

// Queries per kv head (rows x GQA group) from which prefill/mixed steps use attention_prefill_mma:
// one full 64-query tile (GLM-4.5-Air, group 12: 6 rows).
constexpr int64_t kFlashMinQueries = 64;

// attention_decode's split of each sequence: with few rows (decode) long contexts are cut into chunks
// so the grid fills the device; with many rows (prefill rows run as one query each) rows alone do.
int64_t attention_splits(int64_t rows, int64_t max_len) {
  if (rows >= 64) return 1;
  return std::clamp<int64_t>((max_len + 511) / 512, 1, 32);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// KV pages
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Load: probe, plan, upload
// ---------------------------------------------------------------------------------------------
Status CudaBackend::create(const ModelConfig& cfg, const ModelWeights& weights, const CudaBackendOptions& opts,
                           std::unique_ptr<Backend>* out) {
  std::unique_ptr<CudaBackend> be(new CudaBackend(cfg, opts));
  GLM_TRY(be->init(weights));
  *out = std::move(be);
  return Status::ok();
}

CudaBackend::~CudaBackend() {
  // Errors are ignored here: a dead context fails every call, and there is nobody left to tell.
  if (stream_) (void)cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  drop_graphs();
  for (void* p : pinned_) (void)cudaFreeHost(p);
  for (void* p : allocations_) (void)cudaFree(p);
  if (stream_) (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

Status CudaBackend::init(const ModelWeights& weights) {
  // Shapes the kernels cannot take are refused up front with the reason, not at the first step.
  if (cfg_.head_dim % 4 != 0) return Status::error(ErrorCode::UnsupportedFormat, "CUDA backend: head_dim must be a multiple of 4");
  if (cfg_.num_attention_heads / cfg_.num_key_value_heads > 16) {
    return Status::error(ErrorCode::UnsupportedFormat, "CUDA backend: more than 16 query heads per KV head");
  }
  if (opts_.kv.page_tokens < 1 || opts_.kv.page_tokens > 256) {
    return Status::error(ErrorCode::InvalidParam, "CUDA backend: KV pages must hold 1 to 256 positions");
  }
  page_tokens_ = opts_.kv.page_tokens;
  // The MTP layer runs here when the engine asked for its KV layer (speculative decoding on).
  kv_layers_ = opts_.kv.layers > 0 ? opts_.kv.layers : cfg_.num_hidden_layers;
  mtp_ = weights.mtp != nullptr && kv_layers_ == cfg_.num_hidden_layers + 1;
  if (kv_layers_ != cfg_.num_hidden_layers && !mtp_) {
    return Status::error(ErrorCode::Internal, "CUDA backend: " + std::to_string(kv_layers_) + " KV layers for a model of " +
                                                  std::to_string(cfg_.num_hidden_layers) + " layers");
  }
  if (mtp_) {
    mtp_head_shared_ = same_matrix(weights.mtp->shared_head_head, weights.lm_head);
    mtp_embed_shared_ = same_matrix(weights.mtp->embed_tokens, weights.embed_tokens);
  }
  // Every KvType is stored as the CPU stores it (kv_append converts bit for bit like KvStorage::write).
  kv_elem_ = opts_.kv.type == KvType::F32 ? cuda::KvElem::F32 : opts_.kv.type == KvType::BF16 ? cuda::KvElem::BF16 : cuda::KvElem::FP8;
  // Non-blocking: no implicit ordering with the legacy default stream, so another model's synchronous
  // uploads (legacy stream) in another thread neither wait on this stream nor break its graph capture.
  cudaStream_t s = nullptr;
  GLM_TRY(runtime_status(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreateWithFlags"));
  stream_ = s;
  GLM_TRY(select_gemm_path());  // before the plan: its scratch buffers are freed again
  GLM_TRY(plan_memory(weights));
  GLM_TRY(upload_weights(weights));

  // RoPE table in double, as the CPU backend forms it (qk_norm_rope's contract).
  const int64_t half = cfg_.rotary_dim / 2;
  std::vector<double> inv_freq(size_t(std::max<int64_t>(half, 1)), 0.0);
  for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = 1.0 / std::pow(cfg_.rope_theta, double(2 * i) / double(cfg_.rotary_dim));
  void* p = nullptr;
  GLM_TRY(upload(inv_freq.data(), inv_freq.size() * sizeof(double), &p, "RoPE table"));
  inv_freq_ = static_cast<const double*>(p);

  // Step plan: per row token, position, slot, sequence; per sequence (<= rows) its length and page-table
  // row; the logit rows (<= rows).
  const int64_t max_pages = (cfg_.max_position_embeddings + page_tokens_ - 1) / page_tokens_;
  plan_capacity_ints_ = opts_.max_step_rows * (8 + max_pages);  // (+ an MTP step's RoPE positions and hidden rows)
  GLM_TRY(device_alloc(uint64_t(plan_capacity_ints_) * 4, &p, "step plan"));
  plan_dev_ = static_cast<int32_t*>(p);
  // Its host staging is pinned (a graph replay follows the plan's async upload on the stream), as is
  // the greedy tokens' download buffer.
  GLM_TRY(alloc_pinned(uint64_t(plan_capacity_ints_) * 4, &p));
  plan_pinned_ = static_cast<int32_t*>(p);
  GLM_TRY(alloc_pinned(uint64_t(opts_.max_step_rows) * 4, &p));
  greedy_pinned_ = static_cast<int32_t*>(p);
  GLM_TRY(device_alloc(uint64_t(opts_.max_step_rows) * 4, &p, "greedy tokens"));
  greedy_dev_ = static_cast<int32_t*>(p);
  // Device sampling's logprobs (chosen, top ids, top logprobs per row), device and pinned.
  const uint64_t lp_bytes = uint64_t(opts_.max_step_rows) * (1 + 2 * kTopLogprobs) * 4;
  GLM_TRY(alloc_pinned(lp_bytes, &p));
  sample_lp_pinned_ = static_cast<float*>(p);
  GLM_TRY(device_alloc(lp_bytes, &p, "sampled logprobs"));
  sample_lp_dev_ = static_cast<float*>(p);

  // KV pool: one allocation, layer-major, so layer l's pool is a plain offset: every layer's elements,
  // then (FP8) every layer's scales, 256-byte aligned.
  const cuda::KvLayout L = layer_layout();
  const uint64_t elem_bytes = round_up(uint64_t(kv_layers_) * uint64_t(device_pages_) * uint64_t(L.page_bytes()));
  GLM_TRY(device_alloc(plan_bytes_.kv_pool, &p, "KV cache pool"));
  kv_pool_ = p;
  if (kv_elem_ == cuda::KvElem::FP8) kv_scales_ = reinterpret_cast<float*>(static_cast<uint8_t*>(p) + elem_bytes);
  // The uploads went through cudaMemcpy on the legacy stream, which the non-blocking stream does not
  // wait for (a pageable copy may return before its DMA lands): finish them before the first step.
  return runtime_status(cudaDeviceSynchronize(), "weight upload");
}

Status CudaBackend::select_gemm_path() {
  gemm_path_ = "linear_gemm (mma.sync)";
  const char* env = std::getenv("GLM_CUDA_HOPPER_GEMM");
  if (!env || std::strcmp(env, "1") != 0) return Status::ok();
  auto decide = [&](bool use, const std::string& why) {
    use_sm90_gemm_ = use;
    gemm_path_ = (use ? "linear_gemm_sm90 (wgmma): " : "linear_gemm (mma.sync): ") + why;
    std::fprintf(stderr, "glm-node CUDA backend: BF16 GEMM %s\n", gemm_path_.c_str());
    return Status::ok();
  };
  if (!cuda::linear_gemm_sm90_available()) return decide(false, "no sm_90a image for this device");
  // One random problem with partial tiles in m, n and k, bias and accumulate: both paths round x to
  // bf16 and multiply bf16 weights exactly, so they differ only in fp32 summation order (~1e-6 of
  // sum |x w|); a layout or descriptor bug is O(1). Budget 1e-3 of the largest sum |x w|.
  constexpr int64_t M = 200, N = 264, K = 520;
  std::vector<float> x(static_cast<size_t>(M * K)), bias(static_cast<size_t>(N)), prior(static_cast<size_t>(M * N));
  std::vector<uint16_t> w(static_cast<size_t>(N * K));
  uint32_t r = 12345u;
  auto next = [&] { r = r * 1664525u + 1013904223u; return float(int32_t(r >> 8) - (1 << 23)) / float(1 << 23); };
  for (auto& v : x) v = next();
  for (auto& v : w) v = cuda_bf16_bits(next());
  for (auto& v : bias) v = next();
  for (auto& v : prior) v = next();
  void *dx = nullptr, *dw = nullptr, *db = nullptr, *dy0 = nullptr, *dy1 = nullptr;
  std::vector<void*> tmp;
  auto alloc = [&](size_t bytes, void** p) {
    if (cudaMalloc(p, bytes) != cudaSuccess) { (void)cudaGetLastError(); return false; }
    tmp.push_back(*p);
    return true;
  };
  auto release = [&] { for (void* p : tmp) (void)cudaFree(p); };
  if (!alloc(x.size() * 4, &dx) || !alloc(w.size() * 2, &dw) || !alloc(bias.size() * 4, &db) || !alloc(prior.size() * 4, &dy0) ||
      !alloc(prior.size() * 4, &dy1)) {
    release();
    return decide(false, "self-test buffers could not be allocated");
  }
  Status st = runtime_status(cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice), "GEMM self-test upload");
  if (st.is_ok()) st = runtime_status(cudaMemcpy(dw, w.data(), w.size() * 2, cudaMemcpyHostToDevice), "GEMM self-test upload");
  if (st.is_ok()) st = runtime_status(cudaMemcpy(db, bias.data(), bias.size() * 4, cudaMemcpyHostToDevice), "GEMM self-test upload");
  if (st.is_ok()) st = runtime_status(cudaMemcpy(dy0, prior.data(), prior.size() * 4, cudaMemcpyHostToDevice), "GEMM self-test upload");
  if (st.is_ok()) st = runtime_status(cudaMemcpy(dy1, prior.data(), prior.size() * 4, cudaMemcpyHostToDevice), "GEMM self-test upload");
  cuda::LinearWeight lw;
  lw.data = dw;
  lw.bias = static_cast<const float*>(db);
  lw.type = cuda::WeightType::BF16;
  lw.n = N;
  lw.k = K;
  cuda::LinearArgs args;
  args.m = M;
  args.accumulate = true;
  if (st.is_ok()) st = cuda::linear_gemm(stream(), static_cast<float*>(dy0), static_cast<const float*>(dx), lw, args);
  Status fast = st.is_ok() ? cuda::linear_gemm_sm90(stream(), static_cast<float*>(dy1), static_cast<const float*>(dx), lw, args) : st;
  std::vector<float> y0(prior.size()), y1(prior.size());
  if (st.is_ok()) st = runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "GEMM self-test");
  if (st.is_ok()) st = runtime_status(cudaMemcpy(y0.data(), dy0, y0.size() * 4, cudaMemcpyDeviceToHost), "GEMM self-test download");
  if (st.is_ok()) st = runtime_status(cudaMemcpy(y1.data(), dy1, y1.size() * 4, cudaMemcpyDeviceToHost), "GEMM self-test download");
  release();
  // A device fault inside the twin is sticky: the context is gone and the load fails with it.
  GLM_TRY(st);
  if (!fast.is_ok()) return decide(false, "self-test launch failed: " + fast.message());
  double worst = 0, scale = 0;
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t c = 0; c < K; ++c) s += std::fabs(double(x[size_t(i * K + c)]) * double(cuda_bf16_value(w[size_t(j * K + c)])));
      scale = std::max(scale, s);
      const double d = std::fabs(double(y1[size_t(i * N + j)]) - double(y0[size_t(i * N + j)]));
      worst = std::max(worst, std::isnan(d) ? 1e300 : d);
    }
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "load-time self-test vs linear_gemm: max |diff| %.3g (budget %.3g)", worst, 1e-3 * scale);
  return decide(worst <= 1e-3 * scale, buf);
}

Status CudaBackend::plan_memory(const ModelWeights& w) {
  // Weights: every trunk matrix once (a tied lm_head shares the embedding), the fp32 vectors, the
  // embedding table again when it must be widened for the gather (F16), and the RoPE table.
  uint64_t weights = 0;
  std::unordered_map<const void*, bool> seen;
  auto add_m = [&](const Matrix& m) {
    if (m.data && seen.emplace(m.data, true).second) weights += device_matrix_bytes(m);
  };
  auto add_v = [&](const std::vector<float>& v) {
    if (!v.empty()) weights += round_up(v.size() * sizeof(float));
  };
  auto add_embedding = [&](const Matrix& e) {
    if (e.dtype == DType::F16) weights += round_up(uint64_t(e.rows) * e.cols * 4);
    else add_m(e);
  };
  add_m(w.lm_head);
  add_embedding(w.embed_tokens);
  add_v(w.final_norm);
  int64_t max_inter = 0;
  std::vector<const LayerWeights*> decoder_layers;
  for (const LayerWeights& L : w.layers) decoder_layers.push_back(&L);
  if (mtp_) {
    const MtpWeights& m = *w.mtp;
    decoder_layers.push_back(&m.layer);
    add_m(m.eh_proj), add_v(m.enorm), add_v(m.hnorm), add_v(m.shared_head_norm);
    if (!mtp_head_shared_) add_m(m.shared_head_head);
    if (m.embed_tokens.data && !mtp_embed_shared_) add_embedding(m.embed_tokens);
  }
  for (const LayerWeights* layer : decoder_layers) {
    const LayerWeights& L = *layer;
    add_v(L.input_norm), add_v(L.post_attention_norm);
    add_m(L.attn.q), add_m(L.attn.k), add_m(L.attn.v), add_m(L.attn.o);
    add_v(L.attn.q_bias), add_v(L.attn.k_bias), add_v(L.attn.v_bias), add_v(L.attn.q_norm), add_v(L.attn.k_norm);
    if (L.is_moe) {
      add_m(L.moe.router), add_v(L.moe.correction_bias);
      if (!L.moe.experts.empty()) weights += device_experts_bytes(L.moe);  // stacked, as uploaded
      add_m(L.moe.shared.gate), add_m(L.moe.shared.up), add_m(L.moe.shared.down);
      max_inter = std::max(max_inter, L.moe.shared.gate.rows);
    } else {
      add_m(L.dense.gate), add_m(L.dense.up), add_m(L.dense.down);
      max_inter = std::max(max_inter, L.dense.gate.rows);
    }
  }
  weights += round_up(uint64_t(cfg_.rotary_dim) * 8);

  // Activations at the largest step (max_step_rows rows): the forward pass's slots, the MLP's
  // gate/up, the MoE's router logits/ids/weights/routed output and expert workspace, the attention
  // split workspace. Allocated on first use, but budgeted here so the KV pool leaves them room.
  const uint64_t R = uint64_t(opts_.max_step_rows);
  const uint64_t H = uint64_t(cfg_.hidden_size), qw = uint64_t(cfg_.q_width()), kvw = uint64_t(cfg_.kv_width());
  const uint64_t E = uint64_t(cfg_.n_routed_experts), K = uint64_t(cfg_.num_experts_per_tok);
  const uint64_t I = uint64_t(std::max(max_inter, cfg_.moe_intermediate_size));
  uint64_t act = 4 * R * (3 * H + 2 * qw + 2 * kvw + uint64_t(cfg_.vocab_size));  // x, normed, last, q, attn, k, v, logits
  act += 4 * R * (2 * I + E + 2 * K + H);                                          // mlp gate/up, router, ids/weights, routed y
  act += 4 * R * K * (2 * uint64_t(cfg_.moe_intermediate_size) + H) + (uint64_t(1) << 20);  // expert workspace (upper bound)
  if (mtp_) act += 4 * R * 6 * H;  // the MTP step's hidden, embedding, [embedding; hidden] and output rows
  const int64_t max_pages = (cfg_.max_position_embeddings + page_tokens_ - 1) / page_tokens_;
  cuda::DecodeAttentionArgs big;
  big.batch = int64_t(R), big.n_heads = cfg_.num_attention_heads, big.n_splits = 1;
  cuda::DecodeAttentionArgs longest = big;
  longest.batch = 63, longest.n_splits = 32;
  act += 4 * uint64_t(std::max(cuda::attention_decode_workspace_floats(layer_layout(), big),
                               cuda::attention_decode_workspace_floats(layer_layout(), longest)));
  // + greedy tokens, + device sampling: logprobs, params, a 4096-pair history and one row's workspace
  // (the history grows with a longer context, the workspace with sampled rows: op buffers).
  const uint64_t step_plan = round_up(R * uint64_t(8 + max_pages) * 4) + round_up(R * 4) +
                             round_up(R * (1 + 2 * kTopLogprobs) * 4) + round_up(R * sizeof(cuda::SampleParams)) +
                             4096 * 8 + round_up(uint64_t(cfg_.vocab_size) * 4);

  size_t free_b = 0, total_b = 0;
  GLM_TRY(runtime_status(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo"));
  kv_spec_.type = opts_.kv.type;
  kv_spec_.page_tokens = page_tokens_;
  // The CPU's page size exactly (elements + FP8 scales): kv_cache_tokens and kv_pool() count real bytes.
  kv_spec_.page_bytes = kv_page_bytes(opts_.kv.type, kv_layers_, cfg_.num_key_value_heads, cfg_.head_dim, page_tokens_);
  // The pool holds one page more than the engine's (the scratch page of padded decode rows) and up to
  // kAlign bytes between the elements and the FP8 scales.
  const uint64_t fixed = weights + act + step_plan + kHeadroomBytes + kv_spec_.page_bytes + kAlign;
  const uint64_t min_kv = kv_spec_.page_bytes;  // one page
  const uint64_t want_kv = opts_.kv.bytes;
  const uint64_t need = fixed + std::max(min_kv, want_kv);
  if (need > free_b) {
    return Status::error(ErrorCode::InsufficientMemory,
                         "CUDA backend: needs " + bytes_str(need) + " of device memory (weights " + bytes_str(weights) +
                             ", activations for " + std::to_string(R) + "-row steps " + bytes_str(act) + ", KV cache " +
                             bytes_str(std::max(min_kv, want_kv)) + ", headroom " + bytes_str(kHeadroomBytes) + ") but " +
                             bytes_str(free_b) + " of " + bytes_str(total_b) + " are available");
  }
  const uint64_t kv = want_kv ? std::max(want_kv, min_kv) : free_b - fixed;
  // kv_append addresses slots as int32 (page_id * page_tokens + pos): the pool, scratch page included,
  // may not exceed 2^31 positions.
  kv_spec_.n_pages = std::min<int64_t>(int64_t(kv / kv_spec_.page_bytes), 0x7fffffff / page_tokens_ - 1);
  device_pages_ = kv_spec_.n_pages + 1;
  const cuda::KvLayout L = layer_layout();
  const uint64_t layers = uint64_t(kv_layers_);
  const uint64_t pool_bytes = round_up(layers * uint64_t(device_pages_) * uint64_t(L.page_bytes())) +
                              layers * uint64_t(device_pages_) * uint64_t(L.page_scales()) * 4;
  plan_bytes_ = {weights, act, pool_bytes, step_plan, free_b, total_b};
  return Status::ok();
}

Status CudaBackend::device_alloc(uint64_t bytes, void** out, const char* what) {
  void* p = nullptr;
  const cudaError_t err = cudaMalloc(&p, size_t(std::max<uint64_t>(bytes, 1)));
  if (err != cudaSuccess) {
    (void)cudaGetLastError();  // an allocation failure is not sticky; clear it for the next call
    return Status::error(ErrorCode::InsufficientMemory,
                         std::string("CUDA backend: cannot allocate ") + bytes_str(bytes) + " for " + what);
  }
  allocations_.push_back(p);
  *out = p;
  return Status::ok();
}

Status CudaBackend::upload(const void* host, uint64_t bytes, void** out, const char* what) {
  GLM_TRY(device_alloc(bytes, out, what));
  return runtime_status(cudaMemcpy(*out, host, size_t(bytes), cudaMemcpyHostToDevice), what);
}

Status CudaBackend::upload_matrix(const Matrix& m, const char* what) {
  if (!m.data || matrices_.count(m.data)) return Status::ok();
  if (m.quant != Quant::None) return upload_quant_matrix(m, what);  // cuda_backend_quant.cc
  DeviceMatrix dm;
  if (!weight_type(m.dtype, &dm.type)) {
    return Status::error(ErrorCode::UnsupportedFormat, std::string("CUDA backend: ") + what + " is " + dtype_name(m.dtype) +
                                                           "; unquantized weights must be F32, BF16 or F16");
  }
  void* p = nullptr;
  GLM_TRY(upload(m.data, matrix_bytes(m), &p, what));
  dm.data = p;
  matrices_[m.data] = dm;
  return Status::ok();
}

Status CudaBackend::upload_vector(const std::vector<float>& v, const char* what) {
  if (v.empty() || vectors_.count(v.data())) return Status::ok();
  void* p = nullptr;
  GLM_TRY(upload(v.data(), v.size() * sizeof(float), &p, what));
  vectors_[v.data()] = static_cast<const float*>(p);
  return Status::ok();
}

Status CudaBackend::upload_experts(const MoeWeights& moe, int64_t layer) {
  // The expert kernels read each projection of all experts as one [E, rows, cols] tensor in the
  // checkpoint's format (and the scales as one [E, ...] tensor), while the checkpoint stores one tensor
  // per expert: stack them here, once. Quantized experts stay quantized (no bf16 copy).
  const std::string where = "layer " + std::to_string(layer) + " routed experts";
  const int64_t E = int64_t(moe.experts.size());
  const Matrix& g0 = moe.experts[0].gate;
  const Matrix& d0 = moe.experts[0].down;
  for (const MlpWeights& e : moe.experts) {
    for (const Matrix* m : {&e.gate, &e.up, &e.down}) {
      const Matrix& ref = m == &e.down ? d0 : g0;
      const bool ok_format = m->quant == Quant::None ? m->dtype == DType::BF16
                                                     : (m->quant == Quant::Mxfp4 || m->dtype == DType::F8_E4M3);
      if (!ok_format || m->quant != g0.quant || m->rows != ref.rows || m->cols != ref.cols || !m->data ||
          (m->quant != Quant::None && !m->scales)) {
        return Status::error(ErrorCode::UnsupportedFormat, "CUDA backend: " + where + " are " + quant_name(m->quant) + " " +
                                                               dtype_name(m->dtype) +
                                                               "; the expert kernels run BF16, FP8 or MXFP4 experts of one format and shape");
      }
    }
  }
  // The expert kernels tile hidden and inter by 32 (cuda/ops.h, moe_experts_bf16).
  if (g0.cols % 32 != 0 || g0.rows % 32 != 0) {
    return Status::error(ErrorCode::UnsupportedFormat, "CUDA backend: " + where + " have hidden " + std::to_string(g0.cols) +
                                                           " and intermediate " + std::to_string(g0.rows) +
                                                           "; the expert kernel needs multiples of 32");
  }
  DeviceExperts de;
  de.inter = g0.rows;
  de.quant = g0.quant;
  const void** dst[3] = {&de.gate, &de.up, &de.down};
  const void** dst_s[3] = {&de.gate_scales, &de.up_scales, &de.down_scales};
  for (int proj = 0; proj < 3; ++proj) {
    const Matrix& p0 = proj == 2 ? d0 : g0;
    const uint64_t one = uint64_t(p0.rows) * uint64_t(p0.row_bytes());  // every expert's projection has this size
    const uint64_t one_s = quant_scale_bytes(p0);
    for (int part = 0; part < (one_s ? 2 : 1); ++part) {
      const uint64_t sz = part ? one_s : one;
      void* p = nullptr;
      GLM_TRY(device_alloc(sz * uint64_t(E), &p, where.c_str()));
      for (int64_t e = 0; e < E; ++e) {
        const MlpWeights& x = moe.experts[size_t(e)];
        const Matrix& m = proj == 0 ? x.gate : proj == 1 ? x.up : x.down;
        GLM_TRY(runtime_status(cudaMemcpy(static_cast<uint8_t*>(p) + uint64_t(e) * sz, part ? m.scales : m.data, size_t(sz),
                                          cudaMemcpyHostToDevice),
                               where.c_str()));
      }
      *(part ? dst_s[proj] : dst[proj]) = p;
    }
  }
  experts_[&moe] = de;
  return Status::ok();
}

Status CudaBackend::upload_embedding(const Matrix& emb, const char* what) {
  if (embed_tables_.count(emb.data)) return Status::ok();
  if (emb.quant != Quant::None) return Status::error(ErrorCode::UnsupportedFormat, std::string("CUDA backend: quantized ") + what);
  EmbedTable t;
  if (emb.dtype == DType::F16) {
    // embedding_gather reads F32 or BF16 tables; F16 widens to F32 exactly.
    std::vector<float> wide(size_t(emb.rows * emb.cols));
    cpu::convert_to_f32(emb.data, emb.dtype, wide.data(), emb.rows * emb.cols);
    void* p = nullptr;
    GLM_TRY(upload(wide.data(), wide.size() * 4, &p, what));
    t.data = p;
    t.type = cuda::TableType::F32;
  } else if (emb.dtype == DType::F32 || emb.dtype == DType::BF16) {
    GLM_TRY(upload_matrix(emb, what));
    t.data = matrices_[emb.data].data;
    t.type = emb.dtype == DType::F32 ? cuda::TableType::F32 : cuda::TableType::BF16;
  } else {
    return Status::error(ErrorCode::UnsupportedFormat, std::string("CUDA backend: ") + what + " dtype " + dtype_name(emb.dtype));
  }
  embed_tables_[emb.data] = t;
  return Status::ok();
}

Status CudaBackend::upload_layer(const LayerWeights& L, int64_t layer) {
  GLM_TRY(upload_vector(L.input_norm, "input_layernorm"));
  GLM_TRY(upload_vector(L.post_attention_norm, "post_attention_layernorm"));
  GLM_TRY(upload_matrix(L.attn.q, "q_proj"));
  GLM_TRY(upload_matrix(L.attn.k, "k_proj"));
  GLM_TRY(upload_matrix(L.attn.v, "v_proj"));
  GLM_TRY(upload_matrix(L.attn.o, "o_proj"));
  for (const auto* v : {&L.attn.q_bias, &L.attn.k_bias, &L.attn.v_bias, &L.attn.q_norm, &L.attn.k_norm}) {
    GLM_TRY(upload_vector(*v, "attention vector"));
  }
  const MlpWeights& mlp = L.is_moe ? L.moe.shared : L.dense;
  GLM_TRY(upload_matrix(mlp.gate, "gate_proj"));
  GLM_TRY(upload_matrix(mlp.up, "up_proj"));
  GLM_TRY(upload_matrix(mlp.down, "down_proj"));
  if (L.is_moe) {
    // The router runs in fp32 (top-k must not flip); no checkpoint we know quantizes it.
    if (L.moe.router.quant != Quant::None) {
      return Status::error(ErrorCode::UnsupportedFormat, std::string("CUDA backend: the router (mlp.gate) is ") +
                                                             quant_name(L.moe.router.quant) + "; it must be unquantized");
    }
    GLM_TRY(upload_matrix(L.moe.router, "mlp.gate"));
    GLM_TRY(upload_vector(L.moe.correction_bias, "e_score_correction_bias"));
    GLM_TRY(upload_experts(L.moe, layer));
  }
  return Status::ok();
}

Status CudaBackend::upload_mtp(const MtpWeights& m, const ModelWeights& w) {
  const int64_t layer = cfg_.num_hidden_layers;
  GLM_TRY(upload_layer(m.layer, layer));
  GLM_TRY(upload_matrix(m.eh_proj, "eh_proj"));
  for (const auto* v : {&m.enorm, &m.hnorm, &m.shared_head_norm}) GLM_TRY(upload_vector(*v, "MTP norm"));
  if (mtp_head_shared_) {
    matrices_[m.shared_head_head.data] = matrices_[w.lm_head.data];
  } else {
    GLM_TRY(upload_matrix(m.shared_head_head, "shared_head.head"));
  }
  if (mtp_embed_shared_) {
    embed_tables_[m.embed_tokens.data] = embed_tables_[w.embed_tokens.data];
  } else if (m.embed_tokens.data) {
    GLM_TRY(upload_embedding(m.embed_tokens, "MTP embed_tokens"));
  }
  return Status::ok();
}

Status CudaBackend::upload_weights(const ModelWeights& w) {
  auto cancelled = [&] { return opts_.cancel && opts_.cancel->load(std::memory_order_relaxed); };
  GLM_TRY(upload_embedding(w.embed_tokens, "embed_tokens"));
  GLM_TRY(upload_matrix(w.lm_head, "lm_head"));
  GLM_TRY(upload_vector(w.final_norm, "model.norm"));
  for (size_t l = 0; l < w.layers.size(); ++l) {
    if (cancelled()) return Status::error(ErrorCode::Aborted, "model load aborted");
    GLM_TRY(upload_layer(w.layers[l], int64_t(l)));
  }
  if (mtp_) {
    if (cancelled()) return Status::error(ErrorCode::Aborted, "model load aborted");
    GLM_TRY(upload_mtp(*w.mtp, w));
  }
  return Status::ok();
}

// ---------------------------------------------------------------------------------------------
// Sequences and steps
// ---------------------------------------------------------------------------------------------
Status CudaBackend::copy_kv_page(PageId src, PageId dst, int64_t n) {
  GLM_TRY(health());
  // Between steps, on the step stream (ordered after the step that wrote src, before the next that
  // writes dst): one kernel copies the positions of every layer, K|V and head, with their FP8 scales.
  if (src < 0 || dst < 0 || src >= kv_spec_.n_pages || dst >= kv_spec_.n_pages) {
    return Status::error(ErrorCode::Internal, "CUDA backend: KV page copy outside the pool");
  }
  const Status st = cuda::kv_copy_page(stream(), kv_pool_, kv_scales_, layer_layout(), kv_layers_, src, dst, n);
  record(st);
  return st;
}

Status CudaBackend::health() const {
  if (dead_.is_ok()) return Status::ok();
  return Status::error(ErrorCode::EngineDead, "the CUDA backend hit a fatal error earlier and cannot run: " + dead_.message());
}

void CudaBackend::record(Status st) {
  if (st.is_ok()) return;
  if (mode_ == Mode::Record) {
    // Nothing runs during a capture, so a failure here is the capture's (a call it cannot hold, a
    // buffer that would have to grow): the step falls back to eager at the next op, which reproduces
    // any genuine error outside the capture.
    if (!capture_failed_) capture_failure_ = st.message();
    capture_failed_ = true;
    return;
  }
  if (st.code() == ErrorCode::EngineDead && dead_.is_ok()) dead_ = st;
  if (step_error_.is_ok()) step_error_ = std::move(st);
}

Status CudaBackend::begin_step(const StepPlan& plan) {
  GLM_TRY(health());
  if (step_open_) {
    // The previous step returned early (an error before end_step): drop what it captured or skipped
    // (its results are discarded) and drain the stream before the pinned plan buffer is rewritten.
    discard_graph_step();
    record(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "step"));
    GLM_TRY(health());
  }
  step_error_ = Status::ok();
  real_rows_ = -1;  // (until the step's shape is known, pad() is the identity)
  const int64_t R = plan.rows();
  if (R > opts_.max_step_rows) {
    return Status::error(ErrorCode::Internal, "CUDA backend: a step of " + std::to_string(R) + " rows exceeds max_step_rows");
  }
  // Host planning (rule 12): per row its token, position, cache slot and sequence; per sequence its
  // length after the step and its page-table row; the logit rows. Uploaded in one copy; every kernel
  // of the step reads only these device buffers.
  const int64_t S = int64_t(plan.sequences.size()), G = int64_t(plan.logit_rows.size());
  int64_t pps = 1;
  decode_only_ = true;
  for (const auto& s : plan.sequences) {
    pps = std::max(pps, (s.start_pos + s.n_rows + page_tokens_ - 1) / page_tokens_);
    if (s.n_rows != 1) decode_only_ = false;
  }
  // Graph buckets (issue 18): a decode step runs at its bucket's shape, so a steady decode replays one
  // graph while its batch and its longest context grow. The page-table width goes up to the next power
  // of two (at most the model's context in pages); when every row wants logits (always so in decode),
  // the batch goes up to the next of 1, 2, 4, 8, ... (at most max_step_rows) with padding sequences of
  // one row: token 0 at position 0, its K/V written to the scratch page (which nothing real reads), its
  // length 1 and its logits computed and never downloaded. Padding never changes a real row's kernel
  // path (the GEMV/decode-kernel limit of 4 rows is a bucket edge) nor its result: every kernel computes
  // a row from that row alone, except attention_decode's split of a sequence, sized from the width
  // bucket. Eager decode steps are padded the same way, so graphs on and off stay bit-identical.
  const int64_t max_pages = (cfg_.max_position_embeddings + page_tokens_ - 1) / page_tokens_;
  // An MTP step (engine/forward.cc mtp_step) carries its RoPE positions and hidden rows; it runs
  // eagerly at its own shape (one MoE layer: its launch gaps matter less than a trunk step's).
  const bool mtp_step = plan.first_key > 0 || !plan.rope_positions.empty() || !plan.hidden_rows.empty();
  mtp_step_ = mtp_step;
  if (mtp_step && (!mtp_ || plan.first_key < 0 || (!plan.rope_positions.empty() && plan.rope_positions.size() != size_t(R)) ||
                   (!plan.hidden_rows.empty() && plan.hidden_rows.size() != size_t(R)))) {
    return Status::error(ErrorCode::Internal, "CUDA backend: an MTP step on a backend without the MTP layer, or a malformed one");
  }
  int64_t S_dev = S, pps_dev = pps;
  if (decode_only_ && !mtp_step) {
    auto bucket = [](int64_t n) {
      int64_t b = 1;
      while (b < n) b *= 2;
      return b;
    };
    pps_dev = std::max(pps, std::min(bucket(pps), max_pages));
    if (G == R) S_dev = std::max(S, std::min(bucket(S), opts_.max_step_rows));
  }
  const int64_t R_dev = R + (S_dev - S), G_dev = G + (S_dev - S);
  const int64_t n_rope = plan.rope_positions.empty() ? 0 : R, n_hidden = plan.hidden_rows.empty() ? 0 : R;
  const int64_t ints = 4 * R_dev + S_dev + S_dev * pps_dev + G_dev + n_rope + n_hidden;
  if (ints > plan_capacity_ints_) return Status::error(ErrorCode::Internal, "CUDA backend: step plan too large");
  std::fill(plan_pinned_, plan_pinned_ + ints, 0);
  int32_t* tok = plan_pinned_;
  int32_t* pos = tok + R_dev;
  int32_t* slot = pos + R_dev;
  int32_t* row_seq = slot + R_dev;
  int32_t* len = row_seq + R_dev;
  int32_t* table = len + S_dev;
  int32_t* logit_rows = table + S_dev * pps_dev;
  int32_t* rope = logit_rows + G_dev;
  int32_t* hidden = rope + n_rope;
  for (int64_t r = 0; r < n_rope; ++r) rope[r] = plan.rope_positions[size_t(r)];
  for (int64_t r = 0; r < n_hidden; ++r) hidden[r] = int32_t(plan.hidden_rows[size_t(r)]);
  int64_t max_len = 1;
  for (int64_t si = 0; si < S; ++si) {
    const auto& s = plan.sequences[size_t(si)];
    const PageId* pages = s.pages;
    if (s.n_pages * page_tokens_ < s.start_pos + s.n_rows) {
      return Status::error(ErrorCode::Internal, "CUDA backend: the page table does not cover the step");
    }
    len[si] = int32_t(s.start_pos + s.n_rows);
    max_len = std::max<int64_t>(max_len, len[si]);
    std::copy(pages, pages + (s.start_pos + s.n_rows + page_tokens_ - 1) / page_tokens_, table + si * pps_dev);
    for (int64_t i = 0; i < s.n_rows; ++i) {
      const int64_t r = s.row_begin + i, p = s.start_pos + i;
      tok[r] = plan.tokens[size_t(r)];
      pos[r] = plan.positions[size_t(r)];
      slot[r] = int32_t(int64_t(pages[size_t(p / page_tokens_)]) * page_tokens_ + p % page_tokens_);
      row_seq[r] = int32_t(si);
    }
  }
  for (int64_t g = 0; g < G; ++g) logit_rows[g] = int32_t(plan.logit_rows[size_t(g)]);
  const int32_t scratch_page = int32_t(kv_spec_.n_pages);  // the pool's last page: the backend's own
  for (int64_t i = 0; i < S_dev - S; ++i) {
    const int64_t r = R + i, si = S + i;
    tok[r] = 0, pos[r] = 0, row_seq[r] = int32_t(si);
    slot[r] = scratch_page * int32_t(page_tokens_);
    len[si] = 1;
    table[si * pps_dev] = scratch_page;
    logit_rows[G + i] = int32_t(r);
  }
  logit_rows_ = plan.logit_rows;
  d_tokens_ = plan_dev_;
  d_positions_ = d_tokens_ + R_dev;
  d_slots_ = d_positions_ + R_dev;
  d_row_seq_ = d_slots_ + R_dev;
  d_seq_lens_ = d_row_seq_ + R_dev;
  d_page_table_ = d_seq_lens_ + S_dev;
  d_logit_rows_ = d_page_table_ + S_dev * pps_dev;
  d_rope_positions_ = n_rope ? d_logit_rows_ + G_dev : nullptr;
  d_hidden_rows_ = n_hidden ? d_logit_rows_ + G_dev + n_rope : nullptr;
  rope_host_ = n_rope ? plan.rope_positions.data() : nullptr;
  hidden_rows_ = plan.hidden_rows;
  first_key_ = plan.first_key;
  step_rows_ = R_dev, step_seqs_ = S_dev, pages_per_seq_ = pps_dev, max_len_ = max_len, step_logits_ = G_dev;
  real_rows_ = R;
  sample_select_ = kSelectLogits;
  sample_rows_ = 0;
  if (plan.sample_requests && !plan.greedy_tokens) {
    // (Before the graph's mode is chosen: a larger history drops the graphs.)
    const Status ss = stage_samples(*plan.sample_requests, G_dev);
    record(ss);
    if (!ss.is_ok()) return ss;
  }
  graph_begin_step(plan);
  const Status st = runtime_status(cudaMemcpyAsync(plan_dev_, plan_pinned_, size_t(ints) * 4, cudaMemcpyHostToDevice,
                                                   static_cast<cudaStream_t>(stream_)),
                                   "upload of the step plan");
  record(st);
  if (!st.is_ok()) return st;
  step_open_ = true;
  graph_start_capture();
  return st;
}

Status CudaBackend::end_step() {
  // A step that ended without a download (cancelled) runs what it captured or skipped eagerly; a
  // capture that had failed is still reported.
  if (mode_ != Mode::Eager) fall_back_to_eager(capture_failure_, capture_failed_ && !capture_regrow_);
  step_open_ = false;
  if (running()) {
    // Asynchronous failures surface at a synchronisation point; catch them in this step.
    record(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "step"));
  }
  if (!dead_.is_ok()) return health();
  return step_error_;
}

// ---------------------------------------------------------------------------------------------
// Buffers
// ---------------------------------------------------------------------------------------------
Status CudaBackend::scratch(int slot, int64_t rows, int64_t cols, Act* out) {
  GLM_TRY(health());
  if (slot < 0) return Status::error(ErrorCode::Internal, "negative scratch slot");
  if (slots_.size() <= size_t(slot)) slots_.resize(size_t(slot) + 1);
  Buffer& b = slots_[size_t(slot)];
  // (Room for the step's padding rows: the kernels run the padded shape; the caller sees its rows.)
  const uint64_t need = uint64_t(pad_rows(rows)) * uint64_t(cols) * sizeof(float);
  if (b.bytes < need) {
    // Growth happens on the first steps only (the plan at load budgeted the largest step); the old
    // buffer may still be read by queued work, so the stream drains before it is freed. Not inside a
    // capture: the step so far runs eagerly first; the graphs holding the old address are dropped.
    if (mode_ != Mode::Eager) fall_back_to_eager("", false);
    drop_graphs();
    record(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "scratch"));
    GLM_TRY(health());
    if (b.data) {
      allocations_.erase(std::find(allocations_.begin(), allocations_.end(), b.data));
      (void)cudaFree(b.data);
      scratch_bytes_ -= b.bytes;
      b = {};
    }
    GLM_TRY(device_alloc(need, &b.data, "activations"));
    b.bytes = need;
    scratch_bytes_ += need;
  }
  *out = Act{static_cast<float*>(b.data), rows, cols};
  return Status::ok();
}

Status CudaBackend::internal(int index, uint64_t bytes, void** out) {
  if (internal_.size() <= size_t(index)) internal_.resize(size_t(index) + 1);
  Buffer& b = internal_[size_t(index)];
  if (b.bytes < bytes) {
    // During a capture the step falls back to eager (record()) and grows the buffer then.
    if (mode_ != Mode::Eager) {
      capture_regrow_ = true;  // not a failure: the eager rerun grows it, the next step of the shape captures
      return Status::error(ErrorCode::Internal, "an op buffer must grow during graph capture");
    }
    drop_graphs();
    GLM_TRY(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "op buffer"));
    if (b.data) {
      allocations_.erase(std::find(allocations_.begin(), allocations_.end(), b.data));
      (void)cudaFree(b.data);
      scratch_bytes_ -= b.bytes;
      b = {};
    }
    GLM_TRY(device_alloc(bytes, &b.data, "op buffer"));
    b.bytes = bytes;
    scratch_bytes_ += bytes;
  }
  *out = b.data;
  return Status::ok();
}

const CudaBackend::DeviceMatrix* CudaBackend::matrix(const Matrix& m) {
  auto it = matrices_.find(m.data);
  if (it == matrices_.end()) {
    record(Status::error(ErrorCode::Internal, "CUDA backend: a matrix was not uploaded at load"));
    return nullptr;
  }
  return &it->second;
}

const float* CudaBackend::vec(const std::vector<float>* v) {
  if (!v || v->empty()) return nullptr;
  auto it = vectors_.find(v->data());
  if (it == vectors_.end()) {
    record(Status::error(ErrorCode::Internal, "CUDA backend: a vector was not uploaded at load"));
    return nullptr;
  }
  return it->second;
}

cuda::KvLayout CudaBackend::layer_layout() const {
  cuda::KvLayout L;
  L.n_kv_heads = cfg_.num_key_value_heads;
  L.head_dim = cfg_.head_dim;
  L.page_tokens = page_tokens_;
  L.n_pages = device_pages_ > 0 ? device_pages_ : 1;
  L.type = kv_elem_;
  return L;
}

void* CudaBackend::layer_pool(int64_t layer) const {
  const cuda::KvLayout L = layer_layout();
  return static_cast<uint8_t*>(kv_pool_) + layer * L.n_pages * L.page_bytes();
}

float* CudaBackend::layer_scales(int64_t layer) const {
  if (!kv_scales_) return nullptr;
  const cuda::KvLayout L = layer_layout();
  return kv_scales_ + layer * L.n_pages * L.page_scales();
}

// ---------------------------------------------------------------------------------------------
// Ops
// ---------------------------------------------------------------------------------------------
void CudaBackend::embed(const Matrix& table, const int32_t* tokens /*plan.tokens, uploaded by begin_step*/, Act out) {
  auto gated = gate(kOpEmbed, [=, &table] { embed(table, tokens, out); }, &table, pad(out));
  if (gated.skip || !running()) return;
  auto it = embed_tables_.find(table.data);
  if (it == embed_tables_.end()) return record(Status::error(ErrorCode::Internal, "CUDA backend: an embedding was not uploaded at load"));
  record(cuda::embedding_gather(stream(), out.data, it->second.data, it->second.type, table.rows, table.cols, d_tokens_, pad(out).rows));
}

void CudaBackend::rmsnorm(Act x, const std::vector<float>& w, float eps, Act out) {
  auto gated = gate(kOpRmsnorm, [=, &w] { rmsnorm(x, w, eps, out); }, pad(x), w.data(), eps, pad(out));
  if (gated.skip || !running()) return;
  record(cuda::rmsnorm(stream(), out.data, x.data, vec(&w), pad(x).rows, x.cols, eps));
}

cuda::LinearWeight CudaBackend::linear_weight(const Matrix& m, const std::vector<float>* bias) {
  cuda::LinearWeight lw;
  const DeviceMatrix* dm = matrix(m);
  if (!dm) return lw;
  lw.data = dm->data;
  lw.type = dm->type;
  lw.bias = vec(bias);
  lw.n = m.rows;
  lw.k = m.cols;
  return lw;
}

void CudaBackend::linear(Act x, const Matrix& w, const std::vector<float>* bias, Act out, bool accumulate) {
  auto gated = gate(kOpLinear, [=, &w] { linear(x, w, bias, out, accumulate); }, pad(x), &w, bias, pad(out), accumulate);
  if (gated.skip || !running()) return;
  if (w.quant != Quant::None) {
    const DeviceMatrix* dm = matrix(w);
    if (dm) linear_quant(pad(x), *dm, w, bias, pad(out), accumulate);  // cuda_backend_quant.cc
    return;
  }
  const cuda::LinearWeight lw = linear_weight(w, bias);
  if (!running()) return;
  cuda::LinearArgs args;
  args.m = pad(x).rows;
  args.accumulate = accumulate;
  if (use_sm90_gemm_ && args.m > cuda::kLinearGemvMaxRows && lw.type == cuda::WeightType::BF16) {
    return record(cuda::linear_gemm_sm90(stream(), out.data, x.data, lw, args));
  }
  record(cuda::linear(stream(), out.data, x.data, lw, args));
}

void CudaBackend::linear_many(Act x, const Projection* outs, size_t n) {
  std::vector<Projection> copy(outs, outs + n);  // (the caller's array is gone by a fallback's rerun)
  auto padded = [&](size_t i) {
    Projection p = i < n ? outs[i] : Projection{};
    p.out = pad(p.out);
    return p;
  };
  auto gated = gate(kOpLinearMany, [this, x, copy] { linear_many(x, copy.data(), copy.size()); }, pad(x), n, padded(0),
                    padded(1), padded(2));
  if (gated.skip) return;
  // q/k/v as three launches on one stream; a fused qkv GEMM is a later optimisation.
  for (size_t i = 0; i < n; ++i) linear(x, *outs[i].w, outs[i].bias, outs[i].out, false);
}

void CudaBackend::qk_norm_rope(Act q, Act k, const AttentionWeights& w, const int32_t* positions /*uploaded*/) {
  auto gated = gate(kOpQkRope, [=, &w] { qk_norm_rope(q, k, w, positions); }, pad(q), pad(k), &w);
  if (gated.skip || !running()) return;
  cuda::QkRopeDims d;
  d.rows = pad(q).rows;
  d.n_q_heads = cfg_.num_attention_heads;
  d.n_kv_heads = cfg_.num_key_value_heads;
  d.head_dim = cfg_.head_dim;
  d.rotary_dim = cfg_.rotary_dim;
  const float* qn = cfg_.use_qk_norm ? vec(&w.q_norm) : nullptr;
  const float* kn = cfg_.use_qk_norm ? vec(&w.k_norm) : nullptr;
  // The MTP layer rotates by its own positions (the hidden state's), uploaded with its plan.
  const int32_t* pos = positions != nullptr && positions == rope_host_ ? d_rope_positions_ : d_positions_;
  record(cuda::qk_norm_rope(stream(), q.data, k.data, qn, kn, pos, inv_freq_, d, float(cfg_.rms_norm_eps)));
}

void CudaBackend::attention(const StepPlan& plan, int64_t layer, Act q, Act k, Act v, Act out) {
  auto gated = gate(kOpAttention, [=, &plan] { attention(plan, layer, q, k, v, out); }, layer, pad(q), pad(k), pad(v), pad(out));
  if (gated.skip || !running()) return;
  const cuda::KvLayout L = layer_layout();
  void* pool = layer_pool(layer);
  float* scales = layer_scales(layer);
  // self_attn: the step's K/V rows join the cache first (slots planned in begin_step; converted to the
  // pool's type as the CPU converts them)...
  record(cuda::kv_append(stream(), pool, scales, L, k.data, v.data, d_slots_, step_rows_));
  if (!running()) return;
  // ...then each row attends over positions 0..its own of its sequence (causal, paged).
  const float scale = float(1.0 / std::sqrt(double(cfg_.head_dim)));
  if (!decode_only_) {
    // Prefill or mixed step: rows tiled per sequence, K/V tiles shared across the GQA group.
    cuda::PrefillAttentionArgs a;
    a.rows = step_rows_;
    a.n_heads = cfg_.num_attention_heads;
    a.pages_per_seq = pages_per_seq_;
    a.scale = scale;
    a.first_key = first_key_;
    // Tensor cores (bf16 V and P, ~1e-3 relative) once the step fills a 64-query tile per kv head;
    // smaller steps keep the fp32 kernel (cheap at that size, and as exact as their fp32 projections).
    const int64_t group = cfg_.num_attention_heads / cfg_.num_key_value_heads;
    // (The MTP layer's steps, which skip key 0, keep the fp32 kernel: one layer, and only it takes first_key.)
    if (first_key_ == 0 && step_rows_ * group >= kFlashMinQueries && cuda::attention_prefill_mma_supports(cfg_.head_dim)) {
      return record(
          cuda::attention_prefill_mma(stream(), out.data, q.data, pool, scales, L, d_page_table_, d_row_seq_, d_positions_, a));
    }
    return record(cuda::attention_prefill(stream(), out.data, q.data, pool, scales, L, d_page_table_, d_row_seq_, d_positions_, a));
  }
  // Decode step (one row per sequence, in sequence order): split-KV decode attention. The split is
  // sized from the page table's capacity, not the lengths (read on the device), so the launch is the
  // same for every token of a graph's shape; chunks past a sequence's end exit at once (at most a
  // page's worth of extra chunks per sequence), and eager steps use the same split, so graphs on and
  // off give bit-identical results.
  cuda::DecodeAttentionArgs a;
  a.batch = step_seqs_;
  a.n_heads = cfg_.num_attention_heads;
  a.pages_per_seq = pages_per_seq_;
  a.max_len = pages_per_seq_ * page_tokens_;
  a.n_splits = attention_splits(step_seqs_, a.max_len);
  a.scale = scale;
  a.first_key = first_key_;
  const int64_t ws_floats = cuda::attention_decode_workspace_floats(L, a);
  void* ws = nullptr;
  const Status st = internal(0, uint64_t(ws_floats) * 4, &ws);
  if (!st.is_ok()) return record(st);
  record(cuda::attention_decode(stream(), out.data, q.data, pool, scales, L, d_page_table_, d_seq_lens_, a,
                                static_cast<float*>(ws), ws_floats));
}

void CudaBackend::swiglu_mlp(Act x, const MlpWeights& w, Act out, bool accumulate) {
  auto gated = gate(kOpSwiglu, [=, &w] { swiglu_mlp(x, w, out, accumulate); }, pad(x), &w, pad(out), accumulate);
  if (gated.skip || !running()) return;
  const int64_t T = pad(x).rows, I = w.gate.rows;
  void *g = nullptr, *u = nullptr;
  Status st = internal(1, uint64_t(T * I) * 4, &g);
  if (st.is_ok()) st = internal(2, uint64_t(T * I) * 4, &u);
  if (!st.is_ok()) return record(st);
  Act ga{static_cast<float*>(g), T, I}, ua{static_cast<float*>(u), T, I};
  linear(x, w.gate, nullptr, ga, false);                    // gate_proj
  linear(x, w.up, nullptr, ua, false);                      // up_proj
  if (running()) silu_mul(ga.data, ua.data, T * I);         // act_fn(gate) * up
  linear(ga, w.down, nullptr, out, accumulate);             // down_proj
}

void CudaBackend::moe(Act x, const MoeWeights& w, Act out) {
  auto gated = gate(kOpMoe, [=, &w] { moe(x, w, out); }, pad(x), &w, pad(out));
  if (gated.skip || !running()) return;
  const int64_t T = pad(x).rows, H = x.cols, E = cfg_.n_routed_experts, K = cfg_.num_experts_per_tok;
  void *logits = nullptr, *ids = nullptr, *wts = nullptr, *y = nullptr;
  Status st = internal(3, uint64_t(T * E) * 4, &logits);
  if (st.is_ok()) st = internal(4, uint64_t(T * K) * 4, &ids);
  if (st.is_ok()) st = internal(5, uint64_t(T * K) * 4, &wts);
  if (st.is_ok()) st = internal(6, uint64_t(T * H) * 4, &y);
  if (!st.is_ok()) return record(st);

  // mlp.gate: router logits with x kept in fp32 (a bf16 rounding could flip the top-k vs the CPU).
  const cuda::LinearWeight rw = linear_weight(w.router, nullptr);
  if (!running()) return;
  cuda::LinearArgs ra;
  ra.m = T;
  ra.fp32_activations = true;
  record(cuda::linear(stream(), static_cast<float*>(logits), x.data, rw, ra));
  if (!running()) return;
  // sigmoid + correction bias + group-limited top-k + renormalise + scale, on the device.
  cuda::MoeRouteArgs route;
  route.n_tokens = T;
  route.n_experts = E;
  route.top_k = K;
  route.n_group = cfg_.n_group;
  route.topk_group = cfg_.topk_group;
  route.norm_topk_prob = cfg_.norm_topk_prob;
  route.routed_scaling_factor = cfg_.routed_scaling_factor;
  record(cuda::moe_route(stream(), static_cast<int32_t*>(ids), static_cast<float*>(wts), static_cast<const float*>(logits),
                         vec(&w.correction_bias), route));
  if (!running()) return;
  // mlp.experts: routed expert MLPs combined per token with their routing weights -> y.
  record(run_experts(x, w, static_cast<const int32_t*>(ids), static_cast<const float*>(wts), static_cast<float*>(y)));
  if (!running()) return;
  // mlp.shared_experts straight into the residual stream, then the routed sum.
  swiglu_mlp(x, w.shared, out, true);
  if (running()) store(out.data, static_cast<const float*>(y), T * H, true);
}

Status CudaBackend::run_experts(Act x, const MoeWeights& w, const int32_t* ids, const float* weights, float* y) {
  auto it = experts_.find(&w);
  if (it == experts_.end()) return Status::error(ErrorCode::Internal, "CUDA backend: experts not uploaded");
  cuda::MoeDecodeArgs a;
  a.n_tokens = pad(x).rows;
  a.hidden = x.cols;
  a.inter = it->second.inter;
  a.n_experts = cfg_.n_routed_experts;
  a.top_k = cfg_.num_experts_per_tok;
  // Decode (<= kMoeDecodeMaxTokens rows): fused fp32-activation expert GEMVs; prefill: tokens grouped by
  // expert on the device (moe_align) and tensor-core GEMMs; the kernel picks, the workspace covers both.
  const int64_t ws_bytes = cuda::moe_experts_bf16_workspace_bytes(a);
  void* ws = nullptr;
  GLM_TRY(internal(7, uint64_t(std::max<int64_t>(ws_bytes, 16)), &ws));
  if (it->second.quant != Quant::None) return run_quant_experts(x, it->second, ids, weights, y, ws, ws_bytes);
  cuda::Bf16Experts e;
  e.gate = static_cast<const uint16_t*>(it->second.gate);
  e.up = static_cast<const uint16_t*>(it->second.up);
  e.down = static_cast<const uint16_t*>(it->second.down);
  return cuda::moe_experts_bf16(stream(), y, x.data, ids, weights, e, a, ws, ws_bytes);
}

void CudaBackend::silu_mul(float* gate, const float* up, int64_t n) { record(cuda::silu_mul(stream(), gate, gate, up, n)); }

void CudaBackend::store(float* out, const float* y, int64_t n, bool accumulate) {
  if (accumulate) return record(cuda::add_inplace(stream(), out, y, n));
  record(runtime_status(cudaMemcpyAsync(out, y, size_t(n) * 4, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(stream_)),
                        "copy"));
}

void CudaBackend::gather_rows(Act x, const std::vector<int64_t>& rows, Act out) {
  // (The signature holds the padded count, not the rows: they are the plan's, uploaded by begin_step.)
  auto gated = gate(kOpGather, [=, &rows] { gather_rows(x, rows, out); }, pad(x), pad(out));
  if (gated.skip || !running()) return;
  // The forward pass gathers the plan's logit rows (with the padding rows'), and an MTP step its hidden
  // rows; begin_step uploaded both. Any other set would need its own upload, which the step has no buffer for.
  const int32_t* index = rows == logit_rows_ ? d_logit_rows_ : (d_hidden_rows_ && rows == hidden_rows_) ? d_hidden_rows_ : nullptr;
  if (!index) return record(Status::error(ErrorCode::Internal, "CUDA backend: gather_rows of unplanned rows"));
  record(cuda::gather_rows(stream(), out.data, x.data, index, pad(out).rows, x.cols));
}

void CudaBackend::concat_cols(Act a, Act b, Act out) {
  auto gated = gate(kOpConcat, [=] { concat_cols(a, b, out); }, pad(a), pad(b), pad(out));
  if (gated.skip || !running()) return;
  record(cuda::concat_cols(stream(), out.data, a.data, b.data, pad(out).rows, a.cols, b.cols));
}

void CudaBackend::download(Act x, float* host) {
  if (mode_ != Mode::Eager) graph_finish_step();  // the graph region ends here: launch it
  if (!running()) {
    // The caller reads `host` regardless; NaN makes a slip loud (end_step reports the real error).
    std::fill(host, host + x.rows * x.cols, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  record(runtime_status(cudaMemcpyAsync(host, x.data, size_t(x.rows * x.cols) * 4, cudaMemcpyDeviceToHost,
                                        static_cast<cudaStream_t>(stream_)),
                        "download"));
  if (running()) record(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "download"));
  if (!running()) std::fill(host, host + x.rows * x.cols, std::numeric_limits<float>::quiet_NaN());
}

void CudaBackend::download_greedy(Act logits, float* /*host_logits: not written*/, int32_t* tokens) {
  {
    // Greedy selection on the device (sampler.cc's rule), part of the graph when one is recorded.
    auto gated = gate(kOpArgmax, [=] { download_greedy_select(logits); }, pad(logits));
    if (!gated.skip) download_greedy_select(logits);
  }
  if (mode_ != Mode::Eager) graph_finish_step();
  if (running()) {
    record(runtime_status(cudaMemcpyAsync(greedy_pinned_, greedy_dev_, size_t(logits.rows) * 4, cudaMemcpyDeviceToHost,
                                          static_cast<cudaStream_t>(stream_)),
                          "download of the greedy tokens"));
  }
  if (running()) record(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "download"));
  for (int64_t r = 0; r < logits.rows; ++r) tokens[r] = running() ? greedy_pinned_[r] : -1;
}

Status CudaBackend::stage_samples(const std::vector<SampleRequest>& requests, int64_t padded_rows) {
  const int64_t G = int64_t(requests.size());
  if (!opts_.device_sampling || padded_rows > opts_.max_step_rows) return Status::ok();  // host selection (Backend's default)
  bool logprobs = false;
  uint64_t pairs = 0;
  // A constrained row's mask words follow the history pairs (two words per pair slot).
  const uint64_t mask_words = (uint64_t(cfg_.vocab_size) + 31) / 32, mask_slots = (mask_words + 1) / 2;
  for (const SampleRequest& r : requests) {
    if (r.params.top_logprobs > kTopLogprobs) return Status::ok();  // more than the kernel keeps: on the host
    logprobs = logprobs || r.params.top_logprobs >= 0;
    pairs += r.history.size() + (r.allowed ? mask_slots : 0);
  }
  if (pairs > uint64_t(0x7fffffff)) return Status::error(ErrorCode::Internal, "CUDA backend: sampling history too long");
  // Params at offset 0, history after them; the capacity grows in powers of two (each growth drops the
  // graphs: their sample_tokens launch holds the addresses).
  const uint64_t params_bytes = round_up(uint64_t(opts_.max_step_rows) * sizeof(cuda::SampleParams));
  uint64_t cap = 4096;
  while (cap < pairs) cap *= 2;
  const uint64_t bytes = params_bytes + cap * 8;
  void* dev = nullptr;
  GLM_TRY(internal(8, bytes, &dev));
  if (sample_pinned_bytes_ < bytes) {
    // (internal() drained the stream when it grew; a pinned block is only rewritten between steps.)
    GLM_TRY(runtime_status(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "sampling staging"));
    if (sample_pinned_) {
      pinned_.erase(std::find(pinned_.begin(), pinned_.end(), sample_pinned_));
      (void)cudaFreeHost(sample_pinned_);
      sample_pinned_ = nullptr, sample_pinned_bytes_ = 0;
    }
    GLM_TRY(alloc_pinned(bytes, &sample_pinned_));
    sample_pinned_bytes_ = bytes;
  }
  auto* params = static_cast<cuda::SampleParams*>(sample_pinned_);
  auto* history = reinterpret_cast<int32_t*>(static_cast<char*>(sample_pinned_) + params_bytes);
  int64_t at = 0;
  for (int64_t g = 0; g < G; ++g) {
    const SampleRequest& r = requests[size_t(g)];
    cuda::SampleParams q;
    q.temperature = r.params.temperature;
    q.top_p = r.params.top_p;
    q.min_p = r.params.min_p;
    q.u = r.u;
    q.repetition_penalty = r.params.repetition_penalty;
    q.presence_penalty = r.params.presence_penalty;
    q.frequency_penalty = r.params.frequency_penalty;
    q.top_k = r.params.top_k;
    q.history_begin = int32_t(at);
    q.history_count = int32_t(r.history.size());
    q.top_logprobs = int32_t(std::max<int64_t>(r.params.top_logprobs, -1));
    for (const auto& [t, n] : r.history) history[2 * at] = t, history[2 * at + 1] = n, ++at;
    if (r.allowed) {
      q.mask_begin = int32_t(2 * at);
      std::memcpy(history + 2 * at, r.allowed, mask_words * 4);
      at += int64_t(mask_slots);
    }
    params[g] = q;
  }
  // Padding rows (graph buckets): greedy, no history, no logprobs (their tokens are never read).
  for (int64_t g = G; g < padded_rows; ++g) params[g] = cuda::SampleParams{};
  sample_params_dev_ = static_cast<cuda::SampleParams*>(dev);
  sample_history_dev_ = reinterpret_cast<int32_t*>(static_cast<char*>(dev) + params_bytes);
  // Params and the used history only, before the graph launch on the same stream (as the plan).
  GLM_TRY(runtime_status(cudaMemcpyAsync(sample_params_dev_, params, size_t(padded_rows) * sizeof(cuda::SampleParams),
                                         cudaMemcpyHostToDevice, static_cast<cudaStream_t>(stream_)),
                         "upload of the sampling params"));
  if (at > 0) {
    GLM_TRY(runtime_status(cudaMemcpyAsync(sample_history_dev_, history, size_t(at) * 8, cudaMemcpyHostToDevice,
                                           static_cast<cudaStream_t>(stream_)),
                           "upload of the sampling history"));
  }
  sample_select_ = logprobs ? kSelectSampledLogprobs : kSelectSampled;
  sample_rows_ = G;
  return Status::ok();
}

void CudaBackend::download_sampled(Act logits, float* host_logits, const std::vector<SampleRequest>& requests, int32_t* tokens,
                                   TokenLogprobs* logprobs) {
  if (sample_select_ == kSelectLogits) return Backend::download_sampled(logits, host_logits, requests, tokens, logprobs);
  if (sample_rows_ != logits.rows || int64_t(requests.size()) != logits.rows) {
    record(Status::error(ErrorCode::Internal, "CUDA backend: sampled rows differ from the step's requests"));
  }
  {
    // Sampled selection on the device (sampler.cc's rule), part of the graph when one is recorded.
    auto gated = gate(kOpSample, [=] { download_sampled_select(logits); }, pad(logits), sample_select_, sample_params_dev_,
                      sample_history_dev_);
    if (!gated.skip) download_sampled_select(logits);
  }
  if (mode_ != Mode::Eager) graph_finish_step();
  const auto s = static_cast<cudaStream_t>(stream_);
  const size_t G = size_t(logits.rows), R = size_t(opts_.max_step_rows), k = size_t(kTopLogprobs);
  if (running()) record(runtime_status(cudaMemcpyAsync(greedy_pinned_, greedy_dev_, G * 4, cudaMemcpyDeviceToHost, s),
                                       "download of the sampled tokens"));
  const bool lp = sample_select_ == kSelectSampledLogprobs;
  if (lp && running()) {
    // chosen [R] | top ids [R, k] | top logprobs [R, k]: the first G rows of each.
    record(runtime_status(cudaMemcpyAsync(sample_lp_pinned_, sample_lp_dev_, G * 4, cudaMemcpyDeviceToHost, s), "download"));
    record(runtime_status(cudaMemcpyAsync(sample_lp_pinned_ + R, sample_lp_dev_ + R, G * k * 4, cudaMemcpyDeviceToHost, s),
                          "download"));
    record(runtime_status(cudaMemcpyAsync(sample_lp_pinned_ + R + R * k, sample_lp_dev_ + R + R * k, G * k * 4,
                                          cudaMemcpyDeviceToHost, s),
                          "download"));
  }
  if (running()) record(runtime_status(cudaStreamSynchronize(s), "download"));
  if (running()) ++graph_stats_.device_sampled_steps;
  for (size_t r = 0; r < G; ++r) {
    tokens[r] = running() ? greedy_pinned_[r] : -1;
    logprobs[r] = TokenLogprobs();
    const int64_t n = requests[r].params.top_logprobs;
    if (!lp || n < 0 || !running()) continue;
    logprobs[r].chosen = sample_lp_pinned_[r];
    const auto* ids = reinterpret_cast<const int32_t*>(sample_lp_pinned_ + R) + r * k;
    const float* vals = sample_lp_pinned_ + R + R * k + r * k;
    for (size_t j = 0; j < size_t(n) && ids[j] >= 0; ++j) logprobs[r].top.push_back({ids[j], vals[j]});
  }
}

void CudaBackend::download_sampled_select(Act logits) {
  if (!running()) return;
  void* ws = nullptr;
  const int64_t rows = pad(logits).rows;  // the padding rows' tokens are chosen too (greedily) and dropped
  const Status st = internal(9, uint64_t(rows) * uint64_t(logits.cols) * 4, &ws);
  if (!st.is_ok()) return record(st);
  cuda::SampleLogprobs lp;
  const int64_t R = opts_.max_step_rows;
  lp.chosen = sample_lp_dev_;
  lp.top_ids = reinterpret_cast<int32_t*>(sample_lp_dev_ + R);
  lp.top_logprobs = sample_lp_dev_ + R + R * kTopLogprobs;
  lp.top_stride = kTopLogprobs;
  record(cuda::sample_tokens(stream(), greedy_dev_, logits.data, rows, logits.cols, sample_params_dev_,
                             sample_history_dev_, static_cast<float*>(ws),
                             sample_select_ == kSelectSampledLogprobs ? &lp : nullptr));
}

void CudaBackend::download_greedy_select(Act logits) {
  if (!running()) return;
  const int64_t rows = pad(logits).rows;  // the padding rows' argmax too (never downloaded)
  if (rows > opts_.max_step_rows) return record(Status::error(ErrorCode::Internal, "CUDA backend: too many greedy rows"));
  record(cuda::argmax_tokens(stream(), greedy_dev_, logits.data, rows, logits.cols));
}

}  // namespace glm::cuda_backend

// ---------------------------------------------------------------------------------------------
// The engine's entry points (engine/cuda_factory.h)
// ---------------------------------------------------------------------------------------------
namespace glm {

Status cuda_backend_available() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
#if !defined(GLM_CUDA_HARNESS)
    // The runtime's wording for "no driver at all" blames the driver's version; say both.
    if (err == cudaErrorInsufficientDriver) {
      return Status::error(ErrorCode::BackendUnavailable,
                           "no usable CUDA device: no NVIDIA driver found, or one older than this build's CUDA runtime");
    }
    if (err == cudaErrorNoDevice) return Status::error(ErrorCode::BackendUnavailable, "no CUDA device found");
#endif
    return Status::error(ErrorCode::BackendUnavailable,
                         std::string("no usable CUDA device: cudaGetDeviceCount failed (") + cudaGetErrorString(err) + ")");
  }
  if (count == 0) return Status::error(ErrorCode::BackendUnavailable, "no CUDA device found");
  int major = 0, minor = 0;
  err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return Status::error(ErrorCode::BackendUnavailable, std::string("cannot query CUDA device 0: ") + cudaGetErrorString(err));
  }
  // The kernels are built for sm_80 and sm_90a (mma.sync bf16, cp.async, ldmatrix need sm_80).
  if (major < 8) {
    return Status::error(ErrorCode::BackendUnavailable, "CUDA device 0 has compute capability " + std::to_string(major) + "." +
                                                            std::to_string(minor) + "; the CUDA backend needs 8.0 or newer");
  }
  return Status::ok();
}

Status create_cuda_backend(const ModelConfig& cfg, const ModelWeights& weights, const CudaBackendOptions& opts,
                           std::unique_ptr<Backend>* out) {
  return cuda_backend::CudaBackend::create(cfg, weights, opts, out);
}

}  // namespace glm
