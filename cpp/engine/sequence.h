// A session's state on the engine side: the tokens of its context and the KV pages that hold what has
// been computed of them. Touched only on the model's engine thread (after creation).
//
// tokens is the logical context; positions [0, computed) have their K/V in `pages` (page i holds
// positions [i*P, (i+1)*P) of the model's pool). computed can trail tokens: a prompt not yet
// prefilled, a token just sampled, or pages the pool took back under memory pressure (recomputed
// when the sequence runs again, usually from the prefix cache).
#pragma once
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "engine/kv_pool.h"

namespace glm {

struct Request;
class Scheduler;

class Sequence {
 public:
  explicit Sequence(int64_t capacity) : capacity_(capacity) {}
  // A sequence freed without Model::dispose_sequence still leaves its scheduler cleanly: its requests
  // end with Disposed and its pages go back (engine thread, while the model lives).
  ~Sequence();
  Sequence(const Sequence&) = delete;
  Sequence& operator=(const Sequence&) = delete;

  int64_t capacity() const { return capacity_; }  // contextLength: tokens may never exceed it
  int64_t length() const { return int64_t(tokens.size()); }

  std::vector<int32_t> tokens;
  std::vector<PageId> pages;
  // Chain id (KvPool) of each full page's prefix, for pages [0, chains.size()); kNoChain where unknown.
  std::vector<uint64_t> chains;
  int64_t computed = 0;
  // Pairs of the MTP layer's KV held (models that run it): pair t (the trunk's hidden state at t and
  // token t+1) sits at slot t+1 of the MTP layer's pages, so a page's slots depend only on the tokens
  // of its own prefix and can be shared by the prefix cache. Pair t needs t < computed and
  // t + 1 < length.
  int64_t mtp_pairs = 0;
  // hash of tokens [0, (i+1)*P) for i < size(): which prompts are the same, to let a request wait for
  // another that is computing its prefix (kept as tokens grow; cut when they are truncated).
  std::vector<uint64_t> prefix_hashes;
  // The prefix-cache namespace of the requests that filled the pages (one per sequence at a time; a
  // request under another namespace starts the cache over: tenants never share pages).
  std::string cache_namespace;
  uint64_t root_chain = KvPool::kNoChain;  // the namespace's root (0 until the first page is made)

  // --- scheduler state ---------------------------------------------------------------------------
  std::deque<std::shared_ptr<Request>> queue;  // this session's requests in call order; the head runs
  bool running = false;                        // the head request has been admitted
  uint64_t last_used = 0;                      // step counter when it last ran (idle-page reclaim order)
  bool disposed = false;
  Scheduler* scheduler = nullptr;              // the scheduler that knows it (cleared when either goes)

 private:
  int64_t capacity_;
};

}  // namespace glm
