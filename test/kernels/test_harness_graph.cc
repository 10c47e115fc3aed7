// Self-tests of the harness's stream capture (harness-only: they check the emulation's rules, which the
// CUDA backend's graph path relies on to catch misuse without a GPU). A captured launch must not run,
// must keep its arguments by value, and must run in order at each cudaGraphLaunch; a synchronous call
// during capture must fail and invalidate the capture, as in the runtime's global capture mode.
#include <string>

#include "kernel_test.h"

using namespace glm_test;

namespace {

// y[i] = y[i] * a + b: order-sensitive, so a replay that reorders or drops launches shows.
GLM_KERNEL void axpb_kernel(float* y, float a, float b, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] = y[i] * a + b;
}

bool last_message_has(const char* needle) { return std::string(glm::harness::last_error_message()).find(needle) != std::string::npos; }

}  // namespace

TEST(harness_graph_capture_records_by_value_and_replays_in_order) {
  constexpr int n = 40;
  cudaStream_t s = nullptr;
  CHECK(cudaStreamCreate(&s) == cudaSuccess);
  DeviceBuffer<float> y(std::vector<float>(n, 1.0f));
  float* pinned = nullptr;
  CHECK(cudaMallocHost(reinterpret_cast<void**>(&pinned), n * sizeof(float)) == cudaSuccess);
  for (int i = 0; i < n; ++i) pinned[i] = float(i);

  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  CHECK(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusActive);
  const uint64_t launches_before = glm::harness::stats().launches;
  // The copy from pinned memory reads its source at replay, the launches their captured arguments.
  CHECK(cudaMemcpyAsync(y.get(), pinned, n * sizeof(float), cudaMemcpyHostToDevice, s) == cudaSuccess);
  float a = 2.0f;
  CHECK(GLM_LAUNCH(axpb_kernel, dim3(2), dim3(32), 0, s, y.get(), a, 1.0f, n) == cudaSuccess);
  a = 100.0f;  // changing the variable after the launch must not change the recorded argument
  CHECK(GLM_LAUNCH(axpb_kernel, dim3(2), dim3(32), 0, s, y.get(), 3.0f, -1.0f, n) == cudaSuccess);
  CHECK(glm::harness::stats().launches == launches_before) << "a captured launch ran";
  cudaGraph_t g = nullptr;
  CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess && g != nullptr);
  CHECK(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusNone);
  cudaGraphExec_t exec = nullptr;
  CHECK(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess);
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < n; ++i) pinned[i] = float(i + round);  // new input through the pinned buffer
    CHECK(cudaGraphLaunch(exec, s) == cudaSuccess);
    CHECK(cudaStreamSynchronize(s) == cudaSuccess);
    const std::vector<float> got = y.download();
    int bad = 0;
    for (int i = 0; i < n; ++i) bad += got[size_t(i)] != (float(i + round) * 2.0f + 1.0f) * 3.0f - 1.0f;
    CHECK(bad == 0) << "replay " << round << ": " << bad << " wrong elements";
  }
  CHECK(cudaGraphExecDestroy(exec) == cudaSuccess);
  CHECK(cudaGraphDestroy(g) == cudaSuccess);
  CHECK(cudaFreeHost(pinned) == cudaSuccess);
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
}

