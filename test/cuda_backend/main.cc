// End to end on the CPU execution harness: the whole forward pass on CudaBackend (the host code of the
// addon's CUDA backend, with cuda/*.cu kernels run by the harness) against the CPU backend, over
// synthetic checkpoints written by the TypeScript side (test/cuda-backend.test.ts passes the folders).
//
//   glm_cuda_backend_tests <checkpoint dir>...   one line per check, "N passed, M failed" last
//
// The same source builds against the real runtime as glm_cuda_backend_gpu_check (scripts/gpu-check.sh):
// there the comparison runs on the GPU and the harness-only checks (fault injection, capped memory) drop out.
//
// Per checkpoint: a 40-token prefill in 16-row steps (--prompt / --step-rows change both; 300 tokens
// cross KV pages: 16 positions by default), three decode steps, then one mixed step (a decode, a 20-token prefill of a new sequence, the decode of a
// third), two decode steps of the three sequences together (padded to a batch of four on the CUDA
// backend); then the backend's failure paths: device memory too small (InsufficientMemory naming needed
// vs available), an exhausted KV pool, and an injected device fault (sticky EngineDead).
//
// Quantized checkpoints (FP8 per-channel, FP8 128x128 blocks, MXFP4 experts) run the same scenario
// against the CPU backend's quantized kernels under the same budgets: 4-row steps are weight-only fp32
// GEMVs like the CPU's (measured 3e-7 - 9e-7); 16-row steps widen the weights to bf16 tiles exactly
// (the scales go on the fp32 accumulators, or for dense Block128 into the x rounding) with x rounded to
// bf16 as for BF16 weights (measured up to 1.0e-2, plus routing flips within the allowance). --budget X overrides the budget for manual runs.
//
// Metric and budget: per logits row, ||cuda - cpu|| / ||cpu|| <= 2e-2, and the argmax agrees wherever
// the CPU's top-2 margin exceeds 2% of the row's spread (prefill rows: see the routing-flip allowance). Why 2e-2: the CUDA projections of BF16 weights
// run on bf16 tensor cores (mma.sync) with activations rounded to bf16 (relative error 2^-9 per element)
// where the CPU multiplies fp32 activations; each GEMM's output then carries ~2^-9/sqrt(fan-in)-scale
// relative noise per term, i.e. ~1e-3 of a row's norm, compounded over ~4 GEMMs per layer plus the
// expert GEMMs and the lm_head, through up to 5 layers: a few 1e-3 expected, 2e-2 leaves headroom for
// the random synthetic weights' larger activations while still catching any real bug (a wrong head,
// page, slot or routing is O(1)). Decode rows (m <= 4) use the fp32 GEMV and are much closer.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "cuda_backend/cuda_backend.h"
#include "engine/cuda_factory.h"
#include "engine/model.h"
#include "engine/sampler.h"
#if defined(GLM_CUDA_HARNESS)
#include "harness/harness.h"
#endif

namespace {

int g_passed = 0, g_failed = 0;

void report(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  (ok ? g_passed : g_failed)++;
}

constexpr double kBudgetBf16 = 2e-2;
// Steps of <= 4 rows run every projection through the fp32 GEMV (no bf16 rounding anywhere): the CUDA
// backend then differs from the CPU only by fp32 summation order, ~1e-6 measured; 1e-4 as in
// test/engine-vs-reference.test.ts. This is the exact check of the host plumbing (pages, slots, row
// maps, routing), free of the bf16 routing flips described below.
constexpr double kBudgetFp32 = 1e-4;
// The same fp32 path with a BF16 or FP8 KV cache (--kv): both backends store the same conversion of
// their K/V rows (kv_append is bit-identical to KvStorage::write), but the rows they convert differ by
// the ~1e-6 of fp32 summation order, and an element that close to a rounding boundary of the stored type
// lands on the neighbouring code on one backend only: a one-ulp difference of the cache (bf16: 2^-7
// relative, E4M3: 2^-3), rare but not noise-like. Such a flip moves a score by ~ulp * |q_i k_i| / sqrt(d)
// and the logits by about a thousandth of that ulp (measured with bf16 KV: 1.4e-4 on one prefill row of
// 'bf16-groups', where 1e-4 failed; every other row stays ~1e-6). Budgets: 1e-3 for BF16, 1e-2 for FP8
// (16x the ulp), still far below any real bug (a wrong page, slot, scale or head is O(1)).
constexpr double kBudgetFp32Bf16Kv = 1e-3, kBudgetFp32Fp8Kv = 1e-2;
double kBudget = kBudgetBf16;

struct RunOptions {
  int64_t step_rows = 16;    // --step-rows: max_step_rows of both models
  size_t prompt = 40;        // --prompt: tokens of the first prefill
  bool failure_paths = true; // --no-failure-paths: skip the pool / fault / memory checks
  double budget = 0;          // --budget X: replaces the budget chosen by --step-rows (0: that one)
  bool graphs = false;       // --graphs: also the CUDA-graph checks (check_graphs)
  bool graphs_only = false;  // --graphs-only: only those
  int decode_steps = 40;     // --decode-steps: decode steps of the graph checks' first session
  int generate_tokens = 16;  // --generate: tokens of the graph checks' Model::generate (device greedy)
  glm::KvType kv = glm::KvType::F32;  // --kv f32|bf16|fp8: the KV cache type of every model loaded after it
  bool batch_invariance = false;      // --batch-invariance: only check_batch_invariance
};
RunOptions g_opts;
std::vector<int32_t> g_mtp_prompt;  // --mtp-prompt a,b,c: the MTP checks' prompt (token ids)
int g_mtp_tokens = 12;              // --mtp-tokens N: tokens each MTP check generates

struct Compare {
  double worst_rel = 0;
  int argmax_mismatch = 0, rows = 0, over_budget = 0, non_finite = 0;
};

void compare_rows(const std::vector<float>& cuda, const std::vector<float>& cpu, int64_t vocab, Compare* c) {
  for (size_t r = 0; r * size_t(vocab) < cpu.size(); ++r) {
    const float* a = cuda.data() + r * size_t(vocab);
    const float* b = cpu.data() + r * size_t(vocab);
    double num = 0, den = 0;
    int64_t ia = 0, ib = 0, ib2 = -1;
    float lo = b[0], hi = b[0];
    for (int64_t i = 0; i < vocab; ++i) {
      const double d = double(a[i]) - double(b[i]);
      num += std::isnan(d) ? 1e30 : d * d;
      den += double(b[i]) * double(b[i]);
      if (a[i] > a[ia]) ia = i;
      if (b[i] > b[ib]) ib2 = ib, ib = i;
      else if (ib2 < 0 || b[i] > b[ib2]) ib2 = (i == ib ? ib2 : i);
      lo = std::min(lo, b[i]), hi = std::max(hi, b[i]);
    }
    const double rel = std::sqrt(num / std::max(den, 1e-30));
    if (std::getenv("GLM_E2E_VERBOSE") && rel > kBudget) std::printf("  row %zu: rel %.3e\n", r, rel);
    c->worst_rel = std::max(c->worst_rel, rel);
    if (!(rel <= kBudget)) c->over_budget++;
    if (!std::isfinite(rel)) c->non_finite++;
    const bool clear_winner = ib2 < 0 || double(b[ib] - b[ib2]) > 0.02 * double(hi - lo);
    if (clear_winner && ia != ib && rel <= kBudget) c->argmax_mismatch++;
    c->rows++;
  }
}

// A checkpoint's name in the report, with the KV type when it is not f32.
std::string label(const std::string& dir) {
  std::string n = dir.substr(dir.find_last_of('/') + 1);
  if (g_opts.kv != glm::KvType::F32) n += std::string(" [kv ") + glm::kv_type_name(g_opts.kv) + "]";
  return n;
}

int64_t argmax(const std::vector<float>& logits, int64_t vocab) {
  const float* row = logits.data() + logits.size() - size_t(vocab);
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i) if (row[i] > row[best]) best = i;
  return best;
}

