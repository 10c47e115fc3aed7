// The package's types as a user meets them: a small consumer project (test/fixtures/consumer) and every
// TypeScript example of the README are type-checked with `tsc` against the built package, resolved as
// 'glm-node' through node_modules and its package.json "types" (npm test builds dist/ first). A type
// the README or a public signature uses but the entry does not export fails with TS2305.
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { REPO_ROOT } from './fixtures/variants.js';

const FIXTURE = path.join(REPO_ROOT, 'test', 'fixtures', 'consumer');
const TSC = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'glm-consumer-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** The types issue 17 found missing from the entry, and others a user's code names. */
const REQUIRED_TYPES = [
  'StreamChunk', 'TextGenerateOptions', 'TextGenerateResult', 'GenerateInput', 'TokenLogprob', 'FinishReason',
  'Generation', 'ParsedToolCall', 'ChatMessage', 'ToolDefinition', 'LoadOptions', 'ModelInfo', 'TokenizerInfo',
  'GenerateOptions', 'GenerateResult', 'BatchItem', 'EvaluateOptions', 'SessionOptions', 'EvaluateBatchOptions', 'GlmErrorCode',
];

/** The ```ts blocks of a markdown file. */
function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** Fails with a clear message when dist/ is older than lib/ (the check reads dist's .d.ts files). */
function assertDistFresh(): void {
  const walk = (dir: string): string[] => readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? walk(path.join(dir, e.name)) : [path.join(dir, e.name)]));
  for (const src of walk(path.join(REPO_ROOT, 'lib')).filter((f) => f.endsWith('.ts'))) {
    const dts = path.join(REPO_ROOT, 'dist', path.relative(REPO_ROOT, src)).replace(/\.ts$/, '.d.ts');
    let built = 0;
    try { built = statSync(dts).mtimeMs; } catch { /* missing */ }
    if (built < statSync(src).mtimeMs) throw new Error(`${dts} is missing or older than ${src}: run npm run build:ts first`);
  }
}

describe('a consumer project importing from glm-node', () => {
  test('the fixture imports every type the README and issue 17 name', () => {
    const consumer = readFileSync(path.join(FIXTURE, 'consumer.ts'), 'utf8');
    const imported = new Set([...consumer.matchAll(/import(?: type)? \{([^}]*)\} from 'glm-node'/g)]
      .flatMap((m) => m[1]!.split(',').map((s) => s.replace(/\/\/.*$/gm, '').trim()).filter(Boolean)));
    for (const name of REQUIRED_TYPES) expect(imported, name).toContain(name);
    expect(tsBlocks(readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8')).length).toBeGreaterThanOrEqual(2);
  });

  test('type-checks with tsc: the consumer and README examples pass; a missing export is TS2305', async () => {
    assertDistFresh();
    for (const f of ['tsconfig.json', 'consumer.ts']) copyFileSync(path.join(FIXTURE, f), path.join(tmp, f));
    // An ES module package, as a user's project with top-level await would be.
    writeFileSync(path.join(tmp, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    tsBlocks(readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8'))
      .forEach((code, i) => writeFileSync(path.join(tmp, `readme-${i + 1}.ts`), code));
    // The control: proves that a name the entry lacks is reported (the package is not resolved as `any`).
    writeFileSync(path.join(tmp, 'control.ts'), "import type { NoSuchExport } from 'glm-node';\nexport type X = NoSuchExport;\n");
    mkdirSync(path.join(tmp, 'node_modules'));
    symlinkSync(REPO_ROOT, path.join(tmp, 'node_modules', 'glm-node'), 'dir');
    symlinkSync(path.join(REPO_ROOT, 'node_modules', '@types'), path.join(tmp, 'node_modules', '@types'), 'dir');
    // The README's HTTP-server examples use the client SDKs a user of the server would install.
    for (const pkg of ['openai', '@anthropic-ai']) {
      symlinkSync(path.join(REPO_ROOT, 'node_modules', pkg), path.join(tmp, 'node_modules', pkg), 'dir');
    }

    const out = await promisify(execFile)(process.execPath, [TSC, '-p', tmp, '--pretty', 'false'], { cwd: tmp })
      .then(({ stdout }) => stdout, (e: { stdout: string }) => e.stdout);
    const errors = out.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors.filter((l) => !l.startsWith('control.ts')), out).toEqual([]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatch(/^control\.ts\(1,15\): error TS2305: Module '"glm-node"' has no exported member 'NoSuchExport'/);
  }, 60_000);

  test('a CommonJS consumer (require at run time, Node >= 20.19) gets the same typed exports', async () => {
    // "type": "commonjs": under NodeNext, TypeScript compiles these imports to require('glm-node'), which
    // Node 20.19+ serves from the ES module entry. The control line proves the types are not `any`.
    const cjs = path.join(tmp, 'cjs');
    mkdirSync(path.join(cjs, 'node_modules'), { recursive: true });
    copyFileSync(path.join(FIXTURE, 'tsconfig.json'), path.join(cjs, 'tsconfig.json'));
    writeFileSync(path.join(cjs, 'package.json'), JSON.stringify({ name: 'cjs-consumer', private: true, type: 'commonjs' }));
    writeFileSync(path.join(cjs, 'consumer.ts'), [
      "import { Model, BackendUnavailableError, NativeAddonError, type LoadOptions, type ModelInfo, type GlmErrorCode } from 'glm-node';",
      "const options: LoadOptions = { backend: 'auto', threads: 1 };",
      'export async function describeBackend(dir: string): Promise<string> {',
      '  try {',
      '    const model = await Model.load(dir, options);',
      '    const info: ModelInfo = model.info;',
      '    await model.dispose();',
      '    return `${info.backend}: ${info.backendReason}`;',
      '  } catch (e) {',
      '    if (e instanceof BackendUnavailableError || e instanceof NativeAddonError) { const code: GlmErrorCode = e.code; return code; }',
      '    throw e;',
      '  }',
      '}',
      "export const control: number = Model.load('/no/model');",
      '',
    ].join('\n'));
    symlinkSync(REPO_ROOT, path.join(cjs, 'node_modules', 'glm-node'), 'dir');
    symlinkSync(path.join(REPO_ROOT, 'node_modules', '@types'), path.join(cjs, 'node_modules', '@types'), 'dir');
    const out = await promisify(execFile)(process.execPath, [TSC, '-p', cjs, '--pretty', 'false'], { cwd: cjs })
      .then(({ stdout }) => stdout, (e: { stdout: string }) => e.stdout);
    const errors = out.split('\n').filter((l) => /error TS\d+/.test(l));
    expect(errors, out).toHaveLength(1);
    expect(errors[0]).toMatch(/^consumer\.ts\(14,14\): error TS2322: Type 'Promise<Model>' is not assignable to type 'number'/);
  }, 60_000);
});
