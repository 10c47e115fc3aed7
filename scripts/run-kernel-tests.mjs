// Runs the CUDA kernel tests on the CPU execution harness (CMake target glm_kernel_tests, built next to
// the addon; no GPU or nvcc needed).
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const candidates = ['build/glm_kernel_tests', 'build/Release/glm_kernel_tests'].map((p) => path.join(root, p));
const binary = candidates.find((p) => existsSync(p));
if (!binary) {
  console.error('glm_kernel_tests not built; run "npm run build:native" first');
  process.exit(1);
}
const r = spawnSync(binary, process.argv.slice(2), { stdio: 'inherit' });
process.exit(r.status ?? 1);
