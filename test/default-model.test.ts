// The CLI's embedded default model (models/tiny-default) is committed output of
// scripts/make-default-model.mjs. These tests keep it equal to its generator and check that the CLI
// runs it.

import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { TINY_DEFAULT_SPEC, writeSyntheticCheckpoint } from '../lib/synthetic/checkpoint.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const committed = path.join(root, 'models', 'tiny-default');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'glm-default-model-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('models/tiny-default', () => {
  test('is byte-identical to a fresh regeneration from TINY_DEFAULT_SPEC', async () => {
    await writeSyntheticCheckpoint(tmp, TINY_DEFAULT_SPEC);
    const names = readdirSync(committed).sort();
    // Same file set (no stale shard left behind, none missing) ...
    expect(names).toEqual(readdirSync(tmp).sort());
    // ... and exact bytes: any drift means the generator or spec changed without `node scripts/make-default-model.mjs`.
    for (const name of names) {
      const a = readFileSync(path.join(committed, name));
      const b = readFileSync(path.join(tmp, name));
      expect(a.equals(b), `${name} differs from the regenerated file`).toBe(true);
    }
  });

  test('stays small enough to ship in the package (budget 2 MiB; it is ~1 MiB today)', () => {
    const bytes = readdirSync(committed).reduce((n, f) => n + readFileSync(path.join(committed, f)).length, 0);
    expect(bytes).toBeLessThan(2 * 1024 * 1024);
  });
});

// The CLI tests run the compiled CLI (npm test builds dist/ first).
describe('glm-node CLI on the default model', () => {
  const cli = path.join(root, 'dist', 'lib', 'cli.js');
  const run = promisify(execFile);

  test('generate streams text for a chat prompt, and --json holds the same text and usage', async () => {
    const args = [cli, 'generate', 'Hello there', '--max-tokens', '12', '--temperature', '0', '--threads', '1'];
    const { stdout } = await run(process.execPath, [...args, '--json']);
    const result = JSON.parse(stdout);
    expect(result.usage.completionTokens).toBe(result.tokens.length);
    expect(result.usage.promptTokens).toBeGreaterThan(5);  // [gMASK]<sop><|user|>\nHello there<|assistant|>
    expect(['stop', 'length', 'tool_calls']).toContain(result.finishReason);
    // Greedy is deterministic: the streamed plain output is the same answer text.
    const plain = await run(process.execPath, args);
    expect(plain.stdout.replace(/\n$/, '')).toBe(result.text + result.toolCalls.map((c: { name: string; arguments: unknown }) => `\n[tool call] ${JSON.stringify({ name: c.name, arguments: c.arguments })}\n`).join(''));
  });

  test('generate --tokens keeps token ids in and out', async () => {
    const { stdout } = await run(process.execPath, [cli, 'generate', '--tokens', '482,484', '--max-tokens', '5', '--threads', '1', '--json']);
    const result = JSON.parse(stdout);
    expect(result.usage).toEqual({ promptTokens: 2, cachedTokens: 0, completionTokens: result.tokens.length, totalTokens: 2 + result.tokens.length });
    const plain = await run(process.execPath, [cli, 'generate', '--tokens', '482,484', '--max-tokens', '5', '--threads', '1']);
    expect(plain.stdout.trim()).toBe(result.tokens.join(','));
  });

  test('errors print `error [CODE]: message` on stderr and exit 1', async () => {
    const fail = (args: string[]) => run(process.execPath, [cli, ...args]).then(
      () => { throw new Error('expected a failure'); },
      (e: { code: number; stderr: string }) => e,
    );
    const missing = await fail(['generate', '--model', path.join(tmp, 'no-such-model')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error \[MODEL_LOAD\]: /);
    const badToken = await fail(['generate', '--tokens', '1,99999']);
    expect(badToken.code).toBe(1);
    expect(badToken.stderr).toMatch(/^error \[INVALID_TOKEN\]: /);
    const badOption = await fail(['generate', '--top-k', 'many']);
    expect(badOption.code).toBe(1);
    expect(badOption.stderr).toMatch(/^error \[INVALID_PARAM\]: /);
  });
});
