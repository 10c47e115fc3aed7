// What callers submit to a model's scheduler: evaluations (token ids in, logits out, all or nothing,
// possibly over several sessions), generations (prompt in, sampled tokens streamed out) and resets. Each request is completed exactly once, on the engine thread, through its
// on_done callback, after the sessions it touched are settled (their lengths are final).
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "grammar/grammar.h"
#include "engine/sequence.h"
#include "engine/status.h"

namespace glm {

using Clock = std::chrono::steady_clock;
using Flag = std::shared_ptr<std::atomic<bool>>;

struct GenerateParams {
  int64_t max_tokens = 0;
  SamplingParams sampling;
  std::vector<int32_t> stop_tokens;
  bool is_stop_token(int32_t t) const { return std::find(stop_tokens.begin(), stop_tokens.end(), t) != stop_tokens.end(); }
  // false: the prompt is appended after what the sequence holds. true: the prompt is the whole
  // context; the longest common prefix with the sequence's tokens is kept and only the rest evaluated.
  bool reuse_prefix = false;
  // Speculative decoding with the model's MTP layer: drafts per round (-1: the model's default, 0: off).
  int64_t draft_tokens = -1;
  // Constrained decoding: every generated token keeps the output inside this grammar (null: free);
  // stop tokens are allowed only where the grammar is complete, and a grammar that cannot go on ends
  // the generation ("grammar").
  std::shared_ptr<const grammar::TokenGrammar> grammar;
};

struct GeneratedToken {
  int32_t id = 0;
  TokenLogprobs logprobs;  // filled when sampling.top_logprobs >= 0
};

// Receives each token as it is chosen (on the engine thread; must not block for long).
using TokenSink = std::function<void(const GeneratedToken&)>;

struct GenerateResult {
  std::vector<GeneratedToken> tokens;  // generated tokens (a stop token included when one ended it)
  // "stop" (a stop token), "length" (max_tokens or a full context), "stop_requested" (the caller's
  // stop flag, e.g. a stop string matched in JS), "grammar" (the grammar is complete and allows nothing more)
  std::string finish_reason;
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;           // prompt tokens whose KV was reused (session cache + prefix cache)
  double queue_ms = 0;                 // submission to admission
  double prefill_ms = 0, decode_ms = 0;  // admission to first token, first token to last
  int64_t draft_tokens = 0;            // MTP drafts verified (speculative decoding)
  int64_t accepted_draft_tokens = 0;   // of which the target agreed with
};

struct Request {
  enum class Kind { Evaluate, Generate, Reset };
  explicit Request(Kind k) : kind(k) {}
  virtual ~Request() = default;

  const Kind kind;
  Flag cancel;  // the caller's abort (AbortSignal); may be null
  std::string cache_namespace;
  std::function<void(Request&)> on_done;  // engine thread, once; `status` is final
  std::function<void()> release_hook;     // (addon) frees what is tied to the request (a token stream), before on_done settles it

  // --- scheduler state ---------------------------------------------------------------------------
  // Queued: behind another request of a session; Waiting: heads its sessions, not admitted; Running:
  // admitted (computing, or preempted back to Waiting); Done: on_done has been called.
  enum class Phase { Queued, Waiting, Running, Done };
  Phase phase = Phase::Queued;
  Status status;
  uint64_t id = 0;           // arrival order
  Clock::time_point submitted, admitted;
  bool prepared = false;     // its tokens have joined its sessions (first admission)
  bool done() const { return phase == Phase::Done; }
  bool cancelled() const { return cancel && cancel->load(std::memory_order_relaxed); }
  virtual std::vector<Sequence*> sequences() const = 0;
};

// Appends tokens to one or more sessions and returns logits. All or nothing: if it fails (abort,
// dispose, error), every session is left exactly as before.
struct EvaluateRequest final : Request {
  EvaluateRequest() : Request(Kind::Evaluate) {}
  struct Item {
    Sequence* sequence = nullptr;
    std::vector<int32_t> tokens;
    bool all_logits = false;     // logits after every token, else only after the last
    std::vector<float> logits;   // out: [n or 1, vocab]
    // The MTP layer's logits (models with speculative decoding on): row j drafts the token after new
    // token j+1 from the trunk's hidden state at new token j (at the last token before them for j = 0,
    // when the session held one): [n - 1 or n, vocab]. Tests compare them with the reference.
    bool draft_logits = false;
    std::vector<float> draft_logits_out;
    // (scheduler) the session's length before the request, and the first position whose logits are
    // still wanted (later than `before` after a preemption: logits already taken are kept).
    int64_t before = 0, logits_from = 0;
  };
  std::vector<Item> items;
  std::vector<Sequence*> sequences() const override {
    std::vector<Sequence*> out;
    for (const auto& i : items) out.push_back(i.sequence);
    return out;
  }
};

// Evaluates a prompt on a session and samples up to max_tokens tokens, handing each to `sink`. `stop`
// ends the run early without an error. On an abort the session keeps the prompt and every generated
// token but the last, or, if no token was generated yet, is left as before the prompt.
struct GenerateRequest final : Request {
  GenerateRequest() : Request(Kind::Generate) {}
  Sequence* sequence = nullptr;
  std::vector<int32_t> prompt;
  GenerateParams params;
  Flag stop;  // may be null
  TokenSink sink;
  GenerateResult result;

  // (scheduler)
  std::unique_ptr<Sampler> sampler;
  int64_t rollback_to = 0;      // the session's length to go back to on an abort before any token
  int64_t prompt_end = 0;       // the session's length once the prompt joined it
  bool greedy_only = false;     // temperature 0, no penalties, no logprobs: only the argmax is needed
  bool penalties = false;
  // Speculative decoding: drafts per round while drafting (0: not, or no longer), the drafts
  // appended at the end of the sequence's tokens for the next step to verify, and the acceptance
  // the adaptive policy watches (speculation.h).
  int64_t spec_k = 0;
  int64_t drafts = 0;
  int64_t spec_rounds = 0;
  // Constrained decoding: the grammar position after the emitted tokens, and the mask words of the
  // row being selected (host) or of each of the step's rows (device sampling).
  std::unique_ptr<grammar::Matcher> matcher;
  std::vector<uint32_t> mask;
  Clock::time_point first_token, last_token;
  std::vector<Sequence*> sequences() const override { return {sequence}; }
};

// Empties a session, in its call order (after the requests submitted before it).
struct ResetRequest final : Request {
  explicit ResetRequest(Sequence* s) : Request(Kind::Reset), sequence(s) {}
  Sequence* sequence;
  std::vector<Sequence*> sequences() const override { return {sequence}; }
};

}  // namespace glm
