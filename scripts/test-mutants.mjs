// Mutation check of the kernel tests (issue 15): deletes each __syncthreads() and each __syncwarp() of
// every harness-run kernel in cuda/, one at a time, rebuilds glm_kernel_tests incrementally, runs the
// tests that launch that file's kernels, and requires every mutant to fail. A surviving mutant is a
// barrier no test depends on: either the tests miss a hazard or the barrier is not needed. A barrier
// shown not to be needed (an equivalent mutant) carries "mutant-exempt: <why>" in a comment on its
// line; it is listed with its reason and not run.
//
// Usage: node scripts/test-mutants.mjs [--only FILE...] [--list] [--build DIR]
//   --only qk_norm_rope.cu   mutate only these files (basename); --list prints the mutants and stops.
// Builds in build-mutants/ (configured on first use: Release, GLM_CUDA=OFF) so the normal build stays
// as it is. The source file is restored after every mutant, and on exit or interruption.
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const args = process.argv.slice(2);
const only = [];
let listOnly = false;
let buildDir = path.join(root, 'build-mutants');
for (let i = 0; i < args.length; ++i) {
  if (args[i] === '--only') { while (args[i + 1] && !args[i + 1].startsWith('--')) only.push(args[++i]); }
  else if (args[i] === '--list') listOnly = true;
  else if (args[i] === '--build') buildDir = path.resolve(args[++i]);
  else { console.error(`unknown argument ${args[i]}`); process.exit(2); }
}
const jobs = process.env.GLM_MUTANT_JOBS ?? '1';  // shared 2-core machines: one compile at a time
const testTimeoutMs = 300_000;

