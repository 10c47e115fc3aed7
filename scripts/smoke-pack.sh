#!/usr/bin/env bash
# The user's path, from the packed tarball (issue 13; `npm run smoke:pack`, run by .ci/run after
# `npm run prebuilds`): checks the prebuilt addons (shared libraries, GLIBC floor, exports), packs the
# package, checks the tarball's files and size, installs it into a fresh project whose PATH has no
# compiler and no cmake, and there runs the README's main command, an ESM import, a CommonJS require
# and backend 'cuda' (a typed error on this GPU-less machine, the process alive).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tuple=linux-x64
cpu_addon=prebuilds/$tuple/glm-node.glibc.node
cuda_addon=variants/cuda/prebuilds/$tuple/glm-node.glibc.node
glibc_floor=2.34              # README "Prebuilt binaries"
max_tarball_mb=${GLM_MAX_TARBALL_MB:-200}   # npm's registry refuses tarballs near 230 MB (npm/cli#4794)
work=$(mktemp -d "${TMPDIR:-/tmp}/glm-smoke.XXXXXX")
trap 'rm -rf "$work"' EXIT
fail() { echo "smoke-pack: FAIL: $*" >&2; exit 1; }
step() { echo; echo "== smoke-pack: $*"; }

# --- 1. The binaries -------------------------------------------------------------------------------
check_addon() {
  local file=$1 lib max
  [ -f "$file" ] || fail "$file is missing (run npm run prebuilds)"
  echo "$file: $(stat -c %s "$file") bytes"
  for lib in $(readelf -d "$file" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    case $lib in
      libc.so.6|libm.so.6|libgcc_s.so.1|ld-linux-x86-64.so.2|libdl.so.2|libpthread.so.0|librt.so.1) echo "  needs $lib" ;;
      *) fail "$file needs $lib, which is not on every glibc system (libstdc++, libcuda and libcudart must not be needed)" ;;
    esac
  done
  max=$(objdump -T "$file" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
  echo "  highest GLIBC symbol version: $max (floor $glibc_floor)"
  [ "$(printf '%s\n%s\n' "$max" "$glibc_floor" | sort -V | tail -1)" = "$glibc_floor" ] || fail "$file needs GLIBC_$max > $glibc_floor"
  ! objdump -T "$file" | grep -q 'GLIBCXX_\|CXXABI_' || fail "$file needs the host's libstdc++ (it must be linked statically)"
  local exported
  exported=$(nm -D --defined-only "$file" | awk '{print $3}' | sort | tr '\n' ' ')
  [ "$exported" = "napi_register_module_v1 node_api_module_get_api_version_v1 " ] || fail "$file exports more than the N-API entry points: $exported"
  ! readelf -S "$file" | grep -q '\.debug_\|\.symtab' || fail "$file is not stripped"
}
step "the prebuilt addons"
check_addon "$cpu_addon"
if [ -f "$cuda_addon" ]; then check_addon "$cuda_addon"; have_cuda=1; else echo "(no CUDA variant built: $cuda_addon)"; have_cuda=0; fi

# --- 2. The tarball --------------------------------------------------------------------------------
step "npm pack"
npm pack --json --pack-destination "$work" > "$work/pack.json"
tarball=$work/$(node -p "require('$work/pack.json')[0].filename")
size=$(stat -c %s "$tarball")
unpacked=$(node -p "require('$work/pack.json')[0].unpackedSize")
echo "tarball: $(basename "$tarball") $size bytes packed, $unpacked unpacked, $(node -p "require('$work/pack.json')[0].entryCount") files"
[ "$size" -le $((max_tarball_mb * 1024 * 1024)) ] || fail "tarball is $size bytes, over the ${max_tarball_mb} MB budget"
tar tzf "$tarball" | sed 's|^package/||' | sort > "$work/files.txt"
for f in package.json README.md dist/lib/index.js dist/lib/index.d.ts dist/lib/cli.js "$cpu_addon" \
         models/tiny-default/config.json models/tiny-default/model.safetensors models/tiny-default/tokenizer.json \
         models/tiny-default/tokenizer_config.json CMakeLists.txt cpp/addon/addon.cc; do
  grep -qxF "$f" "$work/files.txt" || fail "the tarball lacks $f"
done
[ $have_cuda = 0 ] || grep -qxF "$cuda_addon" "$work/files.txt" || fail "the tarball lacks $cuda_addon"
bad=$(grep -E '^(build|build-cpu|test|node_modules|\.fixtures|\.ci)/|^scripts/(install|smoke)|\.tgz$' "$work/files.txt" || true)
[ -z "$bad" ] || fail "the tarball holds files users do not need: $(echo "$bad" | head -5 | tr '\n' ' ')"
echo "file list ok"

