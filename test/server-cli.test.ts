// `glm-node serve` as a user runs it: the compiled CLI in its own process on the default model,
// answering on the port it prints, refusing a busy port with a clear error, and shutting down
// cleanly (exit 0) on SIGTERM.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from './fixtures/variants.js';
import { postJson } from './helpers/server.js';

const CLI = path.join(REPO_ROOT, 'dist', 'lib', 'cli.js');

function start(args: string[]) {
  const child = spawn(process.execPath, [CLI, 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const url = new Promise<string>((resolve, reject) => {
    child.stderr.on('data', () => {
      const m = / at (http:\/\/\S+) /.exec(stderr);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  url.catch(() => undefined);  // a test that expects the exit reads `exited` instead
  return { child, url, exited, stderr: () => stderr };
}

describe('glm-node serve', () => {
  it('serves on the printed URL with the key it was given, logs each request, and exits 0 on SIGTERM', async () => {
    const s = start(['--port', '0', '--threads', '2', '--model-name', 'tiny']);
    try {
      const url = await s.url;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const models = await (await fetch(`${url}/v1/models`)).json() as { data: { id: string }[] };
      expect(models.data[0]!.id).toBe('tiny');
      const r = await postJson(`${url}/v1/chat/completions`, { messages: [{ role: 'user', content: 'Hello! Who are you?' }], max_tokens: 8 });
      expect(r.status).toBe(200);
      expect((await r.json() as { usage: { completion_tokens: number } }).usage.completion_tokens).toBeGreaterThan(0);
      s.child.kill('SIGTERM');
      expect(await s.exited).toBe(0);
      expect(s.stderr()).toMatch(/ POST \/v1\/chat\/completions 200 /);
      expect(s.stderr()).toMatch(/shutting down/);
    } finally {
      s.child.kill('SIGKILL');
    }
  }, 60_000);

  it('requires the key from GLM_NODE_API_KEY; a port in use is a clear error, exit 1', async () => {
    const env = { ...process.env, GLM_NODE_API_KEY: 'k-123' };
    const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      while (!/ at http/.test(stderr)) await new Promise((r) => setTimeout(r, 20));
      const url = / at (http:\/\/\S+) /.exec(stderr)![1]!;
      expect(stderr).toMatch(/API key required/);
      expect((await fetch(`${url}/v1/models`)).status).toBe(401);
      expect((await fetch(`${url}/v1/models`, { headers: { authorization: 'Bearer k-123' } })).status).toBe(200);
      // A second server on the same port.
      const busy = start(['--port', new URL(url).port, '--threads', '1']);
      expect(await busy.exited).toBe(1);
      expect(busy.stderr()).toMatch(/error \[INVALID_PARAM\]: cannot listen on 127\.0\.0\.1:\d+: .*address already in use/);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 60_000);
});
