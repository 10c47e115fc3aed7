// The CLI's embedded default model (models/tiny-default) is a tiny GLM-4.5 trained by
// scripts/train-default-model (its README has the commands that reproduce it). CI has no PyTorch, so
// instead of regenerating the model these tests check that the committed weights are the ones the
// recorded export check ran on, that the engine still reproduces the PyTorch logits that check
// recorded, and that the CLI gives a sensible answer with it.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, test } from 'vitest';
import { Model } from '../lib/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const committed = path.join(root, 'models', 'tiny-default');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'glm-default-model-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface ExportCheck {
  command: string;
  modelSha256: string;
  maxAbsLogitDiff: number;
  top1Agreement: number;
  sequences: { ids: number[]; top5: [number, number][][] }[];
}
const check: ExportCheck = JSON.parse(readFileSync(path.join(root, 'scripts', 'train-default-model', 'results', 'export-check.json'), 'utf8'));

describe('models/tiny-default', () => {
  test('is the checkpoint the recorded export check ran on (its sha256), and that check passed', () => {
    const sha = createHash('sha256').update(readFileSync(path.join(committed, 'model.safetensors'))).digest('hex');
    expect(sha, `model.safetensors changed: rerun ${check.command} and commit its result`).toBe(check.modelSha256);
    // fp32 engine vs fp32 PyTorch on the same BF16 weights: only summation order differs.
    expect(check.maxAbsLogitDiff).toBeLessThan(1e-3);
    expect(check.top1Agreement).toBe(1);
  });

  test('has the files of a Hugging Face GLM-4.5 folder and stays under the 30 MB budget', () => {
    const names = readdirSync(committed).sort();
    expect(names).toEqual(['config.json', 'generation_config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const bytes = names.reduce((n, f) => n + readFileSync(path.join(committed, f)).length, 0);
    expect(bytes).toBeLessThan(30 * 1024 * 1024);
    const config = JSON.parse(readFileSync(path.join(committed, 'config.json'), 'utf8'));
    expect(config.architectures).toEqual(['Glm4MoeForCausalLM']);
    expect(config.num_nextn_predict_layers).toBe(1);
  });

  test('the engine reproduces the PyTorch logits recorded by the export check, at every position', async () => {
    const model = await Model.load(committed, { backend: 'cpu', threads: 2, kvCacheType: 'f32' });
    try {
      const V = model.info.vocabSize;
      let worst = 0;
      for (const { ids, top5 } of check.sequences) {
        const s = model.createSession({ contextLength: ids.length });
        const logits = await s.evaluate(ids, { allLogits: true });
        await s.dispose();
        top5.forEach((row, t) => {
          const r = logits.subarray(t * V, (t + 1) * V);
          let arg = 0;
          for (let v = 1; v < V; v++) if (r[v]! > r[arg]!) arg = v;
          expect(arg, `position ${t}`).toBe(row[0]![0]);
          for (const [id, value] of row) worst = Math.max(worst, Math.abs(r[id]! - value));
        });
      }
      // The recorded values are rounded to 1e-5; the check itself measured the full difference.
      expect(worst).toBeLessThan(1e-3);
    } finally {
      await model.dispose();
    }
  });
});

// The CLI tests run the compiled CLI (npm test builds dist/ first).
describe('glm-node CLI on the default model', () => {
  const cli = path.join(root, 'dist', 'lib', 'cli.js');
  const run = promisify(execFile);

  test("the README's first command answers with a short self-introduction", async () => {
    const { stdout, stderr } = await run(process.execPath, [cli, 'generate', 'Hello! Who are you?', '--threads', '2']);
    expect(stdout).toContain('glm-node');
    expect(stdout).toMatch(/\bmodel\b/);
    for (const bad of ['ChatGPT', 'OpenAI', '<|', '\uFFFD']) expect(stdout).not.toContain(bad);
    expect(stderr.trim().length).toBeGreaterThan(0); // thinking is on by default: the reasoning goes to stderr
  });

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
    const { stdout } = await run(process.execPath, [cli, 'generate', '--tokens', '994,996', '--max-tokens', '5', '--threads', '1', '--json']);
    const result = JSON.parse(stdout);
    expect(result.usage).toMatchObject({ promptTokens: 2, cachedTokens: 0, completionTokens: result.tokens.length, totalTokens: 2 + result.tokens.length });
    expect(result.usage.acceptedDraftTokens).toBeLessThanOrEqual(result.usage.draftTokens);
    const plain = await run(process.execPath, [cli, 'generate', '--tokens', '994,996', '--max-tokens', '5', '--threads', '1']);
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
