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
# 1e-4), and a dense GQA-4 model whose 16-row steps run the flash attention ('bf16-dense', budget 2e-2).
# The checkpoints come from scripts/e2e-fixtures.mjs when node and dist/ are there, else from
# GLM_E2E_FIXTURES (a folder holding base/ and bf16-groups/, e.g. carried from the dev machine). Then
# glm_cuda_bench_air: decode tokens/s at context 0 and 4096 and prefill tokens/s at 2048 on a
# GLM-4.5-Air-shaped model cut to 3 layers (random BF16 weights built in memory, ~10 GB uploaded), with
# the decode bytes per token as GB/s (air-bench.json). Unverified until a GPU is lent.
# Prefill kernels (issue 5): GLM_ATTN_BENCH=1 runs bench_attention_air_prefill (attention_prefill_mma vs the
# fp32 attention_prefill on a 2048-token prompt and a mixed step at Air's 96/8 x 128 heads; attn-bench.json);
# bench_linear also times the sm_90a twin linear_gemm_sm90 at m = 2048. The bf16 matrix rate they are
# judged against is measured first (an 8192^3 bf16 torch.matmul, bf16-rate.json; KINDS.md saw ~780
# TFLOP/s). The kernel test linear_gemm_sm90_twin_matches_when_available checks the twin on the device,
# and a second e2e run of the bf16-dense checkpoint (no router: no near-tie for a changed summation order
# to flip) sets GLM_CUDA_HOPPER_GEMM=1 (the backend's load-time
# self-test then decides, and says why, on stderr: e2e-hopper.log).
# Quantized CUDA backend (issue 5): the e2e check also runs bf16-groups quantized to FP8 per-channel, FP8
# 128x128 blocks and MXFP4 experts (groups-fp8, groups-fp8-block, groups-mxfp4 from e2e-fixtures.mjs) at
# 4-row steps (weight-only GEMVs, budget 1e-4) and 16-row steps (bf16-tile GEMMs, 2e-2); the kernel tests
# include fp8_gemv / fp8_dequant_gemm / quantized grouped experts; glm_cuda_bench_air runs once per
# format (GLM_BENCH_FORMAT = bf16, fp8, fp8-block, mxfp4; air-bench-<format>.json) and the summary puts
# decode tok/s and bytes/token side by side.
# CUDA graphs (issue 5): glm_cuda_backend_gpu_check --graphs-only on 'graph-tiny' and 'bf16-groups' (needs
# the fixtures above): decode with graphs on vs off must give bit-identical logits and tokens (40 steps
# over 8-position KV pages, batched sessions, a reset, device greedy generation) and a synchronous call
# inside a capture must be rejected by the real runtime and fall back to eager (e2e-graphs.log); and
# sampled Model::generate (temperature, filters, penalties, logprobs) chosen on the device inside the
# graphs must equal host sampling of the same logits and be bit-identical with graphs off. The
# benchmark prints decode tokens/s with graphs on and off side by side (air-bench.json *_graphs_on/off).
# KV cache types and graph buckets (issue 18): the kernel tests include test_kv_types.cc (kv_append
# bit-identical to the CPU's KvStorage::write for BF16 / FP8, kv_copy_page, and the three attention
# kernels over BF16 / FP8 pages equal to their F32 twins over the decoded values); e2e-kv.log runs the
# CUDA backend with --kv bf16 and --kv fp8 against the CPU backend with the same KV type (the fp32 path on
# bf16-groups, 4-row steps; the flash-attention path on bf16-dense, 16-row steps), the graph checks with
# an FP8 cache (bucketed decode graphs: padding rows on the scratch page, bit-identical on vs off, a
# growing and shrinking batch) and the batch-invariance check (a request alone vs among 15 others: MoE
# models on 4-row fp32 steps, budget 1e-4, and the dense model on 64-row BF16 steps, 2e-2) with a BF16 cache; glm_cuda_bench_air runs BF16 weights once more with GLM_BENCH_KV=bf16 and
# fp8 (air-bench-kv-<type>.json: decode tok/s at context 4096 per KV type). Unverified until a GPU is lent.
# Device sampling (issue 5): GLM_SAMPLE_BENCH=1 runs bench_sample_tokens_vocab_151552 (argmax_tokens and
# sample_tokens at rows 1 and 8, vocab 151552, against copying the logits rows to the host;
# sample-bench.json). The kernel test sample_tokens_* checks it against the CPU sampler on the device.
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
kv_rc=99
attn_bench_rc=99; e2e_hopper_rc=99; sample_bench_rc=99; mtp_rc=99
timeout 120 python3 - "$OUT/bf16-rate.json" >>"$log" 2>&1 <<'PY' || true
import json, sys
import torch
a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16); b = torch.randn_like(a)
for _ in range(3): a @ b
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
t = []
for _ in range(10):
    s.record(); a @ b; e.record(); e.synchronize(); t.append(s.elapsed_time(e))