glm::Status load(const std::string& dir, glm::BackendChoice backend, uint64_t kv_bytes, std::unique_ptr<glm::Model>* out) {
  glm::LoadOptions o;
  o.kv_type = g_opts.kv;  // both backends store the same KV type (kv_append converts as KvStorage::write)
  o.backend = backend;
  o.threads = 2;
  o.prefetch = false;
  o.max_step_rows = g_opts.step_rows;
  o.kv_cache_bytes = kv_bytes;
  return glm::Model::load(dir, o, nullptr, nullptr, out);
}

// One model's run of the scenario; every evaluate's logits in order.
struct Scenario {
  std::vector<std::vector<float>> logits;
  glm::Status status;
};

Scenario run_scenario(glm::Model& m, const std::vector<int32_t>& prompt) {
  Scenario s;
  const int64_t V = m.config().vocab_size;
  std::unique_ptr<glm::Sequence> a, b, c;
  auto fail = [&](glm::Status st) { s.status = st; return s; };
  if (!(s.status = m.create_sequence(1024, &a)).is_ok()) return s;
  if (!(s.status = m.create_sequence(1024, &b)).is_ok()) return s;
  if (!(s.status = m.create_sequence(1024, &c)).is_ok()) return s;
  auto eval = [&](std::vector<std::pair<glm::Sequence*, std::vector<int32_t>>> items, bool all) {
    std::vector<glm::EvalRequest> reqs(items.size());
    std::vector<glm::EvalRequest*> ptrs;
    for (size_t i = 0; i < items.size(); ++i) {
      reqs[i].sequence = items[i].first;
      reqs[i].tokens = items[i].second;
      reqs[i].all_logits = all;
      ptrs.push_back(&reqs[i]);
    }
    glm::Status st = m.evaluate(ptrs, nullptr);
    for (auto& r : reqs) s.logits.push_back(r.logits);
    return st;
  };
  // Prefill (all logits: every row of every chunk is compared).
  glm::Status st = eval({{a.get(), std::vector<int32_t>(prompt.begin(), prompt.begin() + long(g_opts.prompt))}}, true);
  if (!st.is_ok()) return fail(st);
  // Decode: the next token is a fixed function of the step so both backends see the same tokens.
  for (int i = 0; i < 3; ++i) {
    const int32_t next = int32_t((argmax(s.logits.back(), V) + 7 * i) % V);
    if (!(st = eval({{a.get(), {next}}}, false)).is_ok()) return fail(st);
  }
  std::vector<int32_t> c_prompt(prompt.begin(), prompt.begin() + 5);
  if (!(st = eval({{c.get(), c_prompt}}, false)).is_ok()) return fail(st);
  // Mixed step: a decode, a fresh 20-token prefill and another decode, in one forward step.
  std::vector<int32_t> b_prompt(prompt.begin() + 4, prompt.begin() + 24);
  if (!(st = eval({{a.get(), {3}}, {b.get(), b_prompt}, {c.get(), {11}}}, false)).is_ok()) return fail(st);
  // Two decode steps of all three (a batch of three: the CUDA backend pads it to its bucket of four,
  // whose padding row must neither write into these sequences' pages nor change their rows).
  for (int i = 0; i < 2; ++i) {
    if (!(st = eval({{a.get(), {int32_t(5 + i)}}, {b.get(), {int32_t(9 + i)}}, {c.get(), {int32_t(13 + i)}}}, false)).is_ok()) {
      return fail(st);
    }
  }
  m.release_sequence(a);
  m.release_sequence(b);
  m.release_sequence(c);
  return s;
}

// ---------------------------------------------------------------------------------------------
// CUDA graphs: the same decode work with graphs on and off must give bit-identical logits and tokens
// (the graph replays the very launches the eager step makes, with the same arguments: any difference is
// a replay that read a stale plan, a wrong page table width or a dangling buffer). KV pages of 8
// positions, so the first session (8 prompt tokens, 40 decode steps) crosses five page boundaries (widths 2 to 6:
// a recapture each); then three sessions decode together (a new shape), one is reset to a shorter
// context (another), and Model::generate selects greedy tokens on the device.
// ---------------------------------------------------------------------------------------------
struct GraphRun {
  std::vector<std::vector<float>> logits;  // every evaluated logits row, in order
  std::vector<int32_t> tokens;             // the first session's tokens, chosen on the host (argmax_token)
  std::vector<int32_t> generated;          // Model::generate, greedy (selected on the device)
  glm::Status status;
  glm::cuda_backend::CudaBackend::GraphStats stats;
  // Captures and replays of two phases: the first session's decode chain (one sequence, page-table
  // widths 2 to 6) and the growing-then-shrinking batch (1, 2, 3, 4, 3, 2, 1 sequences).
  uint64_t chain_captures = 0, chain_replays = 0, grow_captures = 0, grow_replays = 0;
};

