// Chooses and loads the one native addon this process uses (README "Prebuilt binaries"):
//   - the CPU addon: GLM_NODE_ADDON, else what node-gyp-build finds (a local build/Release build, then
//     prebuilds/<platform>-<arch>/ shipped in the package);
//   - the CUDA variant (variants/cuda/prebuilds/<platform>-<arch>/, or GLM_NODE_CUDA_ADDON), which
//     node-gyp-build never looks at: used instead when it passes a probe in a child process
//     (lib/cuda-probe.ts). It holds the CPU backend too, so 'cpu' loads still work with it.
// One addon per process, because objects one addon makes (abort flags, sessions) must not reach the other.
import { existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { NativeAddonError } from './errors.js';
import { nvidiaDriver, probeCudaVariant, probeCudaVariantSync, type ProbeVerdict } from './cuda-probe.js';

export interface LoadedAddon<B> {
  binding: B;
  /** The .node file loaded. */
  file: string;
  variant: 'cpu' | 'cuda';
  /** Set when a CUDA variant exists but is not used: why (one line). Undefined: the addon decides alone. */
  cudaUnavailable?: string;
  /** The CUDA variant's probe saw this device. */
  cudaDevice?: string;
}

const require = createRequire(import.meta.url);
const tuple = `${process.platform}-${process.arch}`;

function buildHint(root: string): string {
  return `To build it from source (needs cmake and a C++17 compiler): cd ${root} && npm install --no-save cmake-js node-addon-api && npm run build:native`;
}

/** The CPU addon's file: GLM_NODE_ADDON, else node-gyp-build's choice; a clear error when there is none. */
function cpuAddonFile(root: string): string {
  const fromEnv = process.env.GLM_NODE_ADDON;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new NativeAddonError(`GLM_NODE_ADDON names ${fromEnv}, which does not exist`);
    return fromEnv;
  }
  try {
    return (require('node-gyp-build') as { resolve(dir: string): string }).resolve(root);
  } catch (error) {
    const expected = path.join(root, 'prebuilds', tuple, 'glm-node.glibc.node');
    const why = process.platform === 'linux' && process.arch === 'x64'
      ? `${expected} is missing (this copy of glm-node was packed without its prebuilt addon)`
      : `glm-node ships a prebuilt addon for linux-x64 (glibc) only, and this is ${tuple}`;
    throw new NativeAddonError(`no native addon for ${tuple}: ${why}, and there is no local build in ${path.join(root, 'build', 'Release')}. ${buildHint(root)}`,
      { cause: error });
  }
}

/** The CUDA variant's file, or undefined when the package has none for this platform. */
function cudaVariantFile(root: string): string | undefined {
  const fromEnv = process.env.GLM_NODE_CUDA_ADDON;
  if (fromEnv) return fromEnv;
  const dir = path.join(root, 'variants', 'cuda', 'prebuilds', tuple);
  try {
    const name = readdirSync(dir).find((f) => f.endsWith('.node'));
    return name ? path.join(dir, name) : undefined;
  } catch {
    return undefined;
  }
}

function requireAddon<B>(file: string, root: string): B {
  try {
    return require(file) as B;
  } catch (error) {
    const msg = String((error as Error).message ?? error).split('\n')[0];
    throw new NativeAddonError(`cannot load the native addon ${file}: ${msg}. It may be damaged or built for another platform. ${buildHint(root)}`,
      { cause: error });
  }
}

type Probe = (file: string, driver: string) => ProbeVerdict | Promise<ProbeVerdict>;

/**
 * Why the CUDA variant should not be tried at all, or the probe's verdict. An explicit
 * GLM_NODE_CUDA_ADDON is always probed (it is how a user, or a test, points at a variant).
 */
function shouldProbe(file: string): { skip?: string; driver: string } {
  const driver = nvidiaDriver();
  if (!existsSync(file)) return { skip: `the CUDA variant ${file} does not exist`, driver: '' };
  if (driver === undefined && !process.env.GLM_NODE_CUDA_ADDON) {
    return { skip: 'no NVIDIA driver is loaded on this machine (/proc/driver/nvidia/version is missing)', driver: '' };
  }
  return { driver: driver ?? 'no driver' };
}

function* select<B>(root: string, mode: 'auto' | 'cpu' | 'cuda', probe: Probe): Generator<ProbeVerdict | Promise<ProbeVerdict>, LoadedAddon<B>, ProbeVerdict> {
  const variant = mode === 'cpu' ? undefined : cudaVariantFile(root);
  let cudaUnavailable: string | undefined;
  if (variant !== undefined) {
    const { skip, driver } = shouldProbe(variant);
    if (skip) {
      cudaUnavailable = skip;
    } else {
      const verdict = yield probe(variant, driver);
      if (verdict.ok) {
        try {
          return { binding: requireAddon<B>(variant, root), file: variant, variant: 'cuda', cudaDevice: verdict.device };
        } catch (error) {
          cudaUnavailable = (error as Error).message;  // passed in the child, failed here: still not fatal
        }
      } else {
        cudaUnavailable = verdict.reason ?? 'the CUDA variant failed its probe';
      }
    }
  } else if (mode === 'cpu') {
    cudaUnavailable = 'GLM_NODE_BACKEND=cpu';
  }
  const file = cpuAddonFile(root);
  return { binding: requireAddon<B>(file, root), file, variant: 'cpu', cudaUnavailable };
}

/** Loads the addon for `mode` (GLM_NODE_BACKEND, default auto), probing the CUDA variant asynchronously. */
export async function loadAddon<B>(root: string, mode: 'auto' | 'cpu' | 'cuda'): Promise<LoadedAddon<B>> {
  const it = select<B>(root, mode, probeCudaVariant);
  let step = it.next();
  while (!step.done) step = it.next(await step.value);
  return step.value;
}

/** The same, blocking (the probe child runs synchronously). */
export function loadAddonSync<B>(root: string, mode: 'auto' | 'cpu' | 'cuda'): LoadedAddon<B> {
  const it = select<B>(root, mode, probeCudaVariantSync);
  let step = it.next();
  while (!step.done) step = it.next(step.value as ProbeVerdict);
  return step.value;
}