t.sort()
rate = 2 * 8192**3 / (t[len(t) // 2] * 1e-3) * 1e-12
print(f"bf16 matrix rate (torch 8192^3, median of 10): {rate:.0f} TFLOP/s")
json.dump({"bf16_tflops": rate}, open(sys.argv[1], "w"))
PY
if [ $build_rc -eq 0 ]; then
  ./build-gpu/glm_kernel_tests_gpu --json "$OUT/gpu-tests.json" 2>&1 | tee "$OUT/gpu-tests.log"; gpu_rc=${PIPESTATUS[0]}
  ./build-gpu/glm_kernel_tests --json "$OUT/harness-tests.json" >"$OUT/harness-tests.log" 2>&1; harness_rc=$?
  GLM_QUANT_BENCH=1 GLM_QUANT_BENCH_JSON="$OUT/quant-bench.json" timeout 120 ./build-gpu/glm_kernel_tests_gpu bench_quant \
    >"$OUT/quant-bench.log" 2>&1; bench_rc=$?
  GLM_LINEAR_BENCH=1 GLM_LINEAR_BENCH_JSON="$OUT/linear-bench.json" timeout 120 ./build-gpu/glm_kernel_tests_gpu bench_linear \
    >"$OUT/linear-bench.log" 2>&1; linear_bench_rc=$?
  GLM_ATTN_BENCH=1 GLM_ATTN_BENCH_JSON="$OUT/attn-bench.json" timeout 120 ./build-gpu/glm_kernel_tests_gpu bench_attention \
    >"$OUT/attn-bench.log" 2>&1; attn_bench_rc=$?
  GLM_SAMPLE_BENCH=1 GLM_SAMPLE_BENCH_JSON="$OUT/sample-bench.json" timeout 120 ./build-gpu/glm_kernel_tests_gpu bench_sample \
    >"$OUT/sample-bench.log" 2>&1; sample_bench_rc=$?
  fixtures="${GLM_E2E_FIXTURES:-}"
  if [ -z "$fixtures" ] && command -v node >/dev/null 2>&1 && [ -f dist/lib/synthetic/checkpoint.js ]; then
    fixtures="$OUT/e2e-fixtures"
    node scripts/e2e-fixtures.mjs "$fixtures" >>"$log" 2>&1 || fixtures=""
  fi
  if [ -n "$fixtures" ] && [ -d "$fixtures/base" ]; then
    quant_args=()
    for q in fp8 fp8-block mxfp4; do [ -d "$fixtures/groups-$q" ] && quant_args+=("$fixtures/groups-$q"); done
    timeout 300 ./build-gpu/glm_cuda_backend_gpu_check --step-rows 16 --prompt 300 "$fixtures/base" \
      --step-rows 4 --prompt 300 "$fixtures/bf16-groups" "${quant_args[@]}" \
      --step-rows 16 --prompt 300 "$fixtures/bf16-dense" "${quant_args[@]}" 2>&1 \
      | tee "$OUT/e2e.log"; e2e_rc=${PIPESTATUS[0]}
    GLM_CUDA_HOPPER_GEMM=1 timeout 200 ./build-gpu/glm_cuda_backend_gpu_check --step-rows 16 --prompt 300 "$fixtures/bf16-dense" \
      >"$OUT/e2e-hopper.log" 2>&1; e2e_hopper_rc=$?
    grep "BF16 GEMM" "$OUT/e2e-hopper.log" | tee -a "$log"
    if [ -d "$fixtures/graph-tiny" ]; then
      timeout 120 ./build-gpu/glm_cuda_backend_gpu_check --step-rows 4 --graphs-only "$fixtures/graph-tiny" \
        --step-rows 16 --graphs-only "$fixtures/bf16-groups" 2>&1 | tee "$OUT/e2e-graphs.log"; graphs_rc=${PIPESTATUS[0]}
      timeout 300 ./build-gpu/glm_cuda_backend_gpu_check --step-rows 4 --prompt 300 --no-failure-paths --kv bf16 "$fixtures/bf16-groups" \
        --kv fp8 "$fixtures/bf16-groups" --step-rows 16 --kv bf16 "$fixtures/bf16-dense" \
        --step-rows 4 --graphs-only --kv fp8 "$fixtures/graph-tiny" \
        --step-rows 4 --budget 1e-4 --batch-invariance --kv bf16 "$fixtures/graph-tiny" "$fixtures/bf16-groups" \
        --step-rows 64 --budget 2e-2 --batch-invariance "$fixtures/bf16-dense" 2>&1 \
        | tee "$OUT/e2e-kv.log"; kv_rc=${PIPESTATUS[0]}
    fi
  else
    say "e2e: no checkpoints (no node + dist/, and GLM_E2E_FIXTURES unset): skipped"
  fi
  # The MTP layer on the GPU (issue 11): draft logits at every prompt position vs the CPU backend, greedy
  # tokens with 1 and 2 drafts per round equal to no drafts and to the CPU's, on the trained default model
  # (the ids: "What is 487 + 356?" in its chat template); f32 and FP8 KV.
  mtp_prompt=994,996,999,10,441,303,32,52,56,55,293,32,51,53,54,63,1000
  timeout 120 ./build-gpu/glm_cuda_backend_gpu_check --step-rows 4 --mtp-prompt "$mtp_prompt" --mtp-tokens 48 \
    --mtp models/tiny-default --kv fp8 --mtp models/tiny-default 2>&1 | tee "$OUT/e2e-mtp.log"; mtp_rc=${PIPESTATUS[0]}
  timeout 400 ./build-gpu/glm_cuda_bench_air "$OUT/air-bench.json" 2>&1 | tee "$OUT/air-bench.log"; air_rc=${PIPESTATUS[0]}
  for f in fp8 fp8-block mxfp4; do
    GLM_BENCH_FORMAT=$f timeout 300 ./build-gpu/glm_cuda_bench_air "$OUT/air-bench-$f.json" 2>&1 | tee -a "$OUT/air-bench.log"
    rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && air_rc=$rc
  done
  for kv in bf16 fp8; do
    GLM_BENCH_KV=$kv timeout 300 ./build-gpu/glm_cuda_bench_air "$OUT/air-bench-kv-$kv.json" 2>&1 | tee -a "$OUT/air-bench.log"
    rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && air_rc=$rc
  done
  if command -v compute-sanitizer >/dev/null 2>&1; then
    timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 ./build-gpu/glm_kernel_tests_gpu >"$OUT/memcheck.log" 2>&1; memcheck_rc=$?
    timeout 240 compute-sanitizer --tool racecheck --racecheck-report hazard --error-exitcode 3 ./build-gpu/glm_kernel_tests_gpu >"$OUT/racecheck.log" 2>&1; racecheck_rc=$?
  fi
fi

python3 - "$OUT" "$rev" "$clean" "$build_rc" "$gpu_rc" "$harness_rc" "$memcheck_rc" "$racecheck_rc" "$t_build" "$bench_rc" "$linear_bench_rc" \
  "$e2e_rc" "$air_rc" "$attn_bench_rc" "$e2e_hopper_rc" "$graphs_rc" "$sample_bench_rc" "$kv_rc" "$mtp_rc" <<'PY' 2>&1 | tee -a "$log"
import json, os, sys
out, rev, clean, build_rc, gpu_rc, harness_rc, mem_rc, race_rc, t_build, bench_rc, linear_bench_rc, e2e_rc, air_rc, \
    attn_bench_rc, e2e_hopper_rc, graphs_rc, sample_bench_rc, kv_rc, mtp_rc = sys.argv[1:]
def load(name, empty=None):
    try:
        with open(os.path.join(out, name)) as f: return json.load(f)
    except Exception: return [] if empty is None else empty
gpu = {r["test"]: r for r in load("gpu-tests.json")}
har = {r["test"]: r for r in load("harness-tests.json")}
result = {
    "git_revision": rev, "cuda_tree_clean": clean, "arch": "sm_90a",
    "build_rc": int(build_rc), "build_s": int(t_build),
    "gpu_tests_rc": int(gpu_rc), "harness_tests_rc": int(harness_rc),
    "memcheck_rc": int(mem_rc), "racecheck_rc": int(race_rc),
    "fast_paths": [{"fast": "fp8_gemm_sm90", "twin": "fp8_gemm", "test": "fp8_gemm_sm90_twin_matches_when_available",
                    "ok": gpu.get("fp8_gemm_sm90_twin_matches_when_available", {}).get("ok")},
                   {"fast": "linear_gemm_sm90", "twin": "linear_gemm", "test": "linear_gemm_sm90_twin_matches_when_available",
                    "ok": gpu.get("linear_gemm_sm90_twin_matches_when_available", {}).get("ok")}],
    "bf16_rate": load("bf16-rate.json", {}),
    "attn_bench_rc": int(attn_bench_rc), "attn_bench": load("attn-bench.json"),
    "sample_bench_rc": int(sample_bench_rc), "sample_bench": load("sample-bench.json"),
    "cuda_backend_e2e_hopper_gemm_rc": int(e2e_hopper_rc),
    "quant_bench_rc": int(bench_rc), "quant_bench": load("quant-bench.json"),
    "cuda_backend_e2e_rc": int(e2e_rc), "cuda_graphs_rc": int(graphs_rc), "kv_types_e2e_rc": int(kv_rc),
    "mtp_e2e_rc": int(mtp_rc),
    "air_bench_rc": int(air_rc), "air_bench": load("air-bench.json"),
    "air_bench_formats": {f: load(f"air-bench-{f}.json") for f in ("fp8", "fp8-block", "mxfp4")},
    "air_bench_kv": {kv: load(f"air-bench-kv-{kv}.json") for kv in ("bf16", "fp8")},
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
rate = result["bf16_rate"].get("bf16_tflops") if isinstance(result["bf16_rate"], dict) else None
if rate: print(f"\nbf16 matrix rate measured: {rate:.0f} TFLOP/s")
pct = lambda t: f"{100 * t / rate:>5.0f}%" if rate else "     -"
if result["linear_bench"]:
    print()
    print(f"{'kernel':<11} {'shape':<15} {'M':>5} {'N':>6} {'K':>5} {'us':>9} {'TFLOPS':>7} {'GB/s':>7} {'%bf16':>6}")
    for r in result["linear_bench"]:
        print(f"{r['kernel']:<11} {r['shape']:<15} {r['m']:>5} {r['n']:>6} {r['k']:>5} {r['us']:>9.1f} {r['tflops']:>7.1f} {r['gbps']:>7.0f} {pct(r['tflops'])}")
if result["attn_bench"]:
    print()
    print(f"{'case':<16} {'kernel':<22} {'rows':>5} {'ms':>8} {'TFLOPS':>7} {'%bf16':>6} {'relL2':>9}")
    for r in result["attn_bench"]:
        print(f"{r['case']:<16} {r['kernel']:<22} {r['rows']:>5} {r['ms']:>8.3f} {r['tflops']:>7.1f} {pct(r['tflops'])} {r['rel_l2_vs_fp32']:>9.2e}")
air = [("bf16", result["air_bench"])] + list(result["air_bench_formats"].items()) + \
    [(f"bf16 kv {kv}", r) for kv, r in result["air_bench_kv"].items()]
if any(r for _, r in air):
    print()
    # decode with CUDA graphs (and, in brackets, eager) at context 0 and 4096
    print(f"{'air format':<11} {'GB/token':>9} {'tok/s ctx0 (eager)':>19} {'tok/s 4096 (eager)':>19} {'GB/s ctx0':>10} {'prefill tok/s':>14}")
    for f, r in air:
        if not r: continue
        g = lambda k, v: r.get(k, {}).get(v, 0.0)
        pair = lambda k: f"{g(k + '_graphs_on', 'tokens_per_s'):>9.1f} ({g(k + '_graphs_off', 'tokens_per_s'):>6.1f})"
        print(f"{f:<11} {r.get('decode_bytes_per_token', 0) / 1e9:>9.3f} {pair('decode_ctx0'):>19} {pair('decode_ctx4096'):>19} "
              f"{g('decode_ctx0_graphs_on', 'gb_per_s'):>10.0f} {g('prefill_2048', 'tokens_per_s'):>14.0f}")
if result["sample_bench"]:
    print()
    print(f"{'case':<28} {'rows':>5} {'us':>9}")
    for r in result["sample_bench"]:
        print(f"{r['case']:<28} {r['rows']:>5} {r['us']:>9.1f}")
print(f"revision {rev} (cuda/ clean {clean}); build rc {build_rc} ({t_build}s); gpu tests rc {gpu_rc}; bench rc {bench_rc}; "
      f"linear bench rc {linear_bench_rc}; "
      f"harness rc {harness_rc}; memcheck rc {mem_rc}; racecheck rc {race_rc}; "
      f"cuda backend e2e rc {e2e_rc} (hopper gemm {e2e_hopper_rc}); cuda graphs rc {graphs_rc}; kv types e2e rc {kv_rc}; mtp e2e rc {mtp_rc}; air bench rc {air_rc}; attn bench rc {attn_bench_rc}; sample bench rc {sample_bench_rc} (99 = not run)")
PY
[ "$build_rc" -eq 0 ] && [ "$gpu_rc" -eq 0 ] && [ "$harness_rc" -eq 0 ] && \
  { [ "$memcheck_rc" -eq 0 ] || [ "$memcheck_rc" -eq 99 ]; } && { [ "$racecheck_rc" -eq 0 ] || [ "$racecheck_rc" -eq 99 ]; } && \
  { [ "$e2e_rc" -eq 0 ] || [ "$e2e_rc" -eq 99 ]; } && { [ "$e2e_hopper_rc" -eq 0 ] || [ "$e2e_hopper_rc" -eq 99 ]; } && \
  { [ "$graphs_rc" -eq 0 ] || [ "$graphs_rc" -eq 99 ]; } && { [ "$kv_rc" -eq 0 ] || [ "$kv_rc" -eq 99 ]; } && \
  { [ "$mtp_rc" -eq 0 ] || [ "$mtp_rc" -eq 99 ]; }
