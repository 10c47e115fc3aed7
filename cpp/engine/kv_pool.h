// The model's KV page pool as bookkeeping: which page ids are free, which are held by sequences (and
// how many times: shared prefix pages), and which hold a cached full page of some token chain (the
// prefix cache). The pages' contents live in the backend (Backend::kv_pool_info); this class never
// touches them, so it is the same for the CPU and CUDA backends and testable on its own.
//
// Prefix cache (vLLM's hash-chained blocks, in our own form): every token prefix that fills whole
// pages has a chain id, unique for the pool's lifetime; a namespace's empty prefix is its root chain.
// A full page is published as (parent chain, its page_tokens tokens) and gets the chain id of the
// longer prefix. A lookup walks a prompt page by page from its namespace's root; a candidate (found
// by a hash of the key) matches only if its parent chain and tokens are equal to the walk's, so the
// match is exact whatever the hash does, and namespaces never meet (their roots differ). Published pages are immutable: a
// sequence that wants to write inside one copies it first (copy-on-write). A published page nobody
// holds stays cached (evictable, least recently released first) until its id is needed.
#pragma once
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace glm {

using PageId = int32_t;

class KvPool {
 public:
  // chain id 0 means "none" (an unpublished page, or the root of a namespace's chains).
  static constexpr uint64_t kNoChain = 0;

  KvPool(int64_t n_pages, int64_t page_tokens);

  int64_t n_pages() const { return int64_t(refs_.size()); }
  int64_t page_tokens() const { return page_tokens_; }

  // A free page (ref count 1), else the least recently released cached page, evicted (its chain id
  // dies: pages published under it can no longer be found). False when every page is held.
  bool allocate(PageId* out);
  void retain(PageId p);
  // Drops one reference; at zero a published page joins the cache (evictable), another goes free.
  void release(PageId p);
  int32_t refs(PageId p) const { return refs_[size_t(p)]; }

  // --- prefix cache -------------------------------------------------------------------------------
  // The root chain of a namespace (its empty prefix): pages published under one namespace are never
  // found by a lookup under another (tenant isolation).
  uint64_t root_chain(const std::string& ns);
  // The page holding `tokens` (page_tokens of them) right after the prefix `parent_chain`; on a hit it
  // is retained for the caller and the longer prefix's chain id returned.
  bool lookup(uint64_t parent_chain, const int32_t* tokens, PageId* page, uint64_t* chain);
  // Publishes a full page held by the caller. Returns its new chain id; if an equal entry (same
  // parent chain and tokens) is already published, the page stays private and that entry's chain id
  // is returned instead (it names the same token prefix, so later pages chain onto it just as well).
  uint64_t publish(PageId p, uint64_t parent_chain, const int32_t* tokens);
  bool published(PageId p) const { return chain_[size_t(p)] != kNoChain; }

  // Tests: keep only the low `bits` bits of every hash (0: every page collides), so the token check
  // is what tells entries apart.
  void set_hash_bits_for_testing(int bits) { hash_mask_ = bits >= 64 ? ~uint64_t(0) : (uint64_t(1) << bits) - 1; }

  struct Counts {
    int64_t free = 0;    // never published or evicted, unreferenced
    int64_t held = 0;    // referenced by at least one sequence
    int64_t cached = 0;  // published, unreferenced (reclaimable)
    int64_t evictions = 0;  // cached pages reclaimed so far
  };
  Counts counts() const;
  // Pages allocate() could hand out now (free + cached).
  int64_t available() const { return int64_t(free_.size()) + lru_size_; }

 private:
  void lru_push_back(PageId p);
  void lru_remove(PageId p);
  void unpublish(PageId p);
  uint64_t key_hash(uint64_t parent_chain, const int32_t* tokens) const;
  PageId find(uint64_t hash, uint64_t parent_chain, const int32_t* tokens) const;

  int64_t page_tokens_;
  uint64_t hash_mask_ = ~uint64_t(0);
  uint64_t next_chain_ = 1;
  int64_t evictions_ = 0;
  std::vector<int32_t> refs_;
  std::vector<PageId> free_;  // a stack: the lowest ids come out first (keeps a lazily committed pool compact)
  // Per page (published ones): chain id, parent chain id, hash, tokens.
  std::vector<uint64_t> chain_, parent_, hash_;
  std::vector<int32_t> tokens_;  // [page][page_tokens]
  std::unordered_multimap<uint64_t, PageId> index_;  // key hash -> published pages
  std::unordered_map<std::string, uint64_t> roots_;  // namespace -> root chain
  // LRU of cached (published, unreferenced) pages: an intrusive list; -1 ends it.
  std::vector<PageId> prev_, next_;
  PageId lru_head_ = -1, lru_tail_ = -1;
  int64_t lru_size_ = 0;
};

}  // namespace glm
