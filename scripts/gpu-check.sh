#!/usr/bin/env bash
# GPU check (issue 4), for a lent H200 through the device tool; never run by CI. Builds the CUDA kernels
# for sm_90a with the project's CMake (no Node needed there), runs the same kernel tests the CPU
# harness runs — now on the device — plus compute-sanitizer's memcheck and racecheck over them, prints
# a table last and writes $OUT/gpu-check.json (git_revision, cuda_tree_clean, per-test results).
#
# The device machine gets a copy of the working tree without .git, so pass the revision in:
#   run: GLM_GIT_REVISION=<sha> GLM_CUDA_CLEAN=<1|0> bash scripts/gpu-check.sh
# (`git rev-parse HEAD` and `git status --porcelain cuda` here give them.) Budget: ~1 min to build on
# 16 cores, seconds to test, ~1-2 min under the sanitizers.
#
# Hopper fast paths: fp8_gemm_sm90 (wgmma) beside its portable twin fp8_gemm; the kernel test
# fp8_gemm_sm90_twin_matches_when_available runs it against the same float64 references on the device
# (on the harness it only checks that the path reports itself unavailable). The JSON lists them under
# fast_paths.
# Quantized GEMM throughput (issue 6): after the tests, GLM_QUANT_BENCH=1 runs bench_quant_gemm_air_shapes
# (MXFP4 / FP8 per-channel / FP8 block / sm_90a twins at GLM-4.5-Air decode M=1 and prefill M=2048
# shapes), printed as TFLOPS and GB/s and kept in $OUT/quant-bench.json. Unverified until a GPU is lent.
# Dense BF16 linear (issue 5): GLM_LINEAR_BENCH=1 runs bench_linear_air_shapes (q / k|v / o projections and
# expert gate|up / down at decode M=1 and prefill M=2048), kept in $OUT/linear-bench.json. Unverified.
# CUDA backend (issue 5): glm_cuda_backend_gpu_check runs the whole forward pass on the GPU against the
# CPU backend (test/cuda_backend/main.cc) on two BF16 synthetic checkpoints: a 300-token prefill that
# crosses a KV page, decodes and a mixed batch, through the bf16 tensor-core path ('base', 16-row steps,
# budget 2e-2 with the routing-flip allowance) and the fp32 path ('bf16-groups', 4-row steps, budget
# 1e-4). The checkpoints come from scripts/e2e-fixtures.mjs when node and dist/ are there, else from
# GLM_E2E_FIXTURES (a folder holding base/ and bf16-groups/, e.g. carried from the dev machine). Then
# glm_cuda_bench_air: decode tokens/s at context 0 and 4096 and prefill tokens/s at 2048 on a
# GLM-4.5-Air-shaped model cut to 3 layers (random BF16 weights built in memory, ~10 GB uploaded), with
# the decode bytes per token as GB/s (air-bench.json). Unverified until a GPU is lent.
# CUDA graphs (issue 5): glm_cuda_backend_gpu_check --graphs-only on 'graph-tiny' and 'bf16-groups' (needs
# the fixtures above): decode with graphs on vs off must give bit-identical logits and tokens (40 steps
# over 8-position KV pages, batched sessions, a reset, device greedy generation) and a synchronous call
# inside a capture must be rejected by the real runtime and fall back to eager (e2e-graphs.log). The
# benchmark prints decode tokens/s with graphs on and off side by side (air-bench.json *_graphs_on/off).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-check-out}"
mkdir -p "$OUT"
log="$OUT/gpu-check.log"
: > "$log"
say() { echo "$@" | tee -a "$log"; }

rev="${GLM_GIT_REVISION:-}"
clean="${GLM_CUDA_CLEAN:-}"
if [ -z "$rev" ] && git rev-parse HEAD >/dev/null 2>&1; then rev="$(git rev-parse HEAD)"; fi
if [ -z "$clean" ] && git rev-parse HEAD >/dev/null 2>&1; then
  [ -z "$(git status --porcelain -- cuda)" ] && clean=1 || clean=0
fi
rev="${rev:-unknown}"
clean="${clean:-unknown}"

say "== gpu-check at ${rev} (cuda/ clean: ${clean})"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$log"
nvcc --version 2>&1 | tail -1 | tee -a "$log"

