// The native addon loader (lib/addon-loader.ts, lib/cuda-probe.ts) as an installed package meets it.
// Each case runs in a child process, because the addon is chosen once per process: a package root in a
// temp dir (package.json + the compiled dist/lib + a link to node_modules) stands in for
// node_modules/glm-node, so the prebuild paths are the real ones, not overrides.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { REPO_ROOT } from './fixtures/variants.js';

const tmp = mkdtempSync(path.join(os.tmpdir(), 'glm-addon-loader-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const MODEL = path.join(REPO_ROOT, 'models', 'tiny-default');
const tuple = `${process.platform}-${process.arch}`;

/** The addon this checkout runs on (a local build or the prebuild), as node-gyp-build resolves it. */
const realAddon = (createRequire(import.meta.url)('node-gyp-build') as { resolve(d: string): string }).resolve(REPO_ROOT);

/** A package root without any native addon: dist/lib copied, dependencies linked. */
function fakePackage(name: string): string {
  const root = path.join(tmp, name);
  mkdirSync(path.join(root, 'dist'), { recursive: true });
  writeFileSync(path.join(root, 'package.json'), JSON.stringify({ name: 'glm-node', type: 'module', main: 'dist/lib/index.js' }));
  cpSync(path.join(REPO_ROOT, 'dist', 'lib'), path.join(root, 'dist', 'lib'), { recursive: true });
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(root, 'node_modules'), 'dir');
  return root;
}

interface Report { ok: boolean; backend?: string; backendReason?: string; name?: string; code?: string; message?: string; cudaError?: { name: string; message: string } }

/** Loads the default model in a child (index.js of `root`) with `backend`, then tries 'cuda'; reports as JSON. */
async function loadInChild(root: string, backend: string, env: Record<string, string> = {}): Promise<Report> {
  const script = path.join(tmp, 'load.mjs');
  writeFileSync(script, `
    const { Model } = await import(${JSON.stringify(path.join(root, 'dist', 'lib', 'index.js'))});
    const err = (e) => ({ name: e.name, code: e.code, message: e.message });
    try {
      const m = await Model.load(${JSON.stringify(MODEL)}, { backend: process.argv[2], threads: 1 });
      const { backend, backendReason } = m.info;
      await m.dispose();
      const cudaError = await Model.load(${JSON.stringify(MODEL)}, { backend: 'cuda', threads: 1 }).then((x) => { x.dispose(); return undefined; }, err);
      console.log(JSON.stringify({ ok: true, backend, backendReason, cudaError }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, ...err(e) }));
    }
  `);
  const base: Record<string, string | undefined> = { ...process.env, XDG_CACHE_HOME: path.join(tmp, 'cache') };
  for (const k of ['GLM_NODE_ADDON', 'GLM_NODE_CUDA_ADDON', 'GLM_NODE_BACKEND', 'GLM_NODE_PROBE_CACHE', 'GLM_NODE_PROBE_TIMEOUT_MS']) delete base[k];
  const { stdout } = await promisify(execFile)(process.execPath, [script, backend], { env: { ...base, ...env }, timeout: 120_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Report;
}

describe('the CPU addon', () => {
  let root = '';
  beforeAll(() => { root = fakePackage('no-addon'); });

  test('missing: a NativeAddonError naming the expected prebuild and how to build from source', async () => {
    const r = await loadInChild(root, 'auto');
    expect(r.ok).toBe(false);
    expect(r.name).toBe('NativeAddonError');
    expect(r.code).toBe('NATIVE_ADDON');
    if (tuple === 'linux-x64') expect(r.message).toContain(path.join(root, 'prebuilds', 'linux-x64', 'glm-node.glibc.node'));
    expect(r.message).toContain('npm run build:native');
  }, 120_000);

  test('corrupt: a NativeAddonError naming the file, and the process lives on', async () => {
    const file = path.join(root, 'prebuilds', tuple, 'glm-node.glibc.node');
    mkdirSync(path.dirname(file), { recursive: true });
    writeFileSync(file, Buffer.from('this is not an ELF shared object, just damaged download bytes\n'.repeat(64)));
    try {
      const r = await loadInChild(root, 'cpu');
      expect(r.ok).toBe(false);
      expect(r.name).toBe('NativeAddonError');
      expect(r.message).toContain(`cannot load the native addon ${file}`);
      expect(r.message).toContain('npm run build:native');
    } finally {
      rmSync(path.join(root, 'prebuilds'), { recursive: true, force: true });
    }
  }, 120_000);
});

describe('the CUDA variant', () => {
  let root = '';
  beforeAll(() => {
    root = fakePackage('with-variant');
    // The CPU addon in its shipped place, so node-gyp-build finds it as in an installed package.
    mkdirSync(path.join(root, 'prebuilds', tuple), { recursive: true });
    cpSync(realAddon, path.join(root, 'prebuilds', tuple, 'glm-node.glibc.node'));
  });

  test('one that crashes in the probe child is reported, and the CPU backend is used', async () => {
    // The probe child require()s the variant: a script that kills its process with SIGSEGV stands in
    // for a binary that segfaults in its init or on first CUDA use.
    const crasher = path.join(tmp, 'crashing-variant.js');
    writeFileSync(crasher, "process.stderr.write('simulated driver fault\\n'); process.kill(process.pid, 'SIGSEGV');\n");
    const r = await loadInChild(root, 'auto', { GLM_NODE_CUDA_ADDON: crasher });
    expect(r.ok, JSON.stringify(r)).toBe(true);
    expect(r.backend).toBe('cpu');
    expect(r.backendReason).toMatch(/^auto: CPU because CUDA backend unavailable: the CUDA variant's probe process crashed \(SIGSEGV\): simulated driver fault$/);
    // 'cuda' in the same process: a typed error with the same reason, not a crash.
    expect(r.cudaError?.name).toBe('BackendUnavailableError');
    expect(r.cudaError?.message).toContain('probe process crashed (SIGSEGV)');
    // The verdict is cached for this binary and machine: the next process reads it instead of probing.
    const cached = readdirSync(path.join(tmp, 'cache', 'glm-node')).filter((f) => f.startsWith('cuda-probe-'));
    expect(cached).toHaveLength(1);
    expect(JSON.parse(readFileSync(path.join(tmp, 'cache', 'glm-node', cached[0]!), 'utf8'))).toMatchObject({ ok: false });
  }, 120_000);

  test('one that hangs in the probe child is killed after the time limit and reported', async () => {
    const hanging = path.join(tmp, 'hanging-variant.js');
    writeFileSync(hanging, 'for (;;) {}\n');
    const started = Date.now();
    const r = await loadInChild(root, 'auto', { GLM_NODE_CUDA_ADDON: hanging, GLM_NODE_PROBE_TIMEOUT_MS: '1500', GLM_NODE_PROBE_CACHE: '0' });
    expect(r.backend).toBe('cpu');
    expect(r.backendReason).toBe("auto: CPU because CUDA backend unavailable: the CUDA variant's probe did not finish in 1.5 s");
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 120_000);

  test('one whose self-test fails says why; GLM_NODE_BACKEND overrides the option', async () => {
    const failing = path.join(tmp, 'failing-variant.js');
    writeFileSync(failing, "exports.cudaProbe = () => ({ ok: false, reason: 'found no device of compute capability 8.0 or newer (simulated)' });\n");
    const r = await loadInChild(root, 'auto', { GLM_NODE_CUDA_ADDON: failing, GLM_NODE_PROBE_CACHE: '0' });
    expect(r.backend).toBe('cpu');
    expect(r.backendReason).toContain("the CUDA variant's self-test failed: found no device of compute capability 8.0 or newer (simulated)");

    const forced = await loadInChild(root, 'cuda', { GLM_NODE_CUDA_ADDON: failing, GLM_NODE_BACKEND: 'cpu' });
    expect(forced.ok, JSON.stringify(forced)).toBe(true);
    expect(forced.backend).toBe('cpu');
    expect(forced.backendReason).toBe('requested (GLM_NODE_BACKEND=cpu)');

    const bad = await loadInChild(root, 'auto', { GLM_NODE_BACKEND: 'gpu' });
    expect(bad).toMatchObject({ ok: false, name: 'InvalidParamError' });
    expect(bad.message).toContain('GLM_NODE_BACKEND');
  }, 180_000);
});
