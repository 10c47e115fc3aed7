// Reads the ptxas resource reports (-Xptxas -v) that the CUDA build captured per object
// (scripts/nvcc-log.sh → <build>/ptxas/*.log) and fails when a kernel listed as hot spills registers or
// keeps a stack frame in local memory, unless its source justifies it.
//
// In a cuda/*.cu file:   // ptxas: hot <kernel_name>
//                        // ptxas: allow-local <kernel_name>: <why the spill / stack frame is acceptable>
// Usage: node scripts/ptxas-check.mjs [build dir]   (default: build)
//        node scripts/ptxas-check.mjs --self-test   (checks the parser on a canned report)
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));

// One entry per (function, arch): registers, stack frame bytes, spill store/load bytes.
export function parseReport(text) {
  const out = [];
  let current = null;
  for (const line of text.split('\n')) {
    let m = line.match(/Compiling entry function '([^']+)' for '(sm_\w+)'/);
    if (m) {
      current = { fn: m[1], arch: m[2], regs: 0, stack: 0, spillStores: 0, spillLoads: 0 };
      out.push(current);
      continue;
    }
    if (!current) continue;
    m = line.match(/(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads/);
    if (m) {
      current.stack = Number(m[1]);
      current.spillStores = Number(m[2]);
      current.spillLoads = Number(m[3]);
    }
    m = line.match(/Used (\d+) registers/);
    if (m) current.regs = Number(m[1]);
  }
  return out;
}

// Hot kernels and justified exceptions declared in the sources.
export function readAnnotations(sources) {
  const hot = new Map();  // name -> file
  const allowed = new Map();  // name -> reason
  for (const [file, text] of sources) {
    for (const m of text.matchAll(/\/\/\s*ptxas:\s*hot\s+(\w+)/g)) hot.set(m[1], file);
    for (const m of text.matchAll(/\/\/\s*ptxas:\s*allow-local\s+(\w+)\s*:\s*(\S.*)/g)) allowed.set(m[1], m[2].trim());
  }
  return { hot, allowed };
}

// Itanium mangling spells an identifier as <length><name>: match that to avoid prefix collisions.
const mentions = (mangled, name) => mangled.includes(`${name.length}${name}`);

export function check(entries, { hot, allowed }) {
  const problems = [];
  const rows = [];
  for (const [name, file] of hot) {
    const mine = entries.filter((e) => mentions(e.fn, name));
    if (mine.length === 0) problems.push(`${name} (${file}): listed as hot but absent from the ptxas reports`);
    for (const e of mine) {
      const local = e.stack > 0 || e.spillStores > 0 || e.spillLoads > 0;
      const reason = allowed.get(name);
      rows.push({ kernel: name, arch: e.arch, regs: e.regs, stack: e.stack, spills: e.spillStores + e.spillLoads, note: local ? (reason ? `allowed: ${reason}` : 'FAIL') : '' });
      if (local && !reason) {
        problems.push(`${name} [${e.arch}] in ${file}: ${e.stack} B stack frame, ${e.spillStores} B spill stores, ${e.spillLoads} B spill loads — fix it or add "// ptxas: allow-local ${name}: <why>"`);
      }
    }
  }
  return { problems, rows };
}

function selfTest() {
  const report = [
    "ptxas info    : Compiling entry function '_ZN3glm4cuda11good_kernelEPf' for 'sm_80'",
    'ptxas info    : Function properties for _ZN3glm4cuda11good_kernelEPf',
    '    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads',
    'ptxas info    : Used 20 registers, used 0 barriers, 360 bytes cmem[0]',
    "ptxas info    : Compiling entry function '_ZN3glm4cuda12spill_kernelEPf' for 'sm_90a'",
    'ptxas info    : Function properties for _ZN3glm4cuda12spill_kernelEPf',
    '    48 bytes stack frame, 8 bytes spill stores, 8 bytes spill loads',
    'ptxas info    : Used 255 registers, used 1 barriers',
  ].join('\n');
  const entries = parseReport(report);
  const ann = (extra) => readAnnotations([['x.cu', `// ptxas: hot good_kernel\n// ptxas: hot spill_kernel\n${extra}`]]);
  const a = check(entries, ann(''));
  const b = check(entries, ann('// ptxas: allow-local spill_kernel: scratch array indexed at run time, measured cheaper'));
  const c = check(entries, readAnnotations([['x.cu', '// ptxas: hot missing_kernel']]));
  const ok = entries.length === 2 && entries[1].stack === 48 && entries[0].regs === 20 && a.problems.length === 1 &&
    b.problems.length === 0 && c.problems.length === 1;
  console.log(`ptxas-check self-test: ${ok ? 'ok' : 'FAILED'}`);
  process.exit(ok ? 0 : 1);
}

function main() {
  if (process.argv[2] === '--self-test') return selfTest();
  const buildDir = path.resolve(root, process.argv[2] ?? 'build');
  const logDir = path.join(buildDir, 'ptxas');
  const nvcc = spawnSync('nvcc', ['--version'], { encoding: 'utf8' });
  const haveNvcc = nvcc.status === 0;
  if (!existsSync(logDir)) {
    if (!haveNvcc || process.env.GLM_CUDA === 'OFF') {
      console.log('ptxas-check: skipped (no nvcc, so no CUDA build to check)');
      return;
    }
    console.error(`ptxas-check: nvcc is present but ${path.relative(root, logDir)} has no reports: was the CUDA backend built?`);
    process.exit(1);
  }
  const cudaDir = path.join(root, 'cuda');
  const sources = readdirSync(cudaDir).filter((f) => f.endsWith('.cu')).map((f) => [f, readFileSync(path.join(cudaDir, f), 'utf8')]);
  const entries = readdirSync(logDir).filter((f) => f.endsWith('.log')).flatMap((f) => parseReport(readFileSync(path.join(logDir, f), 'utf8')));
  const { problems, rows } = check(entries, readAnnotations(sources));
  console.log('ptxas-check: hot kernels');
  console.log('  kernel                       arch     regs  stack  spills');
  for (const r of rows.sort((x, y) => x.kernel.localeCompare(y.kernel) || x.arch.localeCompare(y.arch))) {
    console.log(`  ${r.kernel.padEnd(28)} ${r.arch.padEnd(7)} ${String(r.regs).padStart(5)} ${String(r.stack).padStart(6)} ${String(r.spills).padStart(7)}  ${r.note}`);
  }
  for (const p of problems) console.error(`ptxas-check: ${p}`);
  if (problems.length) process.exit(1);
  console.log(`ptxas-check: ${rows.length} hot kernel builds, no unjustified spills or stack frames`);
}

main();