t0=$(date +%s)
build_rc=0
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DGLM_CUDA=ON -DGLM_GPU_TESTS=ON \
  -DGLM_CUDA_ARCHS=90a >>"$log" 2>&1 || build_rc=$?
[ $build_rc -eq 0 ] && { ninja -C build-gpu -j"$(nproc)" glm_kernel_tests_gpu glm_kernel_tests glm_cuda_backend_gpu_check \
  glm_cuda_bench_air >>"$log" 2>&1 || build_rc=$?; }
t_build=$(( $(date +%s) - t0 ))
say "build: rc=${build_rc} in ${t_build}s"

gpu_rc=99; harness_rc=99; memcheck_rc=99; racecheck_rc=99; bench_rc=99; linear_bench_rc=99; e2e_rc=99; air_rc=99; graphs_rc=99
if [ $build_rc -eq 0 ]; then
  ./build-gpu/glm_kernel_tests_gpu --json "$OUT/gpu-tests.json" 2>&1 | tee "$OUT/gpu-tests.log"; gpu_rc=${PIPESTATUS[0]}
  ./build-gpu/glm_kernel_tests --json "$OUT/harness-tests.json" >"$OUT/harness-tests.log" 2>&1; harness_rc=$?
  GLM_QUANT_BENCH=1 GLM_QUANT_BENCH_JSON="$OUT/quant-bench.json" timeout 120 ./build-gpu/glm_kernel_tests_gpu bench_quant \
    >"$OUT/quant-bench.log" 2>&1; bench_rc=$?
  GLM_LINEAR_BENCH=1 GLM_LINEAR_BENCH_JSON="$OUT/linear-bench.json" timeout 120 ./build-gpu/glm_kernel_tests_gpu bench_linear \
    >"$OUT/linear-bench.log" 2>&1; linear_bench_rc=$?
  fixtures="${GLM_E2E_FIXTURES:-}"
  if [ -z "$fixtures" ] && command -v node >/dev/null 2>&1 && [ -f dist/lib/synthetic/checkpoint.js ]; then
    fixtures="$OUT/e2e-fixtures"
    node scripts/e2e-fixtures.mjs "$fixtures" >>"$log" 2>&1 || fixtures=""
  fi
  if [ -n "$fixtures" ] && [ -d "$fixtures/base" ]; then
    timeout 300 ./build-gpu/glm_cuda_backend_gpu_check --step-rows 16 --prompt 300 "$fixtures/base" \
      --step-rows 4 --prompt 300 "$fixtures/bf16-groups" 2>&1 | tee "$OUT/e2e.log"; e2e_rc=${PIPESTATUS[0]}
    if [ -d "$fixtures/graph-tiny" ]; then
      timeout 120 ./build-gpu/glm_cuda_backend_gpu_check --step-rows 4 --graphs-only "$fixtures/graph-tiny" \
        --step-rows 16 --graphs-only "$fixtures/bf16-groups" 2>&1 | tee "$OUT/e2e-graphs.log"; graphs_rc=${PIPESTATUS[0]}
    fi
  else
    say "e2e: no checkpoints (no node + dist/, and GLM_E2E_FIXTURES unset): skipped"
  fi
  timeout 400 ./build-gpu/glm_cuda_bench_air "$OUT/air-bench.json" 2>&1 | tee "$OUT/air-bench.log"; air_rc=${PIPESTATUS[0]}
  if command -v compute-sanitizer >/dev/null 2>&1; then
    timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 ./build-gpu/glm_kernel_tests_gpu >"$OUT/memcheck.log" 2>&1; memcheck_rc=$?
    timeout 240 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 3 ./build-gpu/glm_kernel_tests_gpu >"$OUT/racecheck.log" 2>&1; racecheck_rc=$?
  fi
fi

python3 - "$OUT" "$rev" "$clean" "$build_rc" "$gpu_rc" "$harness_rc" "$memcheck_rc" "$racecheck_rc" "$t_build" "$bench_rc" "$linear_bench_rc" \
  "$e2e_rc" "$air_rc" "$graphs_rc" <<'PY' 2>&1 | tee -a "$log"
import json, os, sys
out, rev, clean, build_rc, gpu_rc, harness_rc, mem_rc, race_rc, t_build, bench_rc, linear_bench_rc, e2e_rc, air_rc, graphs_rc = sys.argv[1:]
def load(name):
    try:
        with open(os.path.join(out, name)) as f: return json.load(f)
    except Exception: return []
