#include "engine/kv_manager.h"

#include <algorithm>

namespace glm {

KvManager::KvManager(Backend& backend, const KvPoolSpec& spec, bool prefix_cache)
    : backend_(backend), pool_(spec.n_pages, spec.page_tokens), prefix_cache_(prefix_cache) {}

Status KvManager::reserve(Sequence& s, int64_t upto, bool* ok) {
  *ok = false;
  const int64_t P = pool_.page_tokens();
  const int64_t c = s.computed;
  if (c % P != 0 && size_t(c / P) < s.pages.size()) {
    // Writing inside a page others hold, or one published (published pages never change): copy the
    // computed part into a private page first.
    const PageId shared = s.pages[size_t(c / P)];
    if (pool_.published(shared) || pool_.refs(shared) > 1) {
      PageId own;
      if (!pool_.allocate(&own)) return Status::ok();
      // (With the MTP layer, slot c may hold the pair c - 1: copy it too; the trunk's row c is rewritten.)
      const Status st = backend_.copy_kv_page(shared, own, mtp_ ? std::min(P, c % P + 1) : c % P);
      if (!st.is_ok()) {
        pool_.release(own);
        return st;
      }
      pool_.release(shared);
      s.pages[size_t(c / P)] = own;
    }
  }
  const size_t need = size_t(pages_for(upto));
  while (s.pages.size() < need) {
    PageId p;
    if (!pool_.allocate(&p)) return Status::ok();
    s.pages.push_back(p);
  }
  *ok = true;
  return Status::ok();
}

void KvManager::truncate(Sequence& s, int64_t n) {
  if (n < s.length()) s.tokens.resize(size_t(n));
  s.prefix_hashes.resize(std::min(s.prefix_hashes.size(), size_t(s.length() / pool_.page_tokens())));
  s.computed = std::min(s.computed, n);
  s.mtp_pairs = std::min({s.mtp_pairs, s.computed, std::max<int64_t>(0, n - 1)});  // pair t needs token t + 1
  trim(s);
}

void KvManager::rewind(Sequence& s, int64_t n) {
  s.computed = std::min(s.computed, n);
  s.chains.resize(std::min(s.chains.size(), size_t(s.computed / pool_.page_tokens())));
}

void KvManager::trim(Sequence& s) {
  s.mtp_pairs = std::min(s.mtp_pairs, s.computed);
  // The last pair's slot (mtp_pairs) can be one past the computed positions, on a page of its own.
  const size_t keep = size_t(pages_for(mtp_ && s.mtp_pairs > 0 ? std::max(s.computed, s.mtp_pairs + 1) : s.computed));
  // Last page first: a released sequence's tail is the least shareable part, so it is evicted first.
  while (s.pages.size() > keep) {
    pool_.release(s.pages.back());
    s.pages.pop_back();
  }
  // Only pages that are full of computed positions keep a chain (a truncated page is no longer one).
  s.chains.resize(std::min(s.chains.size(), size_t(s.computed / pool_.page_tokens())));
}

void KvManager::release(Sequence& s) {
  s.computed = 0;
  trim(s);
}

void KvManager::set_namespace(Sequence& s, const std::string& ns) {
  if (s.root_chain != KvPool::kNoChain && s.cache_namespace == ns) return;
  if (s.root_chain != KvPool::kNoChain) release(s);  // filled under another tenant's namespace
  s.cache_namespace = ns;
  s.root_chain = pool_.root_chain(ns);
}

int64_t KvManager::attach_cached(Sequence& s, int64_t limit) {
  if (!prefix_cache_ || s.root_chain == KvPool::kNoChain) return 0;
  const int64_t P = pool_.page_tokens();
  // Only a page-aligned computed prefix whose every page has a chain can be continued.
  if (s.computed % P != 0 || int64_t(s.pages.size()) != s.computed / P || s.chains.size() != s.pages.size()) return 0;
  int64_t gained = 0;
  // Cached pages hold the MTP pairs of their slots (publish), which complete a sequence whose own
  // pairs reached its last page.
  const bool pairs_continue = s.mtp_pairs + 1 >= s.computed;
  while (s.computed + P <= std::min(limit, s.length())) {
    const uint64_t parent = s.chains.empty() ? s.root_chain : s.chains.back();
    if (parent == KvPool::kNoChain) break;
    PageId page;
    uint64_t chain;
    if (!pool_.lookup(parent, s.tokens.data() + s.computed, &page, &chain)) break;
    s.pages.push_back(page);
    s.chains.push_back(chain);
    s.computed += P;
    gained += P;
  }
  if (mtp_ && gained > 0 && pairs_continue) s.mtp_pairs = s.computed - 1;
  return gained;
}

void KvManager::publish(Sequence& s) {
  if (!prefix_cache_ || s.root_chain == KvPool::kNoChain) return;
  const int64_t P = pool_.page_tokens();
  // A page's MTP slots [iP, (i+1)P) hold pairs up to (i+1)P - 1.
  const size_t full = size_t((mtp_ ? std::min(s.computed, s.mtp_pairs + 1) : s.computed) / P);
  while (s.chains.size() < full) {
    const size_t i = s.chains.size();
    const uint64_t parent = i == 0 ? s.root_chain : s.chains[i - 1];
    s.chains.push_back(parent == KvPool::kNoChain ? KvPool::kNoChain
                                                  : pool_.publish(s.pages[i], parent, s.tokens.data() + i * size_t(P)));
  }
}

}  // namespace glm