// misuse: a short run (prefill and 4 decode steps) whose first capture makes a forbidden call.
GraphRun run_graph_scenario(glm::Model& m, const std::vector<int32_t>& prompt, bool misuse) {
  GraphRun g;
  const int64_t V = m.config().vocab_size;
  auto* cuda = dynamic_cast<glm::cuda_backend::CudaBackend*>(&m.backend());
  if (!cuda) {
    g.status = glm::Status::error(glm::ErrorCode::Internal, "not the CUDA backend");
    return g;
  }
  if (misuse) cuda->inject_capture_misuse();
  std::unique_ptr<glm::Sequence> a, b, c, d;
  for (auto* s : {&a, &b, &c, &d}) {
    if (!(g.status = m.create_sequence(256, s)).is_ok()) return g;
  }
  auto eval = [&](std::vector<std::pair<glm::Sequence*, std::vector<int32_t>>> items) {
    std::vector<glm::EvalRequest> reqs(items.size());
    std::vector<glm::EvalRequest*> ptrs;
    for (size_t i = 0; i < items.size(); ++i) {
      reqs[i].sequence = items[i].first;
      reqs[i].tokens = items[i].second;
      ptrs.push_back(&reqs[i]);
    }
    glm::Status st = m.evaluate(ptrs, nullptr);
    for (auto& r : reqs) g.logits.push_back(r.logits);
    return st;
  };
  auto next_of = [&](const std::vector<float>& l) { return glm::argmax_token(l.data(), V); };
  const std::vector<int32_t> p8(prompt.begin(), prompt.begin() + 8);
  if (!(g.status = eval({{a.get(), p8}})).is_ok()) return g;
  {
    // A decode step cancelled before its first layer (while its graph is being recorded): Aborted, the
    // session unchanged, and the next steps as if it never happened.
    std::atomic<bool> cancel{true};
    glm::EvalRequest r;
    r.sequence = a.get(), r.tokens = {next_of(g.logits.back())};
    std::vector<glm::EvalRequest*> one{&r};
    const glm::Status st = m.evaluate(one, &cancel);
    if (st.code() != glm::ErrorCode::Aborted || a->length() != 8) {
      g.status = glm::Status::error(glm::ErrorCode::Internal, "a cancelled decode step: " + st.message());
      return g;
    }
  }
  const auto chain_start = cuda->graph_stats();
  for (int i = 0; i < (misuse ? 4 : g_opts.decode_steps); ++i) {
    g.tokens.push_back(next_of(g.logits.back()));
    if (!(g.status = eval({{a.get(), {g.tokens.back()}}})).is_ok()) return g;
  }
  g.chain_captures = cuda->graph_stats().captures - chain_start.captures;
  g.chain_replays = cuda->graph_stats().replays - chain_start.replays;
  if (misuse) {
    g.stats = cuda->graph_stats();
    return g;
  }
  // Three sessions in one decode batch (a new graph shape), then b reset to a shorter context.
  if (!(g.status = eval({{b.get(), std::vector<int32_t>(prompt.begin() + 3, prompt.begin() + 8)}})).is_ok()) return g;
  if (!(g.status = eval({{c.get(), std::vector<int32_t>(prompt.begin() + 1, prompt.begin() + 20)}})).is_ok()) return g;
  for (int i = 0; i < 3; ++i) {
    const int32_t ta = int32_t((7 * i + 1) % V), tb = int32_t((5 * i + 2) % V), tc = int32_t((3 * i + 3) % V);
    if (!(g.status = eval({{a.get(), {ta}}, {b.get(), {tb}}, {c.get(), {tc}}})).is_ok()) return g;
  }
  m.truncate_sequence(b.get(), 2);
  for (int i = 0; i < 2; ++i) {
    if (!(g.status = eval({{b.get(), {int32_t(i + 5)}}, {c.get(), {int32_t(i + 9)}}})).is_ok()) return g;
  }
  // The third session alone at lengths 25 and 26: the first session's chain captured that shape (one
  // sequence, 4 pages) before the batch grew the op buffers, which must have dropped the graph
  // (replaying it would use freed buffers: the harness fails such a replay).
  for (int i = 0; i < 2; ++i) {
    if (!(g.status = eval({{c.get(), {int32_t(i + 13)}}})).is_ok()) return g;
  }
  // A batch that grows from one sequence to four and shrinks back: each joins with a short prompt (a
  // prefill step) and the batch then decodes one token; then they leave one by one, a decode step after
  // each. Batch buckets 1, 2, 4, 4 | 4, 2, 1: the padding rows must leave the real rows bit-identical
  // to graphs off, and sizes 3 and 4 share a graph.
  {
    const auto before = cuda->graph_stats();
    std::vector<std::unique_ptr<glm::Sequence>> p(4);
    for (auto& s : p) {
      if (!(g.status = m.create_sequence(256, &s)).is_ok()) return g;
    }
    std::vector<glm::Sequence*> active;
    int step = 0;
    auto decode_all = [&] {
      std::vector<std::pair<glm::Sequence*, std::vector<int32_t>>> items;
      for (size_t i = 0; i < active.size(); ++i) items.push_back({active[i], {int32_t((11 * step + 3 * int(i) + 1) % V)}});
      ++step;
      return eval(items);
    };
    for (size_t i = 0; i < p.size(); ++i) {
      // (Prompts of 9..12 tokens: every length of this phase, 9 to 16, is two 8-position pages.)
      if (!(g.status = eval({{p[i].get(), std::vector<int32_t>(prompt.begin() + long(i), prompt.begin() + long(9 + 2 * i))}})).is_ok()) return g;
      active.push_back(p[i].get());
      if (!(g.status = decode_all()).is_ok()) return g;
    }
    for (size_t i = p.size() - 1; i > 0; --i) {
      m.release_sequence(p[i]);
      active.pop_back();
      if (!(g.status = decode_all()).is_ok()) return g;
    }
    m.release_sequence(p[0]);
    g.grow_captures = cuda->graph_stats().captures - before.captures;
    g.grow_replays = cuda->graph_stats().replays - before.replays;
  }
  // Greedy generation: the engine asks the backend for the argmax token (device greedy).
  glm::GenerateParams gp;
  gp.max_tokens = std::min(g_opts.generate_tokens, g_opts.decode_steps);
  glm::GenerateResult res;
  if (!(g.status = m.generate(d.get(), p8, gp, nullptr, nullptr, nullptr, &res)).is_ok()) return g;
  for (const auto& t : res.tokens) g.generated.push_back(t.id);
  g.stats = cuda->graph_stats();
  for (auto* s : {&a, &b, &c, &d}) m.release_sequence(*s);
  return g;
}

void check_graphs(const std::string& dir, const std::vector<int32_t>& prompt) {
  const std::string name = label(dir) + ": graphs";
  auto load_graphs = [&](bool graphs, std::unique_ptr<glm::Model>* out) {
    glm::LoadOptions o;
    o.kv_type = g_opts.kv;
    o.backend = glm::BackendChoice::Cuda;
    o.threads = 2;
    o.prefetch = false;
    o.max_step_rows = g_opts.step_rows;
    o.kv_cache_bytes = 16u << 20;
    o.cuda_graphs = graphs;
    o.kv_page_tokens = 8;
    return glm::Model::load(dir, o, nullptr, nullptr, out);
  };
  std::unique_ptr<glm::Model> on, off, bad;
  glm::Status st = load_graphs(true, &on);
  if (st.is_ok()) st = load_graphs(false, &off);
  if (st.is_ok()) st = load_graphs(true, &bad);
  report(st.is_ok(), name + ": load with 8-position KV pages, graphs on and off " + st.message());
  if (!st.is_ok()) return;
  const GraphRun eager = run_graph_scenario(*off, prompt, false);
  const GraphRun graph = run_graph_scenario(*on, prompt, false);
  const GraphRun misuse = run_graph_scenario(*bad, prompt, true);
  for (const GraphRun* r : {&eager, &graph, &misuse}) report(r->status.is_ok(), name + ": scenario runs " + r->status.message());
  if (!eager.status.is_ok() || !graph.status.is_ok() || !misuse.status.is_ok()) return;

  // (y may be a shorter run: its rows must match x's first ones.)
  auto identical = [](const GraphRun& x, const GraphRun& y) {
    if (x.logits.size() < y.logits.size() || x.tokens.size() < y.tokens.size() || x.generated != y.generated) return false;
    if (!std::equal(y.tokens.begin(), y.tokens.end(), x.tokens.begin())) return false;
    for (size_t i = 0; i < y.logits.size(); ++i) {
      if (x.logits[i].size() != y.logits[i].size() ||
          std::memcmp(x.logits[i].data(), y.logits[i].data(), x.logits[i].size() * sizeof(float)) != 0) {
        return false;
      }
    }
    return true;
  };
  const auto& gs = graph.stats;
  char line[400];
  std::snprintf(line, sizeof line,
                "%s: %zu logits rows and %zu+%zu tokens bit-identical with graphs on and off (on: %llu captures, %llu replays, "
                "%llu eager decode steps, %llu failures, %llu invalidations)",
                name.c_str(), graph.logits.size(), graph.tokens.size(), graph.generated.size(), (unsigned long long)gs.captures,
                (unsigned long long)gs.replays, (unsigned long long)gs.eager_decode_steps, (unsigned long long)gs.capture_failures,
                (unsigned long long)gs.invalidations);
  report(identical(eager, graph) && graph.logits.size() == eager.logits.size(), line);
  // Page-table widths 1..4 of one session, 3 and 2 sessions, greedy variants: several captures, and
  // most steps replayed; graphs off never captures.
  // The batch's larger op buffers dropped the graphs made before (invalidations), which were recaptured.
  report(gs.replays >= uint64_t(g_opts.decode_steps) && gs.capture_failures == 0 && gs.invalidations >= 1,
         name + ": decode steps were captured once per shape and replayed; buffer growth dropped the graphs");
  // Graph buckets (issue 18): the chain's lengths 9..48 over 8-position pages take page-table widths 2
  // to 6, whose buckets are 2, 4 and 8: at most three captures (exact widths took five); the growing and
  // shrinking batch's seven decode steps take the batch buckets 1, 2 and 4: at most three captures
  // (exact sizes took four) and the rest replayed. (A step whose op buffer must grow first runs eagerly
  // and is neither.)
  std::snprintf(line, sizeof line,
                "%s: graph buckets: one sequence over widths 2..6: %llu captures, %llu replays (want <= 3 captures); batch "
                "1..4..1: %llu captures, %llu replays (want <= 3, >= 4)",
                name.c_str(), (unsigned long long)graph.chain_captures, (unsigned long long)graph.chain_replays,
                (unsigned long long)graph.grow_captures, (unsigned long long)graph.grow_replays);
  report(graph.chain_captures <= 3 && graph.chain_captures + graph.chain_replays + 2 >= uint64_t(g_opts.decode_steps) &&
             graph.grow_captures <= 3 && graph.grow_replays >= 4,
         line);
  report(eager.stats.captures == 0 && eager.stats.replays == 0, name + ": cudaGraphs off never captures");
  // Device greedy: Model::generate's tokens are the host argmax_token of the same logits (the first
  // session's chain starts from the same prompt on a fresh session).
  const bool same_chain = !graph.generated.empty() && graph.generated.size() <= graph.tokens.size() &&
                          std::equal(graph.generated.begin(), graph.generated.end(), graph.tokens.begin());
  report(same_chain, name + ": device greedy tokens == host greedy on the same logits (" + std::to_string(graph.generated.size()) + " tokens)");
  // A synchronous call inside a capture is rejected by the runtime (the harness), the step runs
  // eagerly, and the results do not change.
  GraphRun eager_prefix = eager;
  eager_prefix.generated.clear();  // (the short run does not generate)
  report(misuse.stats.capture_failures == 1 && misuse.stats.last_failure.find("captur") != std::string::npos &&
             misuse.stats.captures >= 1 && misuse.stats.replays >= 1 && identical(eager_prefix, misuse),
         name + ": capture misuse caught and the step ran eagerly: " + misuse.stats.last_failure);
}