TEST(harness_graph_capture_misuse_is_caught) {
  cudaStream_t s = nullptr;
  CHECK(cudaStreamCreate(&s) == cudaSuccess);
  DeviceBuffer<float> y(std::vector<float>(32, 1.0f));
  std::vector<float> pageable(32, 0.0f);
  cudaGraph_t g = nullptr;
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;

  // Each synchronous call fails during capture, invalidates it, and later work on the stream and the
  // end of the capture say so; the error is pending (not sticky) and the stream works again afterwards.
  const char* names[] = {"cudaStreamSynchronize", "cudaMalloc", "cudaFree", "cudaMemcpy", "cudaMemset", "cudaMallocHost",
                         "pageable cudaMemcpyAsync"};
  for (int which = 0; which < 7; ++which) {
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(GLM_LAUNCH(axpb_kernel, dim3(1), dim3(32), 0, s, y.get(), 2.0f, 0.0f, 32) == cudaSuccess);
    void* p = nullptr;
    cudaError_t e = cudaSuccess;
    switch (which) {
      case 0: e = cudaStreamSynchronize(s); break;
      case 1: e = cudaMalloc(&p, 64); break;
      case 2: e = cudaFree(y.get()); break;
      case 3: e = cudaMemcpy(pageable.data(), y.get(), 128, cudaMemcpyDeviceToHost); break;
      case 4: e = cudaMemset(y.get(), 0, 128); break;
      case 5: e = cudaMallocHost(&p, 64); break;
      case 6: e = cudaMemcpyAsync(pageable.data(), y.get(), 128, cudaMemcpyDeviceToHost, s); break;
    }
    CHECK(e == cudaErrorStreamCaptureUnsupported) << names[which] << " during capture returned " << int(e);
    CHECK(p == nullptr);
    CHECK(cudaStreamIsCapturing(s, &st) == cudaSuccess && st == cudaStreamCaptureStatusInvalidated) << names[which];
    // The pending error surfaces at the next launch (as cudaGetLastError after <<<>>> would) ...
    CHECK(GLM_LAUNCH(axpb_kernel, dim3(1), dim3(32), 0, s, y.get(), 2.0f, 0.0f, 32) == cudaErrorStreamCaptureInvalidated) << names[which];
    CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated && g == nullptr) << names[which];
    CHECK(last_message_has("invalidated")) << glm::harness::last_error_message();
    // ... and once cleared the context is fine: nothing sticky, nothing of the failed capture ran.
    (void)cudaGetLastError();
    CHECK(cudaStreamSynchronize(s) == cudaSuccess) << names[which];
  }
  CHECK(y.download()[0] == 1.0f) << "work of an invalidated capture ran";

  // An uncleared capture error is reported by the next launch even outside capture.
  CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
  CHECK(cudaStreamSynchronize(s) == cudaErrorStreamCaptureUnsupported);
  CHECK(cudaStreamEndCapture(s, &g) == cudaErrorStreamCaptureInvalidated);
  CHECK(GLM_LAUNCH(axpb_kernel, dim3(1), dim3(32), 0, s, y.get(), 1.0f, 0.0f, 32) == cudaErrorStreamCaptureInvalidated);
  CHECK(GLM_LAUNCH(axpb_kernel, dim3(1), dim3(32), 0, s, y.get(), 1.0f, 0.0f, 32) == cudaSuccess);

  // A graph replayed after a buffer it captured was freed (a backend that reallocates scratch without
  // dropping its graphs) is a use after free: the replay fails instead of writing freed memory.
  {
    float* tmp = nullptr;
    CHECK(cudaMalloc(reinterpret_cast<void**>(&tmp), 32 * sizeof(float)) == cudaSuccess);
    CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal) == cudaSuccess);
    CHECK(GLM_LAUNCH(axpb_kernel, dim3(1), dim3(32), 0, s, tmp, 1.0f, 0.0f, 32) == cudaSuccess);
    CHECK(cudaStreamEndCapture(s, &g) == cudaSuccess);
    cudaGraphExec_t exec = nullptr;
    CHECK(cudaGraphInstantiate(&exec, g, 0) == cudaSuccess);
    CHECK(cudaMemset(tmp, 0, 32 * sizeof(float)) == cudaSuccess);
    CHECK(cudaGraphLaunch(exec, s) == cudaSuccess) << "replay on live memory";
    CHECK(cudaFree(tmp) == cudaSuccess);
    CHECK(cudaGraphLaunch(exec, s) == cudaErrorLaunchFailure) << "replay after the free not caught";
    CHECK(last_message_has("freed")) << glm::harness::last_error_message();
    (void)cudaGetLastError();
    CHECK(cudaGraphExecDestroy(exec) == cudaSuccess);
    CHECK(cudaGraphDestroy(g) == cudaSuccess);
  }

  // Ending a capture that never began, and capturing the legacy stream, are errors.
  CHECK(cudaStreamEndCapture(s, &g) == cudaErrorIllegalState);
  CHECK(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal) != cudaSuccess);
  (void)cudaGetLastError();
  CHECK(cudaStreamDestroy(s) == cudaSuccess);
}
