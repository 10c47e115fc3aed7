// Probes the CUDA variant of the addon in a child process before the loader lets it into this one: a
// driver, device or binary that aborts, segfaults or hangs on first use then takes down only the child.
// The verdict is cached per machine, driver and binary, so the child runs once per driver install.
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface ProbeVerdict {
  ok: boolean;
  /** ok: the device the child saw (name, compute capability, SMs, driver). */
  device?: string;
  /** !ok: one line saying why the CUDA variant is not used. */
  reason?: string;
}

/**
 * Long enough for a first CUDA context on a many-GPU machine; a wedged driver must not stall a load
 * forever. GLM_NODE_PROBE_TIMEOUT_MS overrides (tests use a short one).
 */
const probeTimeoutMs = () => Number(process.env.GLM_NODE_PROBE_TIMEOUT_MS) || 60_000;
const MARK = 'GLM_NODE_PROBE ';

// The child: require the variant, run its self-test (cudaProbe: device query and one tiny kernel), and
// print the verdict on one marked line. Inline (-e) so the probe needs no file of its own in the package.
const CHILD = `
const out = (v) => process.stdout.write(${JSON.stringify(MARK)} + JSON.stringify(v) + '\\n');
let addon;
try { addon = require(process.argv[1]); } catch (e) { out({ ok: false, reason: 'the CUDA variant cannot be loaded: ' + String(e && e.message || e).split('\\n')[0] }); process.exit(0); }
if (typeof addon.cudaProbe !== 'function') { out({ ok: false, reason: 'the CUDA variant has no cudaProbe() self-test (an older or foreign build)' }); process.exit(0); }
const r = addon.cudaProbe();
out({ ok: r.ok === true, device: r.device, reason: "the CUDA variant's self-test failed: " + r.reason });
process.exit(0);
`;

/** The driver's version line, or undefined when this machine has no NVIDIA kernel driver loaded. */
export function nvidiaDriver(): string | undefined {
  try {
    return readFileSync('/proc/driver/nvidia/version', 'utf8').split('\n')[0]!.trim();
  } catch {
    return undefined;
  }
}

function cacheFile(file: string, driver: string): string {
  const st = statSync(file);
  const key = createHash('sha256')
    .update([os.hostname(), os.cpus()[0]?.model ?? '', driver, path.resolve(file), st.size, st.mtimeMs, process.version].join('\0'))
    .digest('hex').slice(0, 24);
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'glm-node', `cuda-probe-${key}.json`);
}

function readCache(file: string): ProbeVerdict | undefined {
  try {
    const v = JSON.parse(readFileSync(file, 'utf8')) as ProbeVerdict;
    return typeof v.ok === 'boolean' ? v : undefined;
  } catch {
    return undefined;
  }
}

function writeCache(file: string, verdict: ProbeVerdict): void {
  try {
    mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(verdict));
    renameSync(tmp, file);  // atomic: concurrent processes never read half a verdict
  } catch {
    // a read-only home only costs the next process another probe
  }
}

interface ChildOutcome { stdout: string; stderr: string; code: number | null; signal: string | null; timedOut: boolean; spawnError?: string }

function verdictOf(r: ChildOutcome): ProbeVerdict & { cacheable: boolean } {
  const line = r.stdout.split('\n').find((l) => l.startsWith(MARK));
  if (line && r.code === 0) {
    try {
      const v = JSON.parse(line.slice(MARK.length)) as ProbeVerdict;
      return v.ok ? { ok: true, device: v.device, cacheable: true } : { ok: false, reason: String(v.reason).replace(/\s+/g, ' '), cacheable: true };
    } catch { /* fall through: a garbled verdict is a failure */ }
  }
  if (r.spawnError) return { ok: false, reason: `the CUDA probe could not start: ${r.spawnError}`, cacheable: false };
  if (r.timedOut) return { ok: false, reason: `the CUDA variant's probe did not finish in ${probeTimeoutMs() / 1000} s`, cacheable: false };
  const lastErr = r.stderr.trim().split('\n').filter(Boolean).pop();
  const how = r.signal ? `crashed (${r.signal})` : `exited with code ${r.code}`;
  return { ok: false, reason: `the CUDA variant's probe process ${how}${lastErr ? `: ${lastErr.slice(0, 300)}` : ''}`, cacheable: true };
}

function finish(file: string, cache: string | undefined, r: ChildOutcome): ProbeVerdict {
  const { cacheable, ...verdict } = verdictOf(r);
  if (cache && cacheable) writeCache(cache, verdict);
  return verdict;
}

function prepare(file: string, driver: string): { cached?: ProbeVerdict; cache?: string } {
  const cache = process.env.GLM_NODE_PROBE_CACHE === '0' ? undefined : cacheFile(file, driver);
  return { cached: cache ? readCache(cache) : undefined, cache };
}

const childArgs = (file: string) => ['-e', CHILD, path.resolve(file)];

/** Probes `file` (the CUDA variant) in a child process; `driver` keys the cache. */
export async function probeCudaVariant(file: string, driver: string): Promise<ProbeVerdict> {
  const { cached, cache } = prepare(file, driver);
  if (cached) return cached;
  const r = await new Promise<ChildOutcome>((resolve) => {
    execFile(process.execPath, childArgs(file), { timeout: probeTimeoutMs(), killSignal: 'SIGKILL', maxBuffer: 1 << 20, windowsHide: true },
      (error, stdout, stderr) => {
        const e = error as (NodeJS.ErrnoException & { killed?: boolean; signal?: string; code?: number | string }) | null;
        resolve({
          stdout, stderr,
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          timedOut: Boolean(e?.killed),
          spawnError: e && typeof e.code === 'string' ? e.message : undefined,
        });
      });
  });
  return finish(file, cache, r);
}

/** The same, blocking: for the first binding() call made outside Model.load (rare; e.g. the benchmark). */
export function probeCudaVariantSync(file: string, driver: string): ProbeVerdict {
  const { cached, cache } = prepare(file, driver);
  if (cached) return cached;
  const c = spawnSync(process.execPath, childArgs(file), { timeout: probeTimeoutMs(), killSignal: 'SIGKILL', stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 1 << 20 });
  const timedOut = (c.error as NodeJS.ErrnoException | undefined)?.code === 'ETIMEDOUT';
  const r: ChildOutcome = {
    stdout: c.stdout ?? '', stderr: c.stderr ?? '', code: c.status, signal: timedOut ? null : c.signal, timedOut,
    spawnError: c.error && !timedOut ? c.error.message : undefined,
  };
  return finish(file, cache, r);
}