// ---------------------------------------------------------------------------------------------
// Device sampling: Model::generate with temperature, top-k/top-p/min-p, penalties, logprobs and a seed
// chooses each token on the device (cuda::sample_tokens inside the decode graph) from the Sampler's u
// and history. Compared on the same CUDA model, not with the CPU backend (whose logits differ by ~1e-6,
// enough to move a sampled token at a boundary): (a) device sampling vs host sampling of the same
// logits (LoadOptions::cuda_device_sampling off): identical tokens and top ids, logprobs within 1e-6
// (sample_tokens' own budget vs compute_logprobs: fp32 exp terms vs the CPU's double exp, another
// summation order; 3e-8 measured here at logprobs of magnitude < 10; a wrong token or id is O(1));
// (b) graphs on vs off: bit-identical tokens and logprobs (the graph replays the same launches).
// ---------------------------------------------------------------------------------------------
struct SampledRun {
  std::vector<std::vector<glm::GeneratedToken>> runs;  // one per parameter set
  glm::Status status;
  glm::cuda_backend::CudaBackend::GraphStats stats;
};

SampledRun run_sampled(glm::Model& m, const std::vector<int32_t>& prompt, int tokens) {
  SampledRun out;
  std::vector<glm::SamplingParams> sets(4);
  sets[0].temperature = 0.8, sets[0].top_k = 40, sets[0].top_p = 0.9, sets[0].min_p = 0.02, sets[0].top_logprobs = 3;
  sets[0].seed = 7;
  sets[1].temperature = 1.3, sets[1].repetition_penalty = 1.3, sets[1].presence_penalty = 0.4;
  sets[1].frequency_penalty = 0.3, sets[1].seed = 11;
  sets[2].frequency_penalty = 0.5, sets[2].top_logprobs = 5;  // greedy with a penalty: the sampled path at temperature 0
  sets[3].temperature = 2.0, sets[3].top_p = 0.5, sets[3].top_logprobs = 0, sets[3].seed = 3;
  for (const auto& sp : sets) {
    std::unique_ptr<glm::Sequence> s;
    if (!(out.status = m.create_sequence(64, &s)).is_ok()) return out;
    glm::GenerateParams gp;
    gp.max_tokens = tokens;
    gp.sampling = sp;
    glm::GenerateResult res;
    out.status = m.generate(s.get(), prompt, gp, nullptr, nullptr, nullptr, &res);
    m.release_sequence(s);
    if (!out.status.is_ok()) return out;
    out.runs.push_back(res.tokens);
  }
  if (auto* cuda = dynamic_cast<glm::cuda_backend::CudaBackend*>(&m.backend())) out.stats = cuda->graph_stats();
  return out;
}

