// The glm-node command line: generate / info / quantize / bench. lib/cli.ts is its executable entry;
// the program lives here so tests can read its commands and options without running it. This (with
// cli.ts) is the only place that may exit the process; everything below it reports failures as typed
// GlmErrors.
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { fileURLToPath } from 'node:url';
import { benchCommand } from '../bench/bench.js';
import { InvalidParamError, toGlmError } from './errors.js';
import { Model, type GenerateResult, type LoadProgress } from './model.js';
import { calibrate } from './calibrate.js';
import { QUANT_TARGETS, quantizeCheckpoint, type QuantTarget } from './quantize.js';
import { createServer } from './server/index.js';

/** The embedded default model (models/tiny-default, trained by scripts/train-default-model). */
export const DEFAULT_MODEL_DIR = fileURLToPath(new URL('../../models/tiny-default', import.meta.url));

// ---- option parsers: shape only; ranges are the library's job so CLI and API reject the same values.

function parseNonNegativeInt(value: string): number {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError('expected a non-negative integer');
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError('integer too large');
  return n;
}

function parseFiniteNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a finite number');
  return n;
}

function parseTokenList(value: string): number[] {
  const parts = value.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((s) => !/^\d+$/.test(s))) {
    throw new InvalidArgumentError('expected comma-separated non-negative token ids, e.g. 482,483');
  }
  return parts.map(Number);
}

/**
 * The prompt used when --tokens is absent: `[gMASK]<sop>`, the pair every GLM prompt starts with. GLM
 * puts its special tokens at the top of the vocabulary in a fixed order beginning with <|endoftext|>,
 * the lowest eos id: <|endoftext|>, [MASK], [gMASK], [sMASK], <sop>, <eop>, <|system|>, <|user|>, ...
 * so [gMASK] = lowest eos + 2 and <sop> = lowest eos + 4 (GLM-4.5: 151331, 151333). The synthetic
 * checkpoints mirror that layout (tiny default: eos 992 → prompt 994,996).
 */
export function defaultPrompt(eosTokenIds: readonly number[], vocabSize: number): number[] {
  const base = eosTokenIds.length > 0 ? Math.min(...eosTokenIds) : 0;
  const ids = [base + 2, base + 4].filter((t) => t < vocabSize);
  return ids.length > 0 ? ids : [0];
}

// ---- progress

