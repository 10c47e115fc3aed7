// A checkpoint's tokenizer files decide what input it takes, never whether its weights load:
//   tokenizer.json missing          → weights load; token ids only (text and chat: UnsupportedFormatError)
//   tokenizer_config.json missing   → weights load; text works exactly as with the config; chat input
//                                     needs chat_template.jinja, else UnsupportedFormatError (no guessing)
//   either file corrupt             → the load fails with MODEL_FORMAT naming the file (a broken
//                                     download must not pass as "absent")
// model.info.tokenizer says which case a model is in.
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  Model, ModelFormatError, ModelLoadError, UnsupportedFormatError, type ChatMessage, type GlmError, type TokenizerInfo,
} from '../lib/index.js';
import { REPO_ROOT } from './fixtures/variants.js';

const SOURCE = path.join(REPO_ROOT, 'models', 'tiny-default');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'glm-tokenizer-files-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const chat: ChatMessage[] = [{ role: 'user', content: 'Hello there' }];
const greedy = { temperature: 0, maxTokens: 6, ignoreEos: true } as const;
const LOAD = { threads: 1, prefetch: false } as const;

let n = 0;
/** A copy of the embedded model without `drop`, with `files` written over it. */
function variant(drop: string[], files: Record<string, string> = {}): string {
  const dir = path.join(tmp, `v${n++}`);
  mkdirSync(dir);
  for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) {
    if (!drop.includes(f)) copyFileSync(path.join(SOURCE, f), path.join(dir, f));
  }
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

let full: Model;
beforeAll(async () => { full = await Model.load(SOURCE, LOAD); }, 60_000);
afterAll(async () => { await full?.dispose(); });

async function withModel(dir: string, fn: (m: Model) => Promise<void>): Promise<void> {
  const m = await Model.load(dir, LOAD);
  try { await fn(m); } finally { await m.dispose(); }
}

test('a complete checkpoint reports its tokenizer, config and chat template', () => {
  expect(full.info.tokenizer).toEqual({ source: 'tokenizer.json', config: true, chatTemplate: 'tokenizer_config.json' } satisfies TokenizerInfo);
});

describe('missing tokenizer_config.json', () => {
  test('the weights load and text input works exactly as with the config', async () => {
    await withModel(variant(['tokenizer_config.json']), async (m) => {
      expect(m.info.tokenizer).toEqual({ source: 'tokenizer.json', config: false, chatTemplate: null });
      const text = 'Wie ist das Wetter in Zürich? 天気 <|user|>';
      expect(m.tokenizer!.encode(text)).toEqual(full.tokenizer!.encode(text));
      expect(m.tokenizer!.encode('<|user|>x', { special: true })).toEqual(full.tokenizer!.encode('<|user|>x', { special: true }));
      expect(m.tokenizer!.addedTokens).toEqual(full.tokenizer!.addedTokens);
      const r = await m.generate('Hello there', greedy);
      expect(r.tokens).toEqual((await full.generate('Hello there', greedy)).tokens);
      expect(r.text).toBe((await full.generate('Hello there', greedy)).text);
      // Token ids work too.
      expect((await m.generate({ tokens: [482, 484], maxTokens: 3, stopTokens: [] })).tokens).toHaveLength(3);
    });
  });

  test('chat input is refused with a typed error saying what is missing and what to do', async () => {
    await withModel(variant(['tokenizer_config.json']), async (m) => {
      const s = m.createSession({ contextLength: 256 });
      let error: unknown;
      try { s.stream(chat, greedy); } catch (e) { error = e; }
      expect(error).toBeInstanceOf(UnsupportedFormatError);
      expect((error as GlmError).code).toBe('UNSUPPORTED_FORMAT');
      expect((error as Error).message).toBe('this checkpoint has no chat template (no chat_template in tokenizer_config.json, ' +
        'no chat_template.jinja): chat messages need one; pass a prompt string or token ids, or add the model\'s template as chat_template.jinja');
      await expect(m.generate(chat, greedy)).rejects.toBeInstanceOf(UnsupportedFormatError);
      expect(s.length).toBe(0);
      await s.dispose();
    });
  });

  test('chat_template.jinja beside it provides the template, and chat then equals the complete checkpoint', async () => {
    const template = full.tokenizer!.chatTemplate!;
    await withModel(variant(['tokenizer_config.json'], { 'chat_template.jinja': template }), async (m) => {
      expect(m.info.tokenizer).toEqual({ source: 'tokenizer.json', config: false, chatTemplate: 'chat_template.jinja' });
      expect(m.tokenizer!.chatTemplate).toBe(template);
      expect((await m.generate(chat, greedy)).tokens).toEqual((await full.generate(chat, greedy)).tokens);
    });
  });
});