void check_device_sampling(const std::string& dir, const std::vector<int32_t>& prompt) {
  const std::string name = label(dir) + ": device sampling";
  auto load_with = [&](bool graphs, bool device, std::unique_ptr<glm::Model>* out) {
    glm::LoadOptions o;
    o.kv_type = g_opts.kv;
    o.backend = glm::BackendChoice::Cuda;
    o.threads = 2;
    o.prefetch = false;
    o.max_step_rows = g_opts.step_rows;
    o.kv_cache_bytes = 16u << 20;
    o.cuda_graphs = graphs;
    o.cuda_device_sampling = device;
    o.kv_page_tokens = 8;
    return glm::Model::load(dir, o, nullptr, nullptr, out);
  };
  std::unique_ptr<glm::Model> dev_graph, dev_eager, host_graph;
  glm::Status st = load_with(true, true, &dev_graph);
  if (st.is_ok()) st = load_with(false, true, &dev_eager);
  if (st.is_ok()) st = load_with(true, false, &host_graph);
  report(st.is_ok(), name + ": load (graphs on/off, device sampling on/off) " + st.message());
  if (!st.is_ok()) return;
  const std::vector<int32_t> p8(prompt.begin(), prompt.begin() + 8);
  const int n = g_opts.generate_tokens + 4;
  const SampledRun a = run_sampled(*dev_graph, p8, n), b = run_sampled(*dev_eager, p8, n), h = run_sampled(*host_graph, p8, n);
  for (const SampledRun* r : {&a, &b, &h}) report(r->status.is_ok(), name + ": generate runs " + r->status.message());
  if (!a.status.is_ok() || !b.status.is_ok() || !h.status.is_ok()) return;

  // (a) device vs host selection of the same logits.
  bool same_tokens = a.runs.size() == h.runs.size();
  double worst_lp = 0;
  size_t compared = 0, distinct = 0;
  for (size_t i = 0; same_tokens && i < a.runs.size(); ++i) {
    same_tokens = a.runs[i].size() == h.runs[i].size() && a.runs[i].size() == size_t(n);
    for (size_t j = 0; same_tokens && j < a.runs[i].size(); ++j) {
      const auto &x = a.runs[i][j], &y = h.runs[i][j];
      same_tokens = x.id == y.id && x.logprobs.top.size() == y.logprobs.top.size();
      if (j == 0 || x.id != a.runs[i][j - 1].id) ++distinct;
      worst_lp = std::max(worst_lp, std::fabs(double(x.logprobs.chosen) - double(y.logprobs.chosen)));
      for (size_t k = 0; same_tokens && k < x.logprobs.top.size(); ++k) {
        same_tokens = x.logprobs.top[k].first == y.logprobs.top[k].first;
        worst_lp = std::max(worst_lp, std::fabs(double(x.logprobs.top[k].second) - double(y.logprobs.top[k].second)));
        ++compared;
      }
    }
  }
  char line[400];
  std::snprintf(line, sizeof line,
                "%s: %zu runs x %d tokens: device == host sampling of the same logits (tokens, top ids); %zu top logprobs, "
                "worst |diff| %.2e (budget 1e-6); %zu token changes",
                name.c_str(), a.runs.size(), n, compared, worst_lp, distinct);
  report(same_tokens && worst_lp <= 1e-6 && compared > 0 && !std::isnan(worst_lp), line);
  // (b) graphs on vs off: the same launches, bit for bit.
  bool identical = a.runs.size() == b.runs.size();
  for (size_t i = 0; identical && i < a.runs.size(); ++i) {
    identical = a.runs[i].size() == b.runs[i].size();
    for (size_t j = 0; identical && j < a.runs[i].size(); ++j) {
      const auto &x = a.runs[i][j].logprobs, &y = b.runs[i][j].logprobs;
      identical = a.runs[i][j].id == b.runs[i][j].id && std::memcmp(&x.chosen, &y.chosen, 4) == 0 && x.top == y.top;
    }
  }
  report(identical, name + ": tokens and logprobs bit-identical with graphs on and off");
  // The sampled decode steps ran on the device inside replayed graphs; host sampling never did.
  std::snprintf(line, sizeof line,
                "%s: %llu device-sampled steps (graphs on: %llu captures, %llu replays, %llu failures; off: %llu); host: %llu",
                name.c_str(), (unsigned long long)a.stats.device_sampled_steps, (unsigned long long)a.stats.captures,
                (unsigned long long)a.stats.replays, (unsigned long long)a.stats.capture_failures,
                (unsigned long long)b.stats.device_sampled_steps, (unsigned long long)h.stats.device_sampled_steps);
  report(a.stats.device_sampled_steps == 4u * unsigned(n) && b.stats.device_sampled_steps == a.stats.device_sampled_steps &&
             h.stats.device_sampled_steps == 0 && a.stats.captures >= 1 && a.stats.replays >= 4u * unsigned(n - 8) &&
             a.stats.capture_failures == 0,
         line);
}

// ---------------------------------------------------------------------------------------------
// Batch invariance (issue 18, item 5): one request's logits when it runs alone vs when its steps are
// shared with 15 other requests of different lengths that join in waves (their prefills mixed with the
// decodes), finish early, or are disposed mid-way. Teacher-forced: the target is fed the tokens its
// solo run chose greedily, so both runs see the same inputs and every step can be compared. Alone, every
// step has one row (fp32 GEMVs, attention_decode); shared, the target's rows go through the bf16
// tensor-core GEMMs and grouped experts (> 4 rows), attention_prefill / attention_prefill_mma in mixed
// steps, and a decode batch whose page-table width is set by the longest sequence (cuda/README.md,
// "Batch invariance"). Metric and budget: the end-to-end BF16 budget per logits row (rel L2 <= 2e-2, argmax
// equal wherever the solo top-2 margin exceeds 2% of the row's spread); plus, reported and required,
// every step's argmax equal — which is what makes the greedy tokens identical (a greedy run is this
// teacher-forced run on its own argmaxes), allowed to differ only at such a near tie.
// ---------------------------------------------------------------------------------------------
void check_batch_invariance(const std::string& dir) {
  const std::string name = label(dir) + ": batch invariance";
  kBudget = g_opts.budget > 0 ? g_opts.budget : kBudgetBf16;
  auto load_model = [&](std::unique_ptr<glm::Model>* out) {
    glm::LoadOptions o;
    o.kv_type = g_opts.kv;
    o.backend = glm::BackendChoice::Cuda;
    o.threads = 2;
    o.prefetch = false;
    o.max_step_rows = g_opts.step_rows;
    o.kv_cache_bytes = 16u << 20;
    return glm::Model::load(dir, o, nullptr, nullptr, out);
  };
  std::unique_ptr<glm::Model> solo, shared;
  glm::Status st = load_model(&solo);
  if (st.is_ok()) st = load_model(&shared);
  report(st.is_ok(), name + ": load " + st.message());
  if (!st.is_ok()) return;
  const int64_t V = solo->config().vocab_size;
  constexpr int kOthers = 15, kDecode = 10;
  auto prompt_of = [&](int i, int n) {
    std::vector<int32_t> p(static_cast<size_t>(n));
    for (int j = 0; j < n; ++j) p[size_t(j)] = int32_t((j * 37 + 11 * i + 5) % V);
    return p;
  };
  const std::vector<int32_t> target_prompt = prompt_of(0, 13);

  // Alone: the prompt, then kDecode greedy decode steps.
  std::vector<std::vector<float>> alone;
  std::vector<int32_t> fed;  // the tokens the target is fed after its prompt
  {
    std::unique_ptr<glm::Sequence> t;
    st = solo->create_sequence(512, &t);
    glm::EvalRequest r;
    r.sequence = t.get(), r.tokens = target_prompt;
    std::vector<glm::EvalRequest*> one{&r};
    if (st.is_ok()) st = solo->evaluate(one, nullptr);
    for (int k = 0; st.is_ok() && k < kDecode; ++k) {
      alone.push_back(r.logits);
      fed.push_back(glm::argmax_token(r.logits.data(), V));
      r.tokens = {fed.back()};
      st = solo->evaluate(one, nullptr);
    }
    if (st.is_ok()) alone.push_back(r.logits);
    solo->release_sequence(t);
  }
  report(st.is_ok(), name + ": the request alone " + st.message());
  if (!st.is_ok()) return;

  // Shared: the same request among 15 others. Others join in three waves (steps 0, 1, 2) with prompts of
  // 2..26 tokens; some stop after 2..4 decode steps, two are disposed mid-way, the rest run to the end.
  struct Other {
    std::unique_ptr<glm::Sequence> seq;
    int join = 0, last = 0;  // the step it joins at and its last step
    bool dispose = false;
    int32_t next = 0;
  };
  std::vector<Other> others(kOthers);
  for (int i = 0; i < kOthers; ++i) {
    Other& o = others[size_t(i)];
    o.join = i < 6 ? 0 : i < 11 ? 1 : 2;                 // all 16 share steps 2 and 3
    o.last = i % 4 == 1 ? o.join + 2 + i % 3 : kDecode;  // every fourth finishes early
    o.dispose = i == 4 || i == 9;                         // disposed (an abort) half-way
    if (o.dispose) o.last = o.join + 4;
    if (!(st = shared->create_sequence(512, &o.seq)).is_ok()) break;
  }
  std::unique_ptr<glm::Sequence> t;
  if (st.is_ok()) st = shared->create_sequence(512, &t);
  std::vector<std::vector<float>> together;
  int max_batch = 0;
  for (int k = 0; st.is_ok() && k <= kDecode; ++k) {
    std::vector<glm::EvalRequest> reqs(1 + kOthers);
    std::vector<glm::EvalRequest*> ptrs;
    reqs[0].sequence = t.get();
    reqs[0].tokens = k == 0 ? target_prompt : std::vector<int32_t>{fed[size_t(k - 1)]};
    ptrs.push_back(&reqs[0]);
    std::vector<int> idx;
    for (int i = 0; i < kOthers; ++i) {
      Other& o = others[size_t(i)];
      if (!o.seq || k < o.join || k > o.last) continue;
      reqs[size_t(1 + i)].sequence = o.seq.get();
      reqs[size_t(1 + i)].tokens = k == o.join ? prompt_of(i + 1, 2 + (i * 7) % 25) : std::vector<int32_t>{o.next};
      ptrs.push_back(&reqs[size_t(1 + i)]);
      idx.push_back(i);
    }
    max_batch = std::max(max_batch, int(ptrs.size()));
    if (!(st = shared->evaluate(ptrs, nullptr)).is_ok()) break;
    together.push_back(reqs[0].logits);
    for (int i : idx) {
      Other& o = others[size_t(i)];
      o.next = glm::argmax_token(reqs[size_t(1 + i)].logits.data(), V);
      if (k == o.last && o.dispose) shared->release_sequence(o.seq);  // disposed mid-way: its pages go back
    }
  }
  report(st.is_ok(), name + ": the request among " + std::to_string(kOthers) + " others " + st.message());
  if (!st.is_ok() || together.size() != alone.size()) return;

  Compare c;
  int argmax_differs = 0;
  for (size_t k = 0; k < alone.size(); ++k) {
    compare_rows(together[k], alone[k], V, &c);
    if (glm::argmax_token(together[k].data(), V) != glm::argmax_token(alone[k].data(), V)) ++argmax_differs;
  }
  char line[400];
  std::snprintf(line, sizeof line,
                "%s: %d steps alone vs in batches of up to %d requests: worst rel L2 %.2e (budget %.0e), %d over, argmax "
                "differs at %d steps (%d outside near ties): greedy tokens %s",
                name.c_str(), c.rows, max_batch, c.worst_rel, kBudget, c.over_budget, argmax_differs, c.argmax_mismatch,
                argmax_differs == 0 ? "identical" : "differ at a near tie");
  report(c.over_budget == 0 && c.non_finite == 0 && c.argmax_mismatch == 0 && c.rows == kDecode + 1, line);
  for (auto& o : others) shared->release_sequence(o.seq);
  shared->release_sequence(t);
}