# --- 3. A fresh project, no compiler ---------------------------------------------------------------
step "install into a fresh project with no compiler or cmake on PATH"
mkdir -p "$work/bin" "$work/app"
for tool in node npm npx; do ln -s "$(command -v $tool)" "$work/bin/$tool"; done
ln -s "$(command -v sh)" "$work/bin/sh"   # npm runs lifecycle scripts through sh (the package has none)
bare() { PATH=$work/bin "$@"; }   # every user-side command runs with this PATH
for tool in cmake g++ gcc cc c++ make nvcc ninja; do ! PATH=$work/bin command -v $tool >/dev/null 2>&1 || fail "$tool is still on PATH"; done
cd "$work/app"
echo '{ "name": "smoke-app", "private": true, "version": "1.0.0" }' > package.json
bare npm install --no-audit --no-fund --prefer-offline "$tarball" 2>&1 | tee "$work/install.log"
! grep -q 'install-scripts' "$work/install.log" || fail "npm reports install scripts in the package"
[ ! -d node_modules/glm-node/build ] || fail "the install built the addon from source"

step "the README's main command: npx glm-node generate"
out=$(bare npx glm-node generate "Hello! Who are you?" --max-tokens 24 --seed 1 --threads 2)
echo "$out"
[ -n "$(echo "$out" | tr -d '[:space:]')" ] || fail "generate printed nothing"

# The script's own checks; the addon it loaded must be the package's prebuild (read from the process's maps).
cat > "$work/app/check.txt" <<'EOF'
const model = await Model.load(modelDir, { threads: 2 });
const maps = readFileSync('/proc/self/maps', 'utf8');
const loadedFrom = [...new Set(maps.split('\n').map((l) => l.split(/\s+/)[5]).filter((p) => p && p.endsWith('.node')))];
if (loadedFrom.length !== 1 || !loadedFrom[0].endsWith('node_modules/glm-node/prebuilds/linux-x64/glm-node.glibc.node')) throw new Error('addon not (only) from prebuilds/: ' + loadedFrom);
if (model.info.backend !== 'cpu') throw new Error('expected the CPU backend here, got ' + model.info.backend);
const r = await model.generate({ tokens: [1, 2, 3], maxTokens: 4, temperature: 0 });
if (r.tokens.length !== 4) throw new Error('generated ' + r.tokens.length + ' tokens');
console.log(kind, 'ok:', model.info.backend, '-', model.info.backendReason);
const err = await Model.load(modelDir, { backend: 'cuda' }).then(() => null, (e) => e);
if (!(err instanceof BackendUnavailableError) || err.code !== 'BACKEND_UNAVAILABLE') throw new Error('backend cuda: expected BackendUnavailableError, got ' + err);
console.log(kind, "backend 'cuda':", err.name, '-', err.message);
const again = await model.generate({ tokens: [1, 2, 3], maxTokens: 2, temperature: 0 });
if (again.tokens.length !== 2) throw new Error('the process did not keep working after the error');
await model.dispose();
EOF
modeldir="path.join(path.dirname(require.resolve('glm-node/package.json')), 'models', 'tiny-default')"
step "ESM import"
{ echo "import { Model, BackendUnavailableError } from 'glm-node'; import { readFileSync } from 'node:fs'; import path from 'node:path'; import { createRequire } from 'node:module';"
  echo "const require = createRequire(import.meta.url); const modelDir = $modeldir; const kind = 'esm';"
  cat check.txt; } > esm.mjs
bare node esm.mjs
step "CommonJS require"
{ echo "const { Model, BackendUnavailableError } = require('glm-node'); const { readFileSync } = require('node:fs'); const path = require('node:path');"
  echo "const modelDir = $modeldir; const kind = 'cjs';"
  echo "(async () => {"; cat check.txt; echo "})().catch((e) => { console.error(e); process.exit(1); });"; } > cjs.cjs
bare node cjs.cjs

if [ $have_cuda = 1 ]; then
  step "the shipped CUDA variant, probed here (loads without libcuda; on this machine it finds no driver)"
  GLM_NODE_CUDA_ADDON=$PWD/node_modules/glm-node/$cuda_addon GLM_NODE_PROBE_CACHE=0 bare node --input-type=module -e "
    import { Model } from 'glm-node';
    const m = await Model.load(process.argv[1], { threads: 2 });
    console.log(m.info.backend, '-', m.info.backendReason);
    if (m.info.backend === 'cpu' && !/CUDA variant's self-test failed: (no usable CUDA device|no CUDA device)/.test(m.info.backendReason)) throw new Error('the probe did not run the variant: ' + m.info.backendReason);
    await m.dispose();" "$PWD/node_modules/glm-node/models/tiny-default"
fi
step "all passed (tarball $size bytes)"
