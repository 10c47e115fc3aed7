#!/usr/bin/env node
// prebuildify's --node-gyp stand-in (package.json "prebuilds:cpu" / "prebuilds:cuda"). prebuildify runs
// node-gyp, which needs a binding.gyp we do not have; it calls this script with node-gyp's arguments
// ("rebuild --target=<node version> --arch=x64 --release"), which we ignore: the addon is N-API, so
// the Node version does not matter, and the CMake build is chosen by GLM_PREBUILD_VARIANT.
// prebuildify then takes the first *.node in build/Release, strips it and moves it into prebuilds/.
//
//   cpu:  GLM_CUDA=OFF in its own build dir (build-cpu/), only the addon target, copied to build/Release.
//   cuda: GLM_CUDA=ON in the development build dir (build/), so CI's test build and this share one
//         nvcc compile (the CUDA kernels are most of the build time); GLM_CUDA_ARCHS as CMakeLists.txt.
import { copyFileSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const variant = process.env.GLM_PREBUILD_VARIANT;
if (variant !== 'cpu' && variant !== 'cuda') {
  console.error('prebuild-shim: set GLM_PREBUILD_VARIANT=cpu or cuda (use "npm run prebuilds:cpu" / "prebuilds:cuda")');
  process.exit(2);
}
const cmakeJs = createRequire(path.join(root, 'package.json')).resolve('cmake-js/bin/cmake-js');
const outDir = variant === 'cpu' ? 'build-cpu' : 'build';
// configure always runs (seconds), so the variant's GLM_CUDA replaces whatever a dev build left in the
// cache (GLM_CUDA=ON fails loudly without nvcc instead of building a CPU addon as the "CUDA variant");
// build then recompiles only what changed.
const steps = [
  ['configure', '--out', outDir, `--CDGLM_CUDA=${variant === 'cpu' ? 'OFF' : 'ON'}`],
  ['build', '--out', outDir, '--target', 'glm_node'],
];
const started = Date.now();
for (const step of steps) {
  console.log(`prebuild-shim: ${variant} variant: cmake-js ${step.join(' ')}`);
  const r = spawnSync(process.execPath, [cmakeJs, ...step], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
console.log(`prebuild-shim: ${variant} variant built in ${((Date.now() - started) / 1000).toFixed(0)} s`);
if (outDir !== 'build') {
  mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
  copyFileSync(path.join(root, outDir, 'Release', 'glm_node.node'), path.join(root, 'build', 'Release', 'glm_node.node'));
}
