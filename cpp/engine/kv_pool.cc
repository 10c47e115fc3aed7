#include "engine/kv_pool.h"

#include <algorithm>
#include <cstring>

namespace glm {

namespace {

// A 64-bit finaliser (the splitmix64 constants): every input bit affects every output bit, so keys
// that differ in one token land in different buckets. Not cryptographic; the parent-chain and token
// check on lookup is what makes hits exact.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

}  // namespace

KvPool::KvPool(int64_t n_pages, int64_t page_tokens)
    : page_tokens_(page_tokens),
      refs_(size_t(n_pages), 0),
      chain_(size_t(n_pages), kNoChain),
      parent_(size_t(n_pages), kNoChain),
      hash_(size_t(n_pages), 0),
      tokens_(size_t(n_pages * page_tokens), 0),
      prev_(size_t(n_pages), -1),
      next_(size_t(n_pages), -1) {
  free_.reserve(size_t(n_pages));
  for (int64_t i = n_pages - 1; i >= 0; --i) free_.push_back(PageId(i));
}

bool KvPool::allocate(PageId* out) {
  PageId p;
  if (!free_.empty()) {
    p = free_.back();
    free_.pop_back();
  } else if (lru_head_ >= 0) {
    p = lru_head_;
    lru_remove(p);
    unpublish(p);
    ++evictions_;
  } else {
    return false;
  }
  refs_[size_t(p)] = 1;
  *out = p;
  return true;
}

void KvPool::retain(PageId p) {
  if (refs_[size_t(p)]++ == 0 && published(p)) lru_remove(p);
}

void KvPool::release(PageId p) {
  if (--refs_[size_t(p)] > 0) return;
  if (published(p)) lru_push_back(p);
  else free_.push_back(p);
}

uint64_t KvPool::root_chain(const std::string& ns) {
  auto it = roots_.find(ns);
  if (it != roots_.end()) return it->second;
  const uint64_t id = next_chain_++;
  roots_.emplace(ns, id);
  return id;
}

uint64_t KvPool::key_hash(uint64_t parent_chain, const int32_t* tokens) const {
  uint64_t h = mix(parent_chain);
  for (int64_t i = 0; i < page_tokens_; ++i) h = mix(h ^ (uint64_t(uint32_t(tokens[i])) + 0x9e3779b97f4a7c15ull));
  return h & hash_mask_;
}

PageId KvPool::find(uint64_t hash, uint64_t parent_chain, const int32_t* tokens) const {
  auto range = index_.equal_range(hash);
  for (auto it = range.first; it != range.second; ++it) {
    const PageId p = it->second;
    if (parent_[size_t(p)] == parent_chain &&
        std::memcmp(&tokens_[size_t(p * page_tokens_)], tokens, size_t(page_tokens_) * sizeof(int32_t)) == 0) {
      return p;
    }
  }
  return -1;
}

bool KvPool::lookup(uint64_t parent_chain, const int32_t* tokens, PageId* page, uint64_t* chain) {
  const PageId p = find(key_hash(parent_chain, tokens), parent_chain, tokens);
  if (p < 0) return false;
  retain(p);
  *page = p;
  *chain = chain_[size_t(p)];
  return true;
}

uint64_t KvPool::publish(PageId p, uint64_t parent_chain, const int32_t* tokens) {
  if (published(p)) return chain_[size_t(p)];
  const uint64_t hash = key_hash(parent_chain, tokens);
  const PageId existing = find(hash, parent_chain, tokens);
  if (existing >= 0) return chain_[size_t(existing)];
  chain_[size_t(p)] = next_chain_++;
  parent_[size_t(p)] = parent_chain;
  hash_[size_t(p)] = hash;
  std::memcpy(&tokens_[size_t(p * page_tokens_)], tokens, size_t(page_tokens_) * sizeof(int32_t));
  index_.emplace(hash, p);
  return chain_[size_t(p)];
}

void KvPool::unpublish(PageId p) {
  auto range = index_.equal_range(hash_[size_t(p)]);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == p) {
      index_.erase(it);
      break;
    }
  }
  chain_[size_t(p)] = kNoChain;
  parent_[size_t(p)] = kNoChain;
}

void KvPool::lru_push_back(PageId p) {
  prev_[size_t(p)] = lru_tail_;
  next_[size_t(p)] = -1;
  if (lru_tail_ >= 0) next_[size_t(lru_tail_)] = p;
  else lru_head_ = p;
  lru_tail_ = p;
  ++lru_size_;
}

void KvPool::lru_remove(PageId p) {
  const PageId a = prev_[size_t(p)], b = next_[size_t(p)];
  if (a >= 0) next_[size_t(a)] = b;
  else lru_head_ = b;
  if (b >= 0) prev_[size_t(b)] = a;
  else lru_tail_ = a;
  prev_[size_t(p)] = next_[size_t(p)] = -1;
  --lru_size_;
}

KvPool::Counts KvPool::counts() const {
  Counts c;
  c.free = int64_t(free_.size());
  c.cached = lru_size_;
  c.held = n_pages() - c.free - c.cached;
  c.evictions = evictions_;
  return c;
}

}  // namespace glm
