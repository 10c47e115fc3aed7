// Speculative decoding's verification for a whole batch on the device (engine/speculation.h
// accepted_drafts): per request, the drafts accepted (each equal to the target's token chosen at the
// row before it) and the round's last token (the correction, or the bonus when every draft passed).
// The target's tokens come from argmax_tokens or sample_tokens over the verification rows, so a round
// needs no logits on the host. One thread per request: a request verifies a handful of drafts.
#include "common.cuh"
#include "launch_util.h"
#include "ops.h"

namespace glm::cuda {
namespace {

constexpr int kThreads = 128;

GLM_KERNEL void GLM_LAUNCH_BOUNDS(kThreads) verify_drafts_kernel(int32_t* accepted, int32_t* next, const int32_t* chosen,
                                                                  const int32_t* drafts, const int32_t* row_begin,
                                                                  const int32_t* n_drafts, int requests) {
  const int r = int(blockIdx.x) * kThreads + int(threadIdx.x);
  if (r >= requests) return;
  const int b = row_begin[r], n = n_drafts[r];
  int m = 0;
  while (m < n && chosen[b + m] >= 0 && chosen[b + m] == drafts[b + m]) ++m;
  accepted[r] = m;
  next[r] = chosen[b + m];
}

}  // namespace

Status verify_drafts(Stream stream, int32_t* accepted, int32_t* next, const int32_t* chosen, const int32_t* drafts,
                     const int32_t* row_begin, const int32_t* n_drafts, int64_t requests) {
  const char* op = "verify_drafts";
  if (!accepted || !next || !chosen || !drafts || !row_begin || !n_drafts) return detail::invalid(op, "null pointer");
  if (requests < 0 || requests > 0x7fffffff) return detail::invalid(op, "bad request count");
  if (requests == 0) return Status::ok();
  const unsigned blocks = unsigned((requests + kThreads - 1) / kThreads);
  return detail::launched(op, GLM_LAUNCH(verify_drafts_kernel, dim3(blocks), dim3(kThreads), 0, detail::to_stream(stream.handle),
                                         accepted, next, chosen, drafts, row_begin, n_drafts, int(requests)));
}

}  // namespace glm::cuda
