// cuda/verify_drafts.cu against engine/speculation.h accepted_drafts (the CPU scheduler's rule), exact:
// random batches of requests with 0-8 drafts, targets that agree with a prefix of the drafts, failed
// selections (-1) and drafts of -1, and bad arguments.
#include <random>

#include "engine/speculation.h"
#include "kernel_test.h"
#include "ops.h"

using namespace glm_test;
using glm::cuda::Stream;

TEST(verify_drafts_matches_the_cpu_rule) {
  std::mt19937 rng(1101);
  for (int64_t requests : {1, 7, 130, 257}) {
    std::vector<int32_t> chosen, drafts, begin, count;
    std::uniform_int_distribution<int> k_of(0, 8), tok(0, 5), agree(0, 9);
    for (int64_t r = 0; r < requests; ++r) {
      const int n = k_of(rng);
      begin.push_back(int32_t(chosen.size()));
      count.push_back(n);
      // Drafts agree with the target for a random prefix (often all of them), then anything.
      const int prefix = agree(rng) < 4 ? n : std::uniform_int_distribution<int>(0, n)(rng);
      for (int i = 0; i <= n; ++i) {
        const int32_t t = agree(rng) == 0 ? -1 : int32_t(tok(rng));  // -1: a failed selection
        chosen.push_back(t);
        drafts.push_back(i < prefix ? t : int32_t(tok(rng)) - (agree(rng) == 0 ? 10 : 0));
      }
    }
    std::vector<int32_t> ref_acc, ref_next;
    for (int64_t r = 0; r < requests; ++r) {
      const int32_t* c = chosen.data() + begin[size_t(r)];
      const int64_t m = glm::accepted_drafts(c, drafts.data() + begin[size_t(r)], count[size_t(r)]);
      ref_acc.push_back(int32_t(m));
      ref_next.push_back(c[m]);
    }
    DeviceBuffer<int32_t> d_c(chosen), d_d(drafts), d_b(begin), d_n(count);
    DeviceBuffer<int32_t> d_acc(static_cast<size_t>(requests)), d_next(static_cast<size_t>(requests));
    for_each_seed([&](uint64_t) {
      d_acc.poison();
      d_next.poison();
      CHECK(glm::cuda::verify_drafts(Stream{}, d_acc.get(), d_next.get(), d_c.get(), d_d.get(), d_b.get(), d_n.get(), requests).is_ok());
      if (device_ok("verify_drafts")) {
        CHECK(d_acc.download() == ref_acc) << "accepted, requests=" << requests;
        CHECK(d_next.download() == ref_next) << "next, requests=" << requests;
      }
    });
  }
  // Sanity of the rule itself: all accepted, none, and a failed selection stops acceptance.
  const int32_t c1[] = {4, 5, 6}, d1[] = {4, 5};
  CHECK(glm::accepted_drafts(c1, d1, 2) == 2);
  const int32_t d2[] = {3, 5};
  CHECK(glm::accepted_drafts(c1, d2, 2) == 0);
  const int32_t c3[] = {-1, 5}, d3[] = {-1};
  CHECK(glm::accepted_drafts(c3, d3, 1) == 0);
}

TEST(verify_drafts_rejects_bad_arguments) {
  DeviceBuffer<int32_t> d(static_cast<size_t>(4));
  CHECK(!glm::cuda::verify_drafts(Stream{}, nullptr, d.get(), d.get(), d.get(), d.get(), d.get(), 1).is_ok());
  CHECK(!glm::cuda::verify_drafts(Stream{}, d.get(), d.get(), d.get(), d.get(), d.get(), d.get(), -1).is_ok());
  CHECK(glm::cuda::verify_drafts(Stream{}, d.get(), d.get(), d.get(), d.get(), d.get(), d.get(), 0).is_ok());
}