/** A load-progress callback drawing a bar on stderr when it is a terminal, else undefined (no noise in logs/pipes). */
function progressBar(): { onProgress?: (p: LoadProgress) => void; stop: () => void } {
  if (!process.stderr.isTTY) return { stop: () => {} };
  const MiB = 1024 * 1024;
  const bar = new cliProgress.SingleBar(
    { stream: process.stderr, format: 'loading {stage} [{bar}] {percentage}% | {size}', hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  let stage: string | undefined;
  return {
    // The bar counts bytes; the size payload shows them in MiB with a decimal (small models load < 1 MiB).
    onProgress: (p) => {
      const total = Math.max(1, p.totalBytes);
      const payload = { stage: p.stage, size: `${(p.loadedBytes / MiB).toFixed(1)}/${(p.totalBytes / MiB).toFixed(1)} MiB` };
      if (stage !== p.stage) {
        if (stage === undefined) bar.start(total, 0, payload);
        else bar.setTotal(total);
        stage = p.stage;
      }
      bar.update(Math.min(total, p.loadedBytes), payload);
    },
    stop: () => bar.stop(),
  };
}

/** SIGINT aborts the running load/generation (the library then rejects with ABORTED); a second one exits now. */
function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  process.once('SIGINT', () => {
    controller.abort();
    process.once('SIGINT', () => process.exit(130));
  });
  return controller.signal;
}

async function loadModel(dir: string | undefined, threads: number | undefined, signal: AbortSignal, prefetch = true,
  speculative = true): Promise<Model> {
  const bar = progressBar();
  try {
    return await Model.load(dir ?? DEFAULT_MODEL_DIR, {
      threads, signal, prefetch, onProgress: bar.onProgress, ...(speculative ? {} : { speculative: false as const }),
    });
  } finally {
    bar.stop();
  }
}

// ---- commands

interface GenerateFlags {
  model?: string;
  tokens?: number[];
  raw?: boolean;
  system?: string;
  thinking?: boolean;
  stop?: string[];
  maxTokens?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  seed?: number;
  threads?: number;
  json?: boolean;
  verbose?: boolean;
  speculative?: boolean;
}

/** --verbose: what the run cost and how speculative decoding did, on stderr (stdout stays the answer). */
function printVerbose(model: Model, r: { usage: GenerateResult['usage']; timings: GenerateResult['timings'] }): void {
  const t = r.timings, u = r.usage;
  const spec = model.info.speculative;
  const rate = u.draftTokens > 0 ? `${((100 * u.acceptedDraftTokens) / u.draftTokens).toFixed(1)}%` : '-';
  process.stderr.write(`\n[${u.promptTokens} prompt tokens (${u.cachedTokens} cached), ${u.completionTokens} generated; ` +
    `prefill ${t.prefillTokensPerSecond.toFixed(0)} tok/s, decode ${t.decodeTokensPerSecond.toFixed(1)} tok/s; ` +
    `speculative decoding: ${spec.draftTokens > 0 ? `${spec.draftTokens} draft/round, ${u.acceptedDraftTokens}/${u.draftTokens} drafts accepted (${rate})` : spec.reason}]\n`);
}

/** The prompt used when none is given: a short chat turn (token ids for a model without a tokenizer). */
export const DEFAULT_CHAT_PROMPT = 'Hello! Who are you?';

/** The generate flags that shape a text prompt or its text output: meaningless with --tokens. */
const TEXT_ONLY_FLAGS = [['raw', '--raw'], ['system', '--system'], ['stop', '--stop']] as const;

async function generateAction(prompt: string | undefined, flags: GenerateFlags): Promise<void> {
  // Flags the token-id mode would silently ignore are refused before the model loads.
  const textFlags = [...TEXT_ONLY_FLAGS.filter(([k]) => flags[k] !== undefined).map(([, f]) => f),
    ...(flags.thinking === false ? ['--no-thinking'] : [])];
  if (flags.tokens !== undefined) {
    if (prompt !== undefined) throw new InvalidParamError('give either a text prompt or --tokens, not both');
    if (textFlags.length > 0) throw new InvalidParamError(`--tokens cannot be combined with ${textFlags.join(', ')} (options of a text prompt)`);
  }
  const signal = interruptSignal();
  const model = await loadModel(flags.model, flags.threads, signal, true, flags.speculative !== false);
  try {
    const info = model.info;
    const sampling = {
      maxTokens: flags.maxTokens, temperature: flags.temperature, topK: flags.topK, topP: flags.topP,
      minP: flags.minP, seed: flags.seed, signal,
    };
    // Token ids in, token ids out: asked for, or the only thing a checkpoint without a tokenizer can do
    // when no text was given (text flags then go the text way and fail saying there is no tokenizer).
    if (flags.tokens !== undefined || (prompt === undefined && !model.tokenizer && textFlags.length === 0)) {
      const result = await model.generate({ tokens: flags.tokens ?? defaultPrompt(info.eosTokenIds, info.vocabSize), ...sampling });
      process.stdout.write(flags.json ? `${JSON.stringify(result, null, 2)}\n` : `${result.tokens.join(',')}\n`);
      if (flags.verbose) printVerbose(model, result);
      return;
    }
    const text = prompt ?? DEFAULT_CHAT_PROMPT;
    const input = flags.raw
      ? text
      : [...(flags.system ? [{ role: 'system' as const, content: flags.system }] : []), { role: 'user' as const, content: text }];
    const session = model.createSession({ contextLength: info.maxPositionEmbeddings });
    const stream = session.stream(input, {
      ...sampling,
      ...(flags.stop ? { stop: flags.stop } : {}),
      ...(flags.thinking === false ? { thinking: false } : {}),
    });
    // Text streams to stdout as it arrives; reasoning goes to stderr so stdout stays the answer.
    let lastChannel: string | undefined;
    for await (const chunk of stream) {
      if (flags.json) continue;
      if (chunk.type === 'text') process.stdout.write(chunk.text);
      else if (chunk.type === 'reasoning') process.stderr.write(chunk.text);
      else if (chunk.type === 'tool_call') process.stdout.write(`\n[tool call] ${JSON.stringify({ name: chunk.toolCall.name, arguments: chunk.toolCall.arguments })}\n`);
      lastChannel = chunk.type;
    }
    const result = await stream.result;
    if (flags.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else if (lastChannel !== undefined) process.stdout.write('\n');
    if (flags.verbose) printVerbose(model, result);
    await session.dispose();
  } finally {
    await model.dispose();
  }
}

async function infoAction(flags: { model?: string; threads?: number }): Promise<void> {
  // No prefetch: info only needs the headers, and a large model should answer at once.
  const model = await loadModel(flags.model, flags.threads, interruptSignal(), false);
  try {
    process.stdout.write(`${JSON.stringify(model.info, null, 2)}\n`);
  } finally {
    await model.dispose();
  }
}

async function quantizeAction(input: string, output: string,
  opts: { to: QuantTarget; expertsOnly?: boolean; calibrate?: string; samples?: number; threads?: number }): Promise<void> {
  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar(
      { stream: process.stderr, format: '{stage} [{bar}] {value}/{total} {unit} | {tensor}', hideCursor: true, clearOnComplete: true },
      cliProgress.Presets.shades_classic,
    )
    : undefined;
  let started = false;
  const t0 = performance.now();
  // Ctrl-C stops between calibration batches / tensors instead of killing the process mid-file.
  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once('SIGINT', onSigint);
  let result, calibration;
  try {
    if (opts.calibrate) {
      calibration = await calibrate(input, opts.calibrate, {
        samples: opts.samples, threads: opts.threads, signal: abort.signal,
        onProgress: (done, total) => {
          if (!bar) return;
          if (!started) { bar.start(total, 0, { stage: 'calibrating', unit: 'samples', tensor: '' }); started = true; }
          bar.update(done);
        },
      });
      if (started) { bar?.stop(); started = false; }
      process.stdout.write(`calibration: ${calibration.samples} samples, ${calibration.tokens} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s` +
        (calibration.fallbackExperts.length ? `; ${calibration.fallbackExperts.length} routed experts saw too few tokens and use all-token statistics` : '') + '\n');
    }
    result = await quantizeCheckpoint(input, output, {
      to: opts.to,
      expertsOnly: opts.expertsOnly ?? false,
      threads: opts.threads,
      calibration,
      signal: abort.signal,
      onProgress: (done, total, tensor) => {
        if (!bar) return;
        if (!started) { bar.start(total, 0, { stage: 'quantizing', unit: 'tensors', tensor }); started = true; }
        bar.update(done, { tensor });
      },
    });
  } finally {
    if (started) bar?.stop();
    process.off('SIGINT', onSigint);
  }
  const mb = (b: number) => (b / 1e6).toFixed(1);
  process.stdout.write(`quantized ${result.quantizedTensors} tensors to ${opts.to} in ${((performance.now() - t0) / 1000).toFixed(1)} s: ` +
    `${mb(result.inputBytes)} MB -> ${mb(result.outputBytes)} MB (tensor data) in ${output}\n`);
  process.stdout.write(calibration
    ? `scales: per row/block/group by activation-weighted error` + (calibration.covariances.size ? ', rows rounded with GPTQ-style error feedback' : '') + ` (${result.calibratedTensors} of ${result.quantizedTensors} tensors had statistics; the rest by weight error)\n`
    : 'scales: best of a few candidates per row/block/group by squared weight error (no activation calibration)\n');
  process.stdout.write('per-layer weight error (relative RMS, sqrt(sum (w_q - w)^2 / sum w^2)' + (calibration ? '; activation-weighted' : '') + '):\n');
  for (const l of result.layers) {
    process.stdout.write(`  ${l.layer.padEnd(18)} ${l.relRms.toExponential(3)}` + (l.weightedRelRms !== undefined ? `  ${l.weightedRelRms.toExponential(3)}` : '') + `  (${l.quantizedTensors} tensors)\n`);
  }
}

interface ServeFlags {
  model?: string;
  host: string;
  port: number;
  apiKey?: string;
  modelName?: string;
  cors?: boolean | string;
  threads?: number;
  maxConcurrent?: number;
  maxQueued?: number;
  kvCacheTokens?: number;
  bodyLimit?: number;
  accessLog: boolean;
}

async function serveAction(flags: ServeFlags): Promise<void> {
  // The key may come from the environment so it stays out of `ps` listings and shell history.
  const apiKey = flags.apiKey ?? (process.env.GLM_NODE_API_KEY || undefined);
  const bar = progressBar();
  let model: Model;
  try {
    model = await Model.load(flags.model ?? DEFAULT_MODEL_DIR, {
      threads: flags.threads,
      ...(flags.maxConcurrent !== undefined ? { maxConcurrentRequests: flags.maxConcurrent } : {}),
      ...(flags.maxQueued !== undefined ? { maxQueuedRequests: flags.maxQueued } : {}),
      ...(flags.kvCacheTokens !== undefined ? { kvCacheSize: { tokens: flags.kvCacheTokens } } : {}),
      onProgress: bar.onProgress,
    });
  } finally {
    bar.stop();
  }
  let server;
  try {
    server = createServer(model, {
      ...(apiKey !== undefined ? { apiKey } : {}),
      ...(flags.modelName !== undefined ? { modelName: flags.modelName } : {}),
      ...(flags.cors !== undefined ? { cors: flags.cors } : {}),
      ...(flags.bodyLimit !== undefined ? { limits: { bodyBytes: flags.bodyLimit } } : {}),
      ...(flags.accessLog ? { log: (line: string) => process.stderr.write(`${line}\n`) } : {}),
      disposeModelOnClose: true,
    });
  } catch (error) {
    await model.dispose();
    throw error;
  }
  let url: string;
  try {
    url = await server.listen({ host: flags.host, port: flags.port });
  } catch (error) {
    await server.close();  // disposes the model
    throw error;
  }
  process.stderr.write(`glm-node serving ${model.path} at ${url} (OpenAI: ${url}/v1, Anthropic: ANTHROPIC_BASE_URL=${url})${apiKey ? ', API key required' : ''}\n`);
  // SIGINT/SIGTERM: graceful shutdown (finish or abort in-flight requests, dispose the model); a second signal exits now.
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.stderr.write('shutting down\n');
      process.once('SIGINT', () => process.exit(130));
      process.once('SIGTERM', () => process.exit(143));
      server.close().then(resolve, (e: unknown) => {
        process.stderr.write(`error during shutdown: ${String(e)}\n`);
        resolve();
      });
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

export function buildProgram(): Command {
  const program = new Command('glm-node')
    .description('Run GLM-4.5-family MoE models from the command line');

  program.command('generate')
    .summary('stream a reply to a text prompt; --tokens: token ids in and out')
    .description(
      'Generate a reply to a text prompt and stream it to stdout as it is produced. The prompt is sent as a ' +
      "user turn through the model's chat template (--raw: completed as plain text); the model's reasoning " +
      '(<think>) streams to stderr, so stdout is the answer. With --tokens the command works on token ids ' +
      'instead: a comma-separated prompt of ids in, the generated ids out. Default model: the embedded tiny ' +
      'model (trained to chat about itself, add and subtract, and call tools; README).')
    .argument('[prompt]', `text prompt, sent as a user message (default: "${DEFAULT_CHAT_PROMPT}")`)
    .option('--model <dir>', 'checkpoint folder (default: the embedded tiny model)')
    .option('--raw', 'complete the prompt as raw text instead of a chat turn')
    .option('--system <text>', 'system message before the user turn')
    .option('--no-thinking', "turn GLM's thinking mode off (no <think> reasoning)")
    .option('--stop <s>', 'stop string, never printed (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--tokens <ids>', 'token-id mode: comma-separated prompt token ids instead of a text prompt; prints the generated ids', parseTokenList)
    .option('--max-tokens <n>', 'tokens to generate at most (default: 512 or what fits; 256 with --tokens)', parseNonNegativeInt)
    .option('--temperature <t>', 'sampling temperature, 0 = greedy (default: 0.6; 0 with --tokens)', parseFiniteNumber)
    .option('--top-k <k>', 'keep the k most likely tokens, 0 = off (default)', parseNonNegativeInt)
    .option('--top-p <p>', 'nucleus mass in (0, 1], 1 = off (default)', parseFiniteNumber)
    .option('--min-p <p>', 'drop tokens below p × the top probability, 0 = off (default)', parseFiniteNumber)
    .option('--seed <s>', 'sampler seed: the same seed and prompt give the same reply (default 0)', parseNonNegativeInt)
    .option('--threads <n>', 'CPU threads (default: available parallelism)', parseNonNegativeInt)
    .option('--verbose', 'print token counts, speeds and speculative decoding (drafts accepted) to stderr when done')
    .option('--no-speculative', "turn speculative decoding with the model's MTP layer off (the output is the same)")
    .option('--json', 'print the whole result as JSON when done instead of streaming (text, reasoning, toolCalls, ' +
      'tokens, finishReason, usage, timings; with --tokens: tokens, finishReason, usage, timings)')
    .action(generateAction);

  program.command('info')
    .description("load a checkpoint (headers only, no weight prefetch) and print model.info as JSON: architecture, sizes, dtype, backend, memory, tokenizer files")
    .option('--model <dir>', 'checkpoint folder (default: the embedded tiny model)')
    .option('--threads <n>', 'CPU threads (default: available parallelism)', parseNonNegativeInt)
    .action(infoAction);

  program.command('quantize')
    .description('write a quantized copy of a checkpoint folder (FP8 per-channel, FP8 128x128 blocks, or MXFP4 experts)')
    .argument('<in>', 'input checkpoint folder (BF16/F16/F32, or FP8 for --to mxfp4)')
    .argument('<out>', 'output folder (replaced)')
    .requiredOption('--to <format>', `target format: ${QUANT_TARGETS.join(' | ')}`, (v: string) => {
      if (!(QUANT_TARGETS as readonly string[]).includes(v)) throw new InvalidArgumentError(`expected one of ${QUANT_TARGETS.join(', ')}`);
      return v as QuantTarget;
    })
    .option('--experts-only', 'quantize only the routed experts (mxfp4 always does)')
    .option('--calibrate <file.jsonl>', 'choose scales by activation-weighted error, with statistics from running the model over this file ({"messages": [...]} or {"text": "..."} per line)')
    .option('--samples <n>', 'calibration samples to use (the first n lines; default all)', parseNonNegativeInt)
    .option('--threads <n>', 'CPU threads (default: all cores)', parseNonNegativeInt)
    .action(quantizeAction);

  program.command('serve')
    .summary('serve the model over HTTP: OpenAI- and Anthropic-compatible APIs')
    .description('serve a model over HTTP: OpenAI /v1/chat/completions, /v1/completions, /v1/models; Anthropic /v1/messages, ' +
      '/v1/messages/count_tokens (point Claude Code at it with ANTHROPIC_BASE_URL); /health, /metrics (Prometheus). ' +
      'Binds to 127.0.0.1 unless --host says otherwise; SIGINT/SIGTERM shut it down gracefully.')
    .option('--model <dir>', 'checkpoint folder (default: the embedded tiny model)')
    .option('--host <addr>', 'address to bind (0.0.0.0: every interface)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free one)', parseNonNegativeInt, 8080)
    .option('--api-key <key>', 'require this key (x-api-key or Authorization: Bearer) on every endpoint but /health (default: $GLM_NODE_API_KEY, else none)')
    .option('--model-name <id>', 'model id listed by /v1/models (default: the folder name; any requested name is served by this model)')
    .option('--cors [origin]', 'send CORS headers for this origin (no value: any origin); default none')
    .option('--threads <n>', 'CPU threads (default: available parallelism)', parseNonNegativeInt)
    .option('--max-concurrent <n>', 'requests computing at once (default 64)', parseNonNegativeInt)
    .option('--max-queued <n>', 'requests waiting beyond those before 429/529 (default 1024)', parseNonNegativeInt)
    .option('--kv-cache-tokens <n>', 'KV pool size in positions across all requests (default: see README)', parseNonNegativeInt)
    .option('--body-limit <bytes>', 'largest request body (default 33554432)', parseNonNegativeInt)
    .option('--no-access-log', 'no per-request log line on stderr')
    .action(serveAction);

  program.addCommand(benchCommand());

  // Commander would print its own "error: ..." and exit; route its errors through main() instead so
  // every failure has the same `error [CODE]: message` shape.
  for (const cmd of [program, ...program.commands]) {
    cmd.exitOverride().configureOutput({ outputError: () => {} });
  }
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv]);
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version output were already written; their exit code says whether it was an error.
      if (error.code === 'commander.helpDisplayed' || error.code === 'commander.help' || error.code === 'commander.version') {
        return error.exitCode;
      }
      process.stderr.write(`error [INVALID_PARAM]: ${error.message.replace(/^error: /, '')}\n`);
      return 1;
    }
    const e = toGlmError(error);
    process.stderr.write(`error [${e.code}]: ${e.message}\n`);
    return 1;
  }
}