void check_checkpoint(const std::string& dir) {
  const std::string name = label(dir);
  if (g_opts.batch_invariance) return check_batch_invariance(dir);
  if (g_opts.graphs_only) {
    std::vector<int32_t> prompt(24);
    for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 37 + 11) % 97);
    check_graphs(dir, prompt);
    return check_device_sampling(dir, prompt);
  }
  std::unique_ptr<glm::Model> cpu, gpu;
  glm::Status st = load(dir, glm::BackendChoice::Cpu, 0, &cpu);
  report(st.is_ok(), name + ": load on the CPU backend " + st.message());
  st = load(dir, glm::BackendChoice::Cuda, 16u << 20, &gpu);
  report(st.is_ok() && std::strcmp(gpu->backend_name(), "cuda") == 0, name + ": load on the CUDA backend (harness) " + st.message());
  if (!cpu || !gpu) return;
  const int64_t V = cpu->config().vocab_size;
  // --prompt 300 crosses the 256-token KV page (minutes on the harness; CI runs short ones).
  std::vector<int32_t> prompt(std::max<size_t>(g_opts.prompt, 24));
  const double fp32_budget = g_opts.kv == glm::KvType::F32 ? kBudgetFp32 : g_opts.kv == glm::KvType::BF16 ? kBudgetFp32Bf16Kv : kBudgetFp32Fp8Kv;
  kBudget = g_opts.budget > 0 ? g_opts.budget : g_opts.step_rows <= 4 ? fp32_budget : kBudgetBf16;
  for (size_t i = 0; i < prompt.size(); ++i) prompt[i] = int32_t((i * 37 + 11) % size_t(V));

  const Scenario want = run_scenario(*cpu, prompt);
  const Scenario got = run_scenario(*gpu, prompt);
  report(want.status.is_ok(), name + ": scenario on CPU " + want.status.message());
  report(got.status.is_ok(), name + ": scenario on CUDA " + got.status.message());
  if (!want.status.is_ok() || !got.status.is_ok() || want.logits.size() != got.logits.size()) return;
  const char* phases[] = {"prefill (several steps)", "decode 1", "decode 2", "decode 3", "prefill 5 (seq C)",
                          "mixed: decode A", "mixed: prefill B (20)", "mixed: decode C", "batch of 3: A", "batch of 3: B",
                          "batch of 3: C", "batch of 3 again: A", "batch of 3 again: B", "batch of 3 again: C"};
  for (size_t i = 0; i < want.logits.size(); ++i) {
    Compare c;
    compare_rows(got.logits[i], want.logits[i], V, &c);
    // Prefill rows (more than 4 per step) run the bf16 tensor-core GEMMs: a token whose top-k expert
    // choice is a near tie can flip under the bf16 rounding of its activations and then differs by
    // O(1) — a discrete effect, not noise. Up to 5% of them may exceed the budget; the rest, and every
    // decode row (fp32 GEMV path), must be within it. (With every step <= 4 rows, i.e. the fp32 path
    // throughout — --step-rows 4 — all 300 rows of a page-crossing prefill match to ~1e-6.)
    const int allowed = c.rows > 4 && g_opts.step_rows > 4 ? c.rows / 20 : 0;
    // The batches of three decode over contexts whose K/V came from tensor-core steps (B's 20-token
    // prefill in the mixed step): a routing flip at one of those positions is in every later row's
    // attention, so there the budget is 2.5x, still far below the O(1) of a wrong page, slot or head.
    // (Measured on 'base', 16-row steps: 2.0e-2 and 2.2e-2 for B, argmax equal; A and C within 2e-2.)
    const bool history_budget = i >= 8 && g_opts.step_rows > 4;
    if (history_budget && c.over_budget > 0 && c.worst_rel <= 2.5 * kBudget) c.over_budget = 0;
    char line[320];
    std::snprintf(line, sizeof line, "%s: %s: %d rows, worst rel L2 %.2e, %d over the budget %.0e (allowed %d), argmax mismatches %d",
                  name.c_str(), i < 14 ? phases[i] : "?", c.rows, c.worst_rel, c.over_budget,
                  history_budget ? 2.5 * kBudget : kBudget, allowed, c.argmax_mismatch);
    report(c.over_budget <= allowed && c.non_finite == 0 && c.argmax_mismatch == 0, line);
  }

  if (g_opts.graphs) check_graphs(dir, prompt);
  if (!g_opts.failure_paths) return;
  // A one-page pool: a second sequence takes the idle first one's page (the scheduler reclaims idle
  // sessions' pages before anything else), and the first recomputes its tokens on its next turn, with
  // the same logits as a sequence that never lost its page.
  {
    std::unique_ptr<glm::Model> small;
    glm::CudaBackendOptions dummy;
    (void)dummy;
    st = load(dir, glm::BackendChoice::Cuda, 1, &small);  // rounds down to the minimum: one page
    report(st.is_ok(), name + ": load with a one-page KV pool " + st.message());
    if (small) {
      std::unique_ptr<glm::Sequence> s1, s2;
      (void)small->create_sequence(1024, &s1);
      (void)small->create_sequence(1024, &s2);
      glm::EvalRequest r1, r2;
      r1.sequence = s1.get(), r1.tokens = {1, 2, 3};
      r2.sequence = s2.get(), r2.tokens = {4, 5};
      std::vector<glm::EvalRequest*> one{&r1}, two{&r2};
      const glm::Status ok1 = small->evaluate(one, nullptr);
      const glm::Status ok2 = small->evaluate(two, nullptr);
      report(ok1.is_ok() && ok2.is_ok() && s1->computed == 0 && s1->length() == 3,
             name + ": a second sequence takes the idle first one's page " + ok1.message() + ok2.message());
      small->release_sequence(s2);
      glm::EvalRequest r3;
      r3.sequence = s1.get(), r3.tokens = {7};
      std::vector<glm::EvalRequest*> three{&r3};
      const glm::Status again = small->evaluate(three, nullptr);
      std::unique_ptr<glm::Sequence> s4;
      (void)small->create_sequence(1024, &s4);
      glm::EvalRequest r4;
      r4.sequence = s4.get(), r4.tokens = {1, 2, 3, 7};
      std::vector<glm::EvalRequest*> four{&r4};
      small->release_sequence(s1);
      const glm::Status fresh = small->evaluate(four, nullptr);
      report(again.is_ok() && fresh.is_ok() && r3.logits == r4.logits,
             name + ": the first recomputes on its next turn, bit-identical " + again.message() + fresh.message());
    }
  }

