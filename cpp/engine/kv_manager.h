// A sequence's pages in the model's pool: growing them for a step (with copy-on-write of a shared
// page), giving them back, finding a prompt's prefix in the prefix cache and publishing full pages to
// it. Bookkeeping plus the backend's page copy; the scheduler decides when each of these happens.
#pragma once
#include <cstdint>
#include <string>

#include "engine/backend.h"
#include "engine/kv_pool.h"
#include "engine/sequence.h"

namespace glm {

class KvManager {
 public:
  KvManager(Backend& backend, const KvPoolSpec& spec, bool prefix_cache);

  KvPool& pool() { return pool_; }
  const KvPool& pool() const { return pool_; }
  int64_t page_tokens() const { return pool_.page_tokens(); }
  bool prefix_cache() const { return prefix_cache_; }
  // Pages a sequence of n positions occupies.
  int64_t pages_for(int64_t n) const { return (n + pool_.page_tokens() - 1) / pool_.page_tokens(); }

  // Makes positions [s.computed, upto) writable: the page holding s.computed is copied first if it
  // is shared or published, and pages are added up to upto. False when the pool has no page left
  // (what was allocated so far stays with the sequence); an error only from the backend's copy.
  Status reserve(Sequence& s, int64_t upto, bool* ok);
  // Keeps the first n tokens (and whatever of them is computed); pages past them go back.
  void truncate(Sequence& s, int64_t n);
  // Gives every page back (tokens stay: they are recomputed when the sequence runs again).
  void release(Sequence& s);
  // Pages past the computed positions go back (those reserved for a step that did not run).
  void trim(Sequence& s);
  // Switches the sequence to a prefix-cache namespace; pages filled under another one are dropped.
  void set_namespace(Sequence& s, const std::string& ns);
  // Attaches cached pages that continue s.computed along s.tokens, as long as they end at or before
  // `limit`; returns the positions gained.
  int64_t attach_cached(Sequence& s, int64_t limit);
  // Publishes the sequence's newly full pages (prefix cache on); with the MTP layer's KV kept, only
  // pages whose every MTP slot is filled.
  void publish(Sequence& s);
  // The pages also hold the MTP layer's KV (Sequence::mtp_pairs), which the operations above keep:
  // a page copy takes the slot past the computed positions too, trimming keeps the page of the
  // last pair's slot, truncating drops pairs whose tokens left.
  void set_mtp(bool on) { mtp_ = on; }
  // Positions [n, computed) are to be computed again (n <= computed): their pages stay.
  void rewind(Sequence& s, int64_t n);

 private:
  Backend& backend_;
  KvPool pool_;
  bool prefix_cache_;
  bool mtp_ = false;
};

}  // namespace glm
