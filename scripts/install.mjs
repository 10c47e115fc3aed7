// npm "install" hook: use a prebuilt addon for this platform when one ships in prebuilds/,
// otherwise build from source with cmake-js (CPU always; CUDA when nvcc is found, see GLM_CUDA).
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const prebuilt = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'glm_node.node');
if (existsSync(prebuilt) && process.env.GLM_BUILD_FROM_SOURCE !== '1') {
  console.log(`glm-node: using prebuilt addon ${path.relative(root, prebuilt)}`);
  process.exit(0);
}
// cmake-js sits in our node_modules when developing and beside us when installed as a dependency.
const cmakeJs = createRequire(path.join(root, 'package.json')).resolve('cmake-js/bin/cmake-js');
const args = [cmakeJs, 'compile', `--CDGLM_CUDA=${process.env.GLM_CUDA ?? 'AUTO'}`];
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
process.exit(result.status ?? 1);
