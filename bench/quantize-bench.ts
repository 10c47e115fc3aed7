// Quantizer speed: the C++ quantizer (all cores) against the single-threaded JavaScript reference on
// the same checkpoint, end to end (read, quantize, write), with the outputs compared byte for byte.
//   node dist/bench/quantize-bench.js [--model <dir>] [--to fp8,fp8-block,mxfp4] [--threads N]
// Default model: the `npm run bench` checkpoint (≈0.5B parameters, BF16, made once in the temp folder).
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { quantizeCheckpoint, QUANT_TARGETS, type QuantTarget } from '../lib/quantize.js';
import { benchCheckpointDir, ensureCheckpoint } from './bench.js';

const { values } = parseArgs({ options: { model: { type: 'string' }, to: { type: 'string', default: 'fp8,fp8-block,mxfp4' }, threads: { type: 'string', default: '0' } } });
const targets = values.to.split(',') as QuantTarget[];
for (const t of targets) if (!QUANT_TARGETS.includes(t)) throw new Error(`unknown target ${t}`);
let dir = values.model;
if (!dir) {
  dir = benchCheckpointDir();
  await ensureCheckpoint(dir);
}
const threads = Number(values.threads);
const out = path.join(os.tmpdir(), `glm-quant-bench-${process.pid}`);
const same = (a: string, b: string) => readdirSync(a).every((f) => readFileSync(path.join(a, f)).equals(readFileSync(path.join(b, f))));
console.log(`model ${dir}; ${os.cpus().length} CPUs, load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
console.log('target     params   JS s  JS Mparam/s  native s  native Mparam/s  speedup  identical');
try {
  for (const to of targets) {
    let t0 = performance.now();
    const rj = await quantizeCheckpoint(dir, `${out}-js`, { to, engine: 'js' });
    const js = (performance.now() - t0) / 1000;
    t0 = performance.now();
    await quantizeCheckpoint(dir, `${out}-cc`, { to, engine: 'native', threads });
    const cc = (performance.now() - t0) / 1000;
    const p = rj.quantizedParams;
    console.log(`${to.padEnd(9)} ${(p / 1e6).toFixed(0).padStart(6)}M ${js.toFixed(1).padStart(6)} ${(p / 1e6 / js).toFixed(1).padStart(12)} ${cc.toFixed(2).padStart(9)} ${(p / 1e6 / cc).toFixed(1).padStart(16)} ${(js / cc).toFixed(1).padStart(7)}x  ${same(`${out}-js`, `${out}-cc`) ? 'yes' : 'NO'}`);
    rmSync(`${out}-js`, { recursive: true, force: true });
    rmSync(`${out}-cc`, { recursive: true, force: true });
  }
  console.log(`load average after: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
} finally {
  rmSync(`${out}-js`, { recursive: true, force: true });
  rmSync(`${out}-cc`, { recursive: true, force: true });
}