gpu = {r["test"]: r for r in load("gpu-tests.json")}
har = {r["test"]: r for r in load("harness-tests.json")}
result = {
    "git_revision": rev, "cuda_tree_clean": clean, "arch": "sm_90a",
    "build_rc": int(build_rc), "build_s": int(t_build),
    "gpu_tests_rc": int(gpu_rc), "harness_tests_rc": int(harness_rc),
    "memcheck_rc": int(mem_rc), "racecheck_rc": int(race_rc),
    "fast_paths": [{"fast": "fp8_gemm_sm90", "twin": "fp8_gemm", "test": "fp8_gemm_sm90_twin_matches_when_available",
                    "ok": gpu.get("fp8_gemm_sm90_twin_matches_when_available", {}).get("ok")}],
    "quant_bench_rc": int(bench_rc), "quant_bench": load("quant-bench.json"),
    "cuda_backend_e2e_rc": int(e2e_rc), "cuda_graphs_rc": int(graphs_rc),
    "air_bench_rc": int(air_rc), "air_bench": load("air-bench.json"),
    "linear_bench_rc": int(linear_bench_rc), "linear_bench": load("linear-bench.json"),
    "tests": [{"test": t, "gpu_ok": gpu.get(t, {}).get("ok"), "gpu_ms": gpu.get(t, {}).get("ms"),
               "harness_ok": har.get(t, {}).get("ok"), "harness_ms": har.get(t, {}).get("ms")}
              for t in sorted(set(gpu) | set(har))],
}
with open(os.path.join(out, "gpu-check.json"), "w") as f: json.dump(result, f, indent=1)
print()
print(f"{'test':<58} {'gpu':>6} {'gpu ms':>9} {'harness':>8}")
for r in result["tests"]:
    g = "-" if r["gpu_ok"] is None else ("ok" if r["gpu_ok"] else "FAIL")
    h = "-" if r["harness_ok"] is None else ("ok" if r["harness_ok"] else "FAIL")
    ms = "" if r["gpu_ms"] is None else f"{r['gpu_ms']:.1f}"
    print(f"{r['test']:<58} {g:>6} {ms:>9} {h:>8}")
if result["quant_bench"]:
    print()
    print(f"{'kernel':<11} {'shape':<15} {'M':>5} {'N':>6} {'K':>5} {'us':>9} {'TFLOPS':>7} {'GB/s':>7}")
    for r in result["quant_bench"]:
        print(f"{r['kernel']:<11} {r['shape']:<15} {r['m']:>5} {r['n']:>6} {r['k']:>5} {r['us']:>9.1f} {r['tflops']:>7.1f} {r['gbps']:>7.0f}")
if result["linear_bench"]:
    print()
    print(f"{'kernel':<11} {'shape':<15} {'M':>5} {'N':>6} {'K':>5} {'us':>9} {'TFLOPS':>7} {'GB/s':>7}")
    for r in result["linear_bench"]:
        print(f"{r['kernel']:<11} {r['shape']:<15} {r['m']:>5} {r['n']:>6} {r['k']:>5} {r['us']:>9.1f} {r['tflops']:>7.1f} {r['gbps']:>7.0f}")
print(f"revision {rev} (cuda/ clean {clean}); build rc {build_rc} ({t_build}s); gpu tests rc {gpu_rc}; bench rc {bench_rc}; "
      f"linear bench rc {linear_bench_rc}; "
      f"harness rc {harness_rc}; memcheck rc {mem_rc}; racecheck rc {race_rc}; "
      f"cuda backend e2e rc {e2e_rc}; cuda graphs rc {graphs_rc}; air bench rc {air_rc} (99 = not run)")
PY
[ "$build_rc" -eq 0 ] && [ "$gpu_rc" -eq 0 ] && [ "$harness_rc" -eq 0 ] && \
  { [ "$memcheck_rc" -eq 0 ] || [ "$memcheck_rc" -eq 99 ]; } && { [ "$racecheck_rc" -eq 0 ] || [ "$racecheck_rc" -eq 99 ]; } && \
  { [ "$e2e_rc" -eq 0 ] || [ "$e2e_rc" -eq 99 ]; } && { [ "$graphs_rc" -eq 0 ] || [ "$graphs_rc" -eq 99 ]; }