#if defined(GLM_CUDA_HARNESS)
  // (Harness only: fault injection and a capped device memory are emulated there.)
  // A device fault kills the model for good: the failing step and every later call say ENGINE_DEAD.
  {
    std::unique_ptr<glm::Sequence> s1;
    (void)gpu->create_sequence(64, &s1);
    glm::EvalRequest r;
    r.sequence = s1.get(), r.tokens = {1, 2, 3};
    std::vector<glm::EvalRequest*> batch{&r};
    glm::harness::fail_next_launch("injected device fault");
    const glm::Status first = gpu->evaluate(batch, nullptr);
    const glm::Status later = gpu->evaluate(batch, nullptr);
    std::unique_ptr<glm::Sequence> s2;
    const glm::Status create = gpu->create_sequence(64, &s2);
    report(first.code() == glm::ErrorCode::EngineDead && later.code() == glm::ErrorCode::EngineDead &&
               create.code() == glm::ErrorCode::EngineDead && later.message().find("injected device fault") != std::string::npos &&
               s1->length() == 0,
           name + ": sticky device error -> ENGINE_DEAD: " + later.message());
    (void)cudaGetLastError();  // the harness's error is per process; the next model starts clean
  }

  // Too little device memory: a typed error naming needed and available bytes, before any upload.
  {
    const size_t in_use = glm::harness::device_bytes_in_use();
    glm::harness::set_device_memory(in_use + (64u << 10));
    std::unique_ptr<glm::Model> none;
    st = load(dir, glm::BackendChoice::Cuda, 0, &none);
    glm::harness::set_device_memory(size_t(1) << 30);
    report(st.code() == glm::ErrorCode::InsufficientMemory && st.message().find("needs") != std::string::npos &&
               st.message().find("available") != std::string::npos && glm::harness::device_bytes_in_use() == in_use,
           name + ": too small a device -> INSUFFICIENT_MEMORY: " + st.message());
  }
#endif
}

// A checkpoint the CUDA backend cannot run (e.g. MXFP4 experts whose hidden size is not a multiple of
// 32): loading it there is a typed UNSUPPORTED_FORMAT that names the reason, and nothing stays allocated.
// ---------------------------------------------------------------------------------------------
// The MTP layer (speculative decoding) on the CUDA backend: asked for at load (off by default there),
// its draft logits at every position of a prompt against the CPU backend's (the trunk's budget: 4-row
// steps are the fp32 path), and greedy generation with 1 and 2 drafts per round token for token equal
// to generation without drafts on the same backend and to the CPU backend's, with drafts proposed and
// accepted (on the trained default model: its MTP layer agrees with the trunk most of the time).
// ---------------------------------------------------------------------------------------------
void check_mtp(const std::string& dir, const std::vector<int32_t>& prompt, int64_t max_tokens) {
  const std::string name = label(dir) + " MTP";
  auto load_spec = [&](glm::BackendChoice b, int64_t draft_tokens, std::unique_ptr<glm::Model>* out) {
    glm::LoadOptions o;
    o.kv_type = g_opts.kv;
    o.backend = b;
    o.threads = 2;
    o.prefetch = false;
    o.max_step_rows = g_opts.step_rows;
    o.kv_cache_bytes = b == glm::BackendChoice::Cuda ? (16u << 20) : 0;
    o.draft_tokens = draft_tokens;
    return glm::Model::load(dir, o, nullptr, nullptr, out);
  };
  std::unique_ptr<glm::Model> cpu, gpu, plain;
  glm::Status st = load_spec(glm::BackendChoice::Cpu, 1, &cpu);
  report(st.is_ok(), name + ": load on the CPU backend, 1 draft " + st.message());
  st = load_spec(glm::BackendChoice::Cuda, 1, &gpu);
  report(st.is_ok() && gpu->draft_tokens() == 1 && gpu->speculation_reason() == "requested",
         name + ": the CUDA backend runs the MTP layer when asked: " + (gpu ? gpu->speculation_reason() : st.message()));
  st = load_spec(glm::BackendChoice::Cuda, -1, &plain);
  report(st.is_ok() && plain->draft_tokens() == 0 && gpu && plain->backend().kv_pool().page_bytes * uint64_t(plain->config().num_hidden_layers + 1) ==
                        gpu->backend().kv_pool().page_bytes * uint64_t(plain->config().num_hidden_layers),
         name + ": off by default on the CUDA backend, with no MTP KV layer: " + (plain ? plain->speculation_reason() : st.message()));
  if (!cpu || !gpu || !plain) return;
  const int64_t V = cpu->config().vocab_size;

  // Draft logits at every position: the prompt in one evaluate (several steps), then two more tokens.
  auto drafts_of = [&](glm::Model& m, std::vector<float>* trunk, std::vector<float>* drafts) {
    std::unique_ptr<glm::Sequence> seq;
    glm::Status s = m.create_sequence(512, &seq);
    for (const auto& part : {prompt, std::vector<int32_t>{prompt[1], prompt[2]}}) {
      if (!s.is_ok()) break;
      glm::EvalRequest r;
      r.sequence = seq.get(), r.tokens = part, r.all_logits = true, r.draft_logits = true;
      std::vector<glm::EvalRequest*> one{&r};
      s = m.evaluate(one, nullptr);
      trunk->insert(trunk->end(), r.logits.begin(), r.logits.end());
      drafts->insert(drafts->end(), r.drafts.begin(), r.drafts.end());
    }
    m.release_sequence(seq);
    return s;
  };
  std::vector<float> cpu_trunk, cpu_drafts, gpu_trunk, gpu_drafts;
  const glm::Status sc = drafts_of(*cpu, &cpu_trunk, &cpu_drafts);
  const glm::Status sg = drafts_of(*gpu, &gpu_trunk, &gpu_drafts);
  const size_t want_rows = prompt.size() - 1 + 2;  // a row per pair: (h_t, token t+1)
  report(sc.is_ok() && sg.is_ok() && cpu_drafts.size() == want_rows * size_t(V) && gpu_drafts.size() == cpu_drafts.size(),
         name + ": draft logits of every position on both backends (" + std::to_string(gpu_drafts.size() / size_t(V)) + " rows) " +
             sc.message() + sg.message());
  if (gpu_drafts.size() == cpu_drafts.size() && !cpu_drafts.empty()) {
    Compare trunk, mtp;
    compare_rows(gpu_trunk, cpu_trunk, V, &trunk);
    compare_rows(gpu_drafts, cpu_drafts, V, &mtp);
    char buf[256];
    std::snprintf(buf, sizeof buf, ": MTP draft logits vs CPU over %d rows: worst rel L2 %.2e (budget %.0e), %d clear argmax mismatches; trunk %.2e",
                  mtp.rows, mtp.worst_rel, kBudget, mtp.argmax_mismatch, trunk.worst_rel);
    report(mtp.over_budget == 0 && mtp.argmax_mismatch == 0 && mtp.non_finite == 0 && trunk.over_budget == 0, name + buf);
  }

  // Greedy generation with and without drafts: the same tokens.
  auto generate = [&](glm::Model& m, int64_t k, glm::GenerateResult* res) {
    std::unique_ptr<glm::Sequence> seq;
    glm::Status s = m.create_sequence(512, &seq);
    glm::GenerateParams gp;
    gp.max_tokens = max_tokens;
    gp.draft_tokens = k;
    if (s.is_ok()) s = m.generate(seq.get(), prompt, gp, nullptr, nullptr, nullptr, res);
    m.release_sequence(seq);
    return s;
  };
  auto ids = [](const glm::GenerateResult& r) {
    std::vector<int32_t> v;
    for (const auto& t : r.tokens) v.push_back(t.id);
    return v;
  };
  glm::GenerateResult off, k1, k2, cpu_k1;
  const glm::Status s0 = generate(*plain, 0, &off), s1 = generate(*gpu, 1, &k1), s2 = generate(*gpu, 2, &k2),
                    s3 = generate(*cpu, 1, &cpu_k1);
  report(s0.is_ok() && s1.is_ok() && s2.is_ok() && s3.is_ok() && int64_t(off.tokens.size()) == max_tokens,
         name + ": greedy generation with and without drafts " + s0.message() + s1.message() + s2.message() + s3.message());
  char buf[256];
  std::snprintf(buf, sizeof buf, ": %zu greedy tokens identical without drafts, with k=1 (%lld of %lld drafts accepted) and k=2 (%lld of %lld), and to the CPU's",
                off.tokens.size(), (long long)k1.accepted_draft_tokens, (long long)k1.draft_tokens, (long long)k2.accepted_draft_tokens,
                (long long)k2.draft_tokens);
  report(ids(off) == ids(k1) && ids(off) == ids(k2) && ids(off) == ids(cpu_k1) && k1.draft_tokens > 0 && k2.draft_tokens > 0 &&
             k1.accepted_draft_tokens > 0,
         name + buf);
  std::snprintf(buf, sizeof buf, ": the CPU backend's k=1 run proposed %lld drafts and accepted %lld; the CUDA backend %lld and %lld",
                (long long)cpu_k1.draft_tokens, (long long)cpu_k1.accepted_draft_tokens, (long long)k1.draft_tokens,
                (long long)k1.accepted_draft_tokens);
  report(cpu_k1.draft_tokens == k1.draft_tokens && cpu_k1.accepted_draft_tokens == k1.accepted_draft_tokens, name + buf);
}