// --- mutation sites ------------------------------------------------------------------------------
// Code the harness compiles: everything except the nvcc-only branches (#if defined(__CUDACC__),
// GLM_HAS_SM90A, __CUDA_ARCH__), whose barriers no harness test can reach.
function sitesOf(file) {
  const lines = readFileSync(file, 'utf8').split('\n');
  const stack = [];  // per open #if: cur = its current branch is GPU-only, alt = its #else branch is
  const sites = [];
  lines.forEach((line, i) => {
    const pp = line.match(/^\s*#\s*(if|ifdef|ifndef|elif|else|endif)\b(.*)$/);
    if (pp) {
      const [, kw, rest] = pp;
      const gpuMacro = /^\s*(defined\s*\(?\s*)?(__CUDACC__|__CUDA_ARCH__|GLM_HAS_SM90A)\b/;
      const gpuOnly = gpuMacro.test(rest);
      const notGpu = kw === 'ifndef' ? gpuMacro.test(rest) : /^\s*!/.test(rest) && gpuMacro.test(rest.replace(/^\s*!/, ''));
      if (kw === 'if' || kw === 'ifdef' || kw === 'ifndef') stack.push({ cur: kw !== 'ifndef' && gpuOnly, alt: notGpu });
      else if (kw === 'else') { const e = stack.pop(); stack.push({ cur: e.alt, alt: e.cur }); }
      else if (kw === 'elif') { stack.pop(); stack.push({ cur: gpuOnly, alt: false }); }
      else if (kw === 'endif') stack.pop();
      return;
    }
    if (stack.some((e) => e.cur)) return;
    const code = line.replace(/\/\/.*$/, '');
    const exempt = line.match(/mutant-exempt:\s*(.*)$/)?.[1];
    for (const m of code.matchAll(/__syncthreads\s*\(\s*\)|__syncwarp\s*\([^()]*\)/g)) {
      sites.push({ file, line: i + 1, col: m.index, text: m[0], exempt });
    }
  });
  return sites;
}

const cudaDir = path.join(root, 'cuda');
const sources = readdirSync(cudaDir).filter((f) => /\.(cu|cuh)$/.test(f)).sort();
const selected = only.length ? sources.filter((f) => only.includes(f)) : sources;
const mutants = selected.flatMap((f) => sitesOf(path.join(cudaDir, f)));
if (listOnly) {
  for (const m of mutants) console.log(`${path.relative(root, m.file)}:${m.line}  ${m.text}${m.exempt ? `  (exempt: ${m.exempt})` : ''}`);
  console.log(`${mutants.length} mutants`);
  process.exit(0);
}

// --- build and the test -> kernels map ---------------------------------------------------------------
function run(cmd, argv, opts = {}) {
  return spawnSync(cmd, argv, { cwd: root, encoding: 'utf8', maxBuffer: 64 << 20, ...opts });
}
function build() {
  const r = run('nice', ['-n', '10', 'cmake', '--build', buildDir, '--target', 'glm_kernel_tests', '-j', jobs]);
  return r.status === 0 ? '' : (r.stdout + r.stderr).slice(-4000);
}
if (!existsSync(path.join(buildDir, 'CMakeCache.txt'))) {
  mkdirSync(buildDir, { recursive: true });
  const gen = run('ninja', ['--version']).status === 0 ? ['-G', 'Ninja'] : [];
  const r = run('cmake', ['-S', root, '-B', buildDir, ...gen, '-DCMAKE_BUILD_TYPE=Release', '-DGLM_CUDA=OFF']);
  if (r.status !== 0) { console.error(r.stdout + r.stderr); process.exit(1); }
}
const binary = path.join(buildDir, 'glm_kernel_tests');
let err = build();
if (err) { console.error(`the unmutated build fails:\n${err}`); process.exit(1); }
const mapFile = path.join(buildDir, 'kernels-of-tests.txt');
const base = run(binary, ['--kernels', mapFile], { env: { ...process.env, GLM_HARNESS_SEEDS: '1' }, timeout: 600_000 });
if (base.status !== 0) { console.error(`the unmutated tests fail:\n${base.stdout.slice(-4000)}`); process.exit(1); }
const testsOfKernel = new Map();
for (const line of readFileSync(mapFile, 'utf8').split('\n').filter(Boolean)) {
  const [test, ...kernels] = line.split(' ');
  for (const k of kernels) testsOfKernel.set(k, [...(testsOfKernel.get(k) ?? []), test]);
}
// A file's tests: those launching a kernel named in it or, for a header, in a file including it.
function testsFor(file) {
  const files = [file];
  if (file.endsWith('.cuh')) {
    const inc = new RegExp(`#include\\s+"${path.basename(file).replace('.', '\\.')}"`);
    files.push(...sources.map((f) => path.join(cudaDir, f)).filter((f) => f !== file && inc.test(readFileSync(f, 'utf8'))));
  }
  const text = files.map((f) => readFileSync(f, 'utf8')).join('\n');
  const tests = new Set();
  for (const [k, ts] of testsOfKernel) if (new RegExp(`\\b${k}\\b`).test(text)) ts.forEach((t) => tests.add(t));
  return [...tests];
}

// --- the mutants -------------------------------------------------------------------------------------
let pending = null;  // { file, text }: the original to put back
function restore() {
  if (pending) { writeFileSync(pending.file, pending.text); pending = null; }
}
process.on('exit', restore);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { restore(); process.exit(130); });

const results = [];
const t0 = Date.now();
for (const [i, m] of mutants.entries()) {
  const rel = `${path.relative(root, m.file)}:${m.line}`;
  if (m.exempt) {
    results.push({ rel, text: m.text, verdict: 'exempt', detail: m.exempt, tests: 0 });
    console.log(`[${i + 1}/${mutants.length}] ${'exempt'.padEnd(12)} ${rel} ${m.text}  ${m.exempt}`);
    continue;
  }
  const tests = testsFor(m.file);
  const original = readFileSync(m.file, 'utf8');
  const lines = original.split('\n');
  const l = lines[m.line - 1];
  lines[m.line - 1] = l.slice(0, m.col) + '((void)0)' + l.slice(m.col + m.text.length);
  pending = { file: m.file, text: original };
  writeFileSync(m.file, lines.join('\n'));
  let verdict, detail = '';
  if (!tests.length) {
    verdict = 'SURVIVED';
    detail = 'no test launches a kernel of this file';
  } else if ((err = build())) {
    verdict = 'BUILD-FAILED';
    detail = err.split('\n').find((x) => /error/.test(x)) ?? '';
  } else {
    const r = run(binary, tests, { env: { ...process.env, GLM_HARNESS_SEEDS: '1' }, timeout: testTimeoutMs });
    if (r.error?.code === 'ETIMEDOUT') { verdict = 'killed'; detail = 'timed out'; }
    else if (r.status !== 0) {
      verdict = 'killed';
      const out = `${r.stdout}\n${r.stderr}`.split('\n');
      const failLine = out.find((x) => /data race|in flight/.test(x)) ?? out.find((x) => /CHECK|error/i.test(x)) ?? '';
      detail = failLine.trim().slice(0, 220);
    } else verdict = 'SURVIVED';
  }
  restore();
  results.push({ rel, text: m.text, verdict, detail, tests: tests.length });
  console.log(`[${i + 1}/${mutants.length}] ${verdict.padEnd(12)} ${rel} ${m.text}  (${tests.length} tests) ${detail}`);
}
// Leave the build matching the sources again.
build();
const killed = results.filter((r) => r.verdict === 'killed').length;
const exempt = results.filter((r) => r.verdict === 'exempt').length;
const seconds = ((Date.now() - t0) / 1000).toFixed(0);
console.log(`mutants: ${killed} of ${results.length - exempt} killed, ${exempt} exempt (equivalent), in ${seconds} s`);
for (const r of results.filter((x) => x.verdict !== 'killed')) console.log(`  ${r.verdict}: ${r.rel} ${r.text} ${r.detail}`);
process.exit(killed + exempt === results.length ? 0 : 1);
