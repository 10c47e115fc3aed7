// The KV page pool's bookkeeping (engine/kv_pool.h) and the FP8 KV encoder (engine/kv_format.h):
// allocation, reference counts, the prefix cache's exact matching (also with every hash colliding),
// namespaces, LRU eviction order; E4M3 rounding against an exhaustive search of the code table.
#include <cmath>
#include <cstring>
#include <vector>

#include "check.h"
#include "engine/kv_format.h"
#include "engine/kv_pool.h"
#include "engine/matrix.h"

using glm::KvPool;
using glm::PageId;

namespace {

std::vector<int32_t> page_of(int32_t base, int64_t n) {
  std::vector<int32_t> t(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) t[size_t(i)] = base + int32_t(i);
  return t;
}

}  // namespace

TEST(kv_pool_allocates_lowest_ids_first_and_runs_dry) {
  KvPool pool(4, 16);
  std::vector<PageId> got;
  PageId p;
  while (pool.allocate(&p)) got.push_back(p);
  CHECK((got == std::vector<PageId>{0, 1, 2, 3})) << "ids " << got.size();
  CHECK(pool.counts().held == 4 && pool.counts().free == 0 && pool.available() == 0);
  pool.release(2);
  CHECK(pool.allocate(&p) && p == 2) << "a freed page is handed out again";
  pool.retain(1);
  pool.release(1);
  CHECK(pool.refs(1) == 1) << "retain/release pair keeps the page held";
}

TEST(kv_pool_prefix_cache_matches_exactly_by_parent_chain_and_tokens) {
  for (int bits : {64, 0}) {  // 0: every key hashes alike, so only the exact check tells them apart
    KvPool pool(8, 4);
    pool.set_hash_bits_for_testing(bits);
    const uint64_t root = pool.root_chain("");
    const uint64_t other_root = pool.root_chain("tenant-b");
    CHECK(root != other_root && pool.root_chain("") == root) << "roots are per namespace and stable";
    PageId a, b;
    CHECK(pool.allocate(&a) && pool.allocate(&b));
    const auto ta = page_of(10, 4), tb = page_of(20, 4);
    const uint64_t ca = pool.publish(a, root, ta.data());
    const uint64_t cb = pool.publish(b, ca, tb.data());
    CHECK(ca != KvPool::kNoChain && cb != KvPool::kNoChain && ca != cb);
    PageId hit;
    uint64_t chain;
    CHECK(pool.lookup(root, ta.data(), &hit, &chain) && hit == a && chain == ca) << "bits " << bits;
    pool.release(hit);
    CHECK(pool.lookup(ca, tb.data(), &hit, &chain) && hit == b && chain == cb) << "bits " << bits;
    pool.release(hit);
    // The same tokens after another prefix, under another namespace, or one token off: misses.
    CHECK(!pool.lookup(root, tb.data(), &hit, &chain)) << "second page's tokens at the root";
    CHECK(!pool.lookup(other_root, ta.data(), &hit, &chain)) << "another namespace";
    auto off = ta;
    off[3] += 1;
    CHECK(!pool.lookup(root, off.data(), &hit, &chain)) << "one token differs";
    // Publishing an equal page again keeps it private and names the existing chain.
    PageId dup;
    CHECK(pool.allocate(&dup));
    CHECK(pool.publish(dup, root, ta.data()) == ca && !pool.published(dup));
  }
}

TEST(kv_pool_cached_pages_are_evicted_least_recently_released_first) {
  KvPool pool(3, 2);
  const uint64_t root = pool.root_chain("");
  PageId p[3];
  uint64_t c[3];
  for (int i = 0; i < 3; ++i) {
    CHECK(pool.allocate(&p[i]));
    const auto t = page_of(100 * i, 2);
    c[i] = pool.publish(p[i], root, t.data());
  }
  // Released in the order 1, 0, 2: eviction takes 1, then 0.
  pool.release(p[1]);
  pool.release(p[0]);
  pool.release(p[2]);
  CHECK(pool.counts().cached == 3 && pool.counts().held == 0);
  PageId q;
  CHECK(pool.allocate(&q) && q == p[1]);
  CHECK(pool.allocate(&q) && q == p[0]);
  CHECK(pool.counts().evictions == 2);
  PageId hit;
  uint64_t chain;
  const auto t1 = page_of(100, 2), t2 = page_of(200, 2);
  CHECK(!pool.lookup(root, t1.data(), &hit, &chain)) << "an evicted page is no longer found";
  CHECK(pool.lookup(root, t2.data(), &hit, &chain) && hit == p[2] && chain == c[2]) << "the survivor is";
  // A hit takes the page off the eviction list: nothing is left to evict.
  CHECK(!pool.allocate(&q));
}

TEST(kv_fp8_encoder_rounds_to_the_nearest_code) {
  // Every representable magnitude and the midpoints between neighbours (ties to even), against a
  // search over the 127 finite non-negative codes.
  std::vector<float> values;
  for (int code = 0; code < 0x7f; ++code) values.push_back(glm::e4m3_to_f32(uint8_t(code)));
  std::vector<float> probes;
  for (size_t i = 0; i < values.size(); ++i) {
    probes.push_back(values[i]);
    if (i + 1 < values.size()) {
      probes.push_back(0.5f * (values[i] + values[i + 1]));
      probes.push_back(std::nextafter(0.5f * (values[i] + values[i + 1]), 0.0f));
      probes.push_back(std::nextafter(0.5f * (values[i] + values[i + 1]), 1000.0f));
    }
  }
  probes.push_back(500.0f);  // saturates to 448
  for (float x : probes) {
    int best = 0;
    for (int code = 1; code < 0x7f; ++code) {
      const double e = std::fabs(double(values[size_t(code)]) - x), eb = std::fabs(double(values[size_t(best)]) - x);
      if (e < eb || (e == eb && (code & 1) == 0 && (best & 1) == 1)) best = code;
    }
    CHECK(glm::f32_to_e4m3(x) == uint8_t(best)) << "x=" << x << " got " << int(glm::f32_to_e4m3(x)) << " want " << best;
    CHECK(glm::f32_to_e4m3(-x) == uint8_t(best | 0x80)) << "x=" << -x;
  }
  CHECK(glm::f32_to_e4m3(std::nanf("")) == 0x7f);
}