void check_unsupported(const std::string& dir) {
  const std::string name = dir.substr(dir.find_last_of('/') + 1);
#if defined(GLM_CUDA_HARNESS)
  const size_t in_use = glm::harness::device_bytes_in_use();
#endif
  std::unique_ptr<glm::Model> gpu;
  const glm::Status st = load(dir, glm::BackendChoice::Cuda, 16u << 20, &gpu);
  bool released = true;
#if defined(GLM_CUDA_HARNESS)
  released = glm::harness::device_bytes_in_use() == in_use;
#endif
  report(st.code() == glm::ErrorCode::UnsupportedFormat && !gpu && released,
         name + ": the CUDA backend refuses it with UNSUPPORTED_FORMAT: " + st.message());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: glm_cuda_backend_tests <checkpoint dir>...\n");
    return 2;
  }
  {
    const glm::Status st = glm::cuda_backend_available();
    report(st.is_ok(), "the harness device counts as usable (compute capability 8.0) " + st.message());
  }
  // Options apply to the checkpoints after them: [--step-rows N] [--prompt N] [--no-failure-paths] dir...;
  // --expect-unsupported dir checks that the CUDA backend refuses dir with a typed error.
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--step-rows" && i + 1 < argc) g_opts.step_rows = std::atoll(argv[++i]);
    else if (a == "--prompt" && i + 1 < argc) g_opts.prompt = size_t(std::max(1, std::atoi(argv[++i])));
    else if (a == "--no-failure-paths") g_opts.failure_paths = false;
    else if (a == "--budget" && i + 1 < argc) g_opts.budget = std::atof(argv[++i]);
    else if (a == "--failure-paths") g_opts.failure_paths = true;
    else if (a == "--expect-unsupported" && i + 1 < argc) check_unsupported(argv[++i]);
    else if (a == "--graphs") g_opts.graphs = true;
    else if (a == "--graphs-only") g_opts.graphs = g_opts.graphs_only = true;
    else if (a == "--decode-steps" && i + 1 < argc) g_opts.decode_steps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--generate" && i + 1 < argc) g_opts.generate_tokens = std::max(1, std::atoi(argv[++i]));
    else if (a == "--kv" && i + 1 < argc) {
      if (!glm::parse_kv_type(argv[++i], &g_opts.kv)) {
        std::fprintf(stderr, "--kv takes f32, bf16 or fp8\n");
        return 2;
      }
    } else if (a == "--batch-invariance") g_opts.batch_invariance = true;
    else if (a == "--mtp-prompt" && i + 1 < argc) {
      g_mtp_prompt.clear();
      for (const char* p = argv[++i]; *p;) {
        char* end = nullptr;
        g_mtp_prompt.push_back(int32_t(std::strtol(p, &end, 10)));
        p = *end == ',' ? end + 1 : end;
        if (end == p && *p) break;
      }
    } else if (a == "--mtp-tokens" && i + 1 < argc) g_mtp_tokens = std::max(1, std::atoi(argv[++i]));
    else if (a == "--mtp" && i + 1 < argc) {
      const std::string dir = argv[++i];
      if (g_mtp_prompt.size() < 3) {
        std::fprintf(stderr, "--mtp needs --mtp-prompt with at least 3 token ids before it\n");
        return 2;
      }
      const double fp32_budget = g_opts.kv == glm::KvType::F32 ? kBudgetFp32 : g_opts.kv == glm::KvType::BF16 ? kBudgetFp32Bf16Kv : kBudgetFp32Fp8Kv;
      kBudget = g_opts.budget > 0 ? g_opts.budget : g_opts.step_rows <= 4 ? fp32_budget : kBudgetBf16;
      check_mtp(dir, g_mtp_prompt, g_mtp_tokens);
    }
    else check_checkpoint(a);
  }
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
