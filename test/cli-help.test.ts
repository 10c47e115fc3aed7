// The CLI's help describes what its commands really do: every option and argument a command accepts
// is listed with a description, `generate` is described as the text command it is (token ids are the
// --tokens mode), the defaults the help states are the library's, and flags that the token-id mode
// would ignore are refused instead.
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { beforeAll, describe, expect, test } from 'vitest';
import { buildProgram } from '../lib/cli-program.js';
import { resolveGenerateOptions } from '../lib/generate-options.js';
import { Model } from '../lib/index.js';
import { REPO_ROOT } from './fixtures/variants.js';

// The executable is the compiled entry (npm test builds dist/ first).
const CLI = path.join(REPO_ROOT, 'dist', 'lib', 'cli.js');
const run = (args: string[]) => promisify(execFile)(process.execPath, [CLI, ...args]).then(
  ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
  (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
);
/** Help text with commander's line wrapping undone, so a description can be matched as one string. */
const unwrap = (help: string) => help.replace(/\s+/g, ' ');

const program = buildProgram();
const command = (name: string): Command => {
  const c = program.commands.find((x) => x.name() === name);
  if (!c) throw new Error(`no ${name} command`);
  return c;
};

describe('glm-node --help', () => {
  test('lists every command with a summary; generate is the text command', async () => {
    const { code, stdout } = await run(['--help']);
    expect(code).toBe(0);
    expect(program.commands.map((c) => c.name()).sort()).toEqual(['bench', 'generate', 'info', 'quantize', 'serve']);
    const flat = unwrap(stdout);
    for (const c of program.commands) {
      expect(flat).toContain(c.name());
      expect(flat).toContain(unwrap(c.summary() || c.description()));
    }
    const line = flat.slice(flat.indexOf('generate [options] [prompt]'));
    expect(line).toMatch(/^generate \[options\] \[prompt\] stream a reply to a text prompt; --tokens: token ids in and out/);
    expect(stdout).not.toMatch(/after a prompt of token ids/);
  });
});

describe('glm-node generate --help', () => {
  let help: string;
  beforeAll(async () => {
    const r = await run(['generate', '--help']);
    expect(r.code).toBe(0);
    help = unwrap(r.stdout);
  });

  test('says that generate streams a reply to a text prompt and that --tokens is the token-id mode', () => {
    const description = unwrap(command('generate').description());
    expect(help).toContain(description);
    expect(description).toMatch(/^Generate a reply to a text prompt and stream it to stdout/);
    expect(description).toMatch(/chat template/);
    expect(description).toMatch(/With --tokens the command works on token ids/);
    expect(help).not.toMatch(/after a prompt of token ids/);
  });

  test('describes every option and argument the command accepts', () => {
    const generate = command('generate');
    const longs = generate.options.map((o) => o.long);
    // The options the action reads (GenerateFlags) are exactly these: none undocumented, none stale.
    expect(longs.sort()).toEqual([
      '--json', '--max-tokens', '--min-p', '--model', '--no-speculative', '--no-thinking', '--raw', '--seed', '--stop', '--system',
      '--temperature', '--threads', '--tokens', '--top-k', '--top-p', '--verbose',
    ]);
    for (const o of generate.options) {
      expect(o.description.length, o.flags).toBeGreaterThan(10);
      expect(help, o.flags).toContain(`${o.flags} ${unwrap(o.description)}`);
    }
    for (const a of generate.registeredArguments) {
      expect(a.description.length, a.name()).toBeGreaterThan(10);
      expect(help).toContain(`${a.name()} ${unwrap(a.description)}`);
    }
  });

  test('the defaults it states are the library defaults, for text and for --tokens', async () => {
    const describedAs = (long: string) => command('generate').options.find((o) => o.long === long)!.description;
    const text = resolveGenerateOptions(undefined, { vocabSize: 512, maxTokens: 2 ** 31 - 1 });
    expect(describedAs('--temperature')).toContain(`(default: ${text.temperature}; 0 with --tokens)`);
    expect(describedAs('--max-tokens')).toContain(`(default: ${text.maxTokens} or what fits; 256 with --tokens)`);
    expect(describedAs('--seed')).toContain(`(default ${text.seed})`);
    expect([text.topK, text.topP, text.minP]).toEqual([0, 1, 0]);  // "off (default)" in the help
    // Token-id mode: 256 tokens at most, greedy.
    const model = await Model.load(path.join(REPO_ROOT, 'models', 'tiny-default'), { threads: 1, prefetch: false });
    try {
      const byDefault = await model.generate({ tokens: [482, 484], stopTokens: [] });
      expect(byDefault.tokens).toHaveLength(256);
      const greedy = await model.generate({ tokens: [482, 484], stopTokens: [], maxTokens: 256, temperature: 0 });
      expect(byDefault.tokens).toEqual(greedy.tokens);
    } finally {
      await model.dispose();
    }
  });
});

describe('every command', () => {
  test.each(['generate', 'info', 'quantize', 'bench'])('%s describes each of its options and arguments in its help', (name) => {
    const c = command(name);
    const help = unwrap(c.helpInformation());
    expect(c.description().length).toBeGreaterThan(10);
    for (const o of c.options) {
      expect(o.description.length, o.flags).toBeGreaterThan(5);
      expect(help, o.flags).toContain(o.flags);
      expect(help, o.flags).toContain(unwrap(o.description));
    }
    for (const a of c.registeredArguments) {
      expect(a.description.length, a.name()).toBeGreaterThan(5);
      expect(help).toContain(unwrap(a.description));
    }
  });
});

describe('generate --tokens refuses the text-only flags it would ignore', () => {
  test.each([
    [['--raw'], '--raw'], [['--system', 'be brief'], '--system'], [['--stop', 'x'], '--stop'],
    [['--no-thinking'], '--no-thinking'], [['--raw', '--stop', 'x'], '--raw, --stop'],
  ])('%j', async (flags, named) => {
    // A model path that does not exist: the flags are refused before anything loads.
    const r = await run(['generate', '--tokens', '1,2', ...flags, '--model', path.join(REPO_ROOT, 'no-such-model')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`error [INVALID_PARAM]: --tokens cannot be combined with ${named} (options of a text prompt)\n`);
  });

  test('a prompt together with --tokens is refused the same way', async () => {
    const r = await run(['generate', 'hello', '--tokens', '1,2', '--model', path.join(REPO_ROOT, 'no-such-model')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('error [INVALID_PARAM]: give either a text prompt or --tokens, not both\n');
  });
});
