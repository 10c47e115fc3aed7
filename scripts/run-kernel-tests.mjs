// Runs the CUDA kernel tests on the CPU execution harness (CMake target glm_kernel_tests, built next to
// the addon; no GPU or nvcc needed). Without arguments the tests are shared by up to two processes, one
// per core of our CI machines: each takes the next test nobody has claimed (--claim), so a long test
// does not leave the other core idle; their reports are printed in turn. Any argument (test filters,
// --json) runs one process as before. GLM_KERNEL_TEST_PROCS overrides the process count.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const candidates = ['build/glm_kernel_tests', 'build/Release/glm_kernel_tests'].map((p) => path.join(root, p));
const binary = candidates.find((p) => existsSync(p));
if (!binary) {
  console.error('glm_kernel_tests not built; run "npm run build:native" first');
  process.exit(1);
}
const args = process.argv.slice(2);
const procs = Number(process.env.GLM_KERNEL_TEST_PROCS ?? Math.min(2, os.availableParallelism?.() ?? os.cpus().length));
if (args.length || procs <= 1) {
  const r = spawnSync(binary, args, { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

const t0 = Date.now();
const claims = mkdtempSync(path.join(os.tmpdir(), 'glm-kernel-tests-'));
process.on('exit', () => rmSync(claims, { recursive: true, force: true }));
const shard = () =>
  new Promise((resolve) => {
    const child = spawn(binary, ['--claim', claims], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('close', (code) => resolve({ code: code ?? 1, out }));
  });
const results = await Promise.all(Array.from({ length: procs }, () => shard()));
let passed = 0, failed = 0;
for (const r of results) {
  process.stdout.write(r.out);
  const m = r.out.match(/(\d+) passed, (\d+) failed/);
  if (m) { passed += Number(m[1]); failed += Number(m[2]); }
  else failed += 1;  // a shard that crashed before its summary
}
const ok = results.every((r) => r.code === 0);
console.log(`kernels (harness, ${procs} processes): ${passed} passed, ${failed} failed in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
process.exit(ok ? 0 : 1);
