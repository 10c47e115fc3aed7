#!/usr/bin/env bash
# CUDA compiler launcher (CMake CUDA_COMPILER_LAUNCHER): runs the nvcc command line it is given and
# keeps a copy of its stderr — the ptxas resource report asked for with -Xptxas -v — in
# LOG_DIR/<object name>.log for scripts/ptxas-check.mjs. The output still reaches the build log.
set -u
log_dir="$1"; shift
obj=unknown
prev=""
for a in "$@"; do
  if [ "$prev" = "-o" ]; then obj="$(basename "$a")"; fi
  prev="$a"
done
mkdir -p "$log_dir"
"$@" 2> "$log_dir/$obj.log"
rc=$?
cat "$log_dir/$obj.log" >&2
exit $rc
