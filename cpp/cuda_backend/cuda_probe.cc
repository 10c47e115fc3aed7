// The CUDA variant's self-test (engine/cuda_factory.h cuda_probe): run by the JS loader in a child
// process before the variant is loaded in-process, so a driver or device that crashes on first use
// takes down only the child.
#include <cstring>
#include <string>
#include <vector>

#include "ops.h"
#include "cuda_backend/runtime.h"
#include "engine/cuda_factory.h"

namespace glm {

Status cuda_probe(std::string* device) {
  Status st = cuda_backend_available();
  if (!st.is_ok()) return st;
  auto fail = [](cudaError_t err, const char* what) {
    (void)cudaGetLastError();
    return Status::error(ErrorCode::BackendUnavailable, std::string("CUDA probe: ") + what + " failed (" + cudaGetErrorString(err) + ")");
  };
  cudaError_t err = cudaSetDevice(0);
  if (err != cudaSuccess) return fail(err, "cudaSetDevice(0)");
  int major = 0, minor = 0;
  (void)cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0);
  (void)cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, 0);
  std::string desc = "sm_" + std::to_string(major) + std::to_string(minor);
#if !defined(GLM_CUDA_HARNESS)  // the harness emulates only the runtime calls the backend itself makes
  cudaDeviceProp prop;
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
    desc = std::string(prop.name) + ", " + desc + ", " + std::to_string(prop.multiProcessorCount) + " SMs";
  }
  int driver = 0;
  if (cudaDriverGetVersion(&driver) == cudaSuccess) desc += ", driver CUDA " + std::to_string(driver / 1000) + "." + std::to_string(driver % 1000 / 10);
#endif
  // One tiny kernel of ours: proves this build has an image the device can run, not only a driver.
  constexpr int64_t n = 256;
  float* y = nullptr;
  float* x = nullptr;
  if ((err = cudaMalloc(&y, n * sizeof(float))) != cudaSuccess) return fail(err, "cudaMalloc");
  if ((err = cudaMalloc(&x, n * sizeof(float))) != cudaSuccess) {
    cudaFree(y);
    return fail(err, "cudaMalloc");
  }
  std::vector<float> host(n, 1.5f);
  err = cudaMemcpy(y, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  if (err == cudaSuccess) err = cudaMemcpy(x, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  Status kernel = err == cudaSuccess ? cuda::add_inplace(cuda::Stream{}, y, x, n) : Status::ok();
  if (err == cudaSuccess && kernel.is_ok()) err = cudaDeviceSynchronize();
  if (err == cudaSuccess && kernel.is_ok()) err = cudaMemcpy(host.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(x);
  cudaFree(y);
  if (err != cudaSuccess) return fail(err, "the test kernel");
  if (!kernel.is_ok()) return Status::error(ErrorCode::BackendUnavailable, "CUDA probe: the test kernel failed: " + kernel.message());
  for (float v : host) {
    if (v != 3.0f) return Status::error(ErrorCode::BackendUnavailable, "CUDA probe: the test kernel computed a wrong result");
  }
  *device = desc;
  return Status::ok();
}

}  // namespace glm