test('a chat_template.jinja that is there but unreadable fails the load (only absence is optional)', async () => {
  const asFolder = variant(['tokenizer_config.json']);
  mkdirSync(path.join(asFolder, 'chat_template.jinja'));
  await expect(Model.load(asFolder, LOAD)).rejects.toThrow(/chat_template\.jinja is not a regular file/);
  const dangling = variant(['tokenizer_config.json']);
  symlinkSync(path.join(tmp, 'no-such-blob'), path.join(dangling, 'chat_template.jinja'));
  const err = await Model.load(dangling, LOAD).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ModelLoadError);
  expect((err as Error).message).toMatch(/cannot read .*chat_template\.jinja: ENOENT/);
});

describe('missing tokenizer.json', () => {
  test.each([
    ['tokenizer.json'], ['tokenizer.json', 'tokenizer_config.json'],
  ])('without %s the weights load and take token ids only', async (...drop) => {
    await withModel(variant(drop), async (m) => {
      expect(m.tokenizer).toBeUndefined();
      expect(m.info.tokenizer).toEqual({ source: null, config: false, chatTemplate: null });
      const s = m.createSession({ contextLength: 64 });
      expect(() => s.stream('hello')).toThrow(UnsupportedFormatError);
      expect(() => s.stream(chat)).toThrow(/no tokenizer\.json/);
      const ids = await m.generate({ tokens: [482, 484], maxTokens: 3, stopTokens: [] });
      expect(ids.tokens).toEqual((await full.generate({ tokens: [482, 484], maxTokens: 3, stopTokens: [] })).tokens);
      await s.dispose();
    });
  });
});

describe('a corrupt tokenizer_config.json fails the load, naming the file', () => {
  test.each([
    ['not JSON', '{"chat_template": ', /tokenizer_config\.json is not valid JSON/],
    ['empty', '', /tokenizer_config\.json is not valid JSON/],
    ['not an object', '[1, 2]', /tokenizer_config\.json must hold a JSON object/],
    ['chat_template of the wrong type', '{"chat_template": 5}', /tokenizer_config\.json: "chat_template" must be a string or a list of named templates/],
  ])('%s → MODEL_FORMAT', async (_, text, message) => {
    const err = await Model.load(variant([], { 'tokenizer_config.json': text }), LOAD).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect((err as GlmError).code).toBe('MODEL_FORMAT');
    expect((err as Error).message).toMatch(message);
  });

  test('a folder in its place → MODEL_LOAD', async () => {
    const dir = variant(['tokenizer_config.json']);
    mkdirSync(path.join(dir, 'tokenizer_config.json'));
    const err = await Model.load(dir, LOAD).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/tokenizer_config\.json is not a regular file/);
  });

  test.skipIf(process.getuid?.() === 0)('an unreadable one → MODEL_LOAD (only absence is optional)', async () => {
    const dir = variant([]);
    chmodSync(path.join(dir, 'tokenizer_config.json'), 0o000);
    const err = await Model.load(dir, LOAD).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/cannot read .*tokenizer_config\.json: EACCES/);
  });

  test('a dangling symbolic link in its place (a cache snapshot without its blobs) → MODEL_LOAD', async () => {
    const dir = variant(['tokenizer_config.json']);
    symlinkSync(path.join(tmp, 'no-such-blob'), path.join(dir, 'tokenizer_config.json'));
    const err = await Model.load(dir, LOAD).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toMatch(/cannot read .*tokenizer_config\.json: ENOENT/);
  });

  test('a corrupt tokenizer.json, or a dangling link in its place, fails the same way', async () => {
    const err = await Model.load(variant([], { 'tokenizer.json': '{"model": ' }), LOAD).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ModelFormatError);
    expect((err as Error).message).toMatch(/tokenizer\.json is not valid JSON/);
    const dir = variant(['tokenizer.json']);
    symlinkSync(path.join(tmp, 'no-such-blob'), path.join(dir, 'tokenizer.json'));
    const dangling = await Model.load(dir, LOAD).then(() => undefined, (e: unknown) => e);
    expect(dangling).toBeInstanceOf(ModelLoadError);
    expect((dangling as Error).message).toMatch(/cannot read .*tokenizer\.json: ENOENT/);
  });
});
