// HTTP server benchmark (`npm run bench:server`): the same streaming chat load, at 1, 16 and 64
// concurrent clients, once through the in-process API (session.stream) and once through
// `glm-node serve`'s OpenAI endpoint over loopback (the server in a child process, as it would run;
// the clients in this one). Prints requests/s, output tokens/s, time to first token and inter-token
// latency percentiles for both, and the server's cost per output token: the difference of the two
// runs' wall time per token. Default model: the embedded tiny one, so engine time is small and the
// HTTP cost is visible. Numbers only, no assertions (shared machines are noisy).
import { Command, InvalidArgumentError } from 'commander';
import { fork } from 'node:child_process';
import { readFileSync, realpathSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DEFAULT_MODEL_DIR } from '../lib/cli-program.js';
import type { ChatMessage } from '../lib/chat-template.js';
import { Model } from '../lib/model.js';
import { createServer } from '../lib/server/index.js';
import { sseEvents } from './sse-frames.js';

const CHILD_ARG = '__server-bench-child';

interface Options { model: string; threads: number; clients: number[]; requests?: number; maxTokens: number; json?: string }

interface Sample { ttftMs: number; gapsMs: number[]; tokens: number }

interface Row {
  mode: 'in-process' | 'server';
  clients: number;
  requests: number;
  wallS: number;
  requestsPerS: number;
  outputTokensPerS: number;
  ttftMs: { p50: number; p90: number; p99: number };
  itlMs: { p50: number; p90: number; p99: number };
  /** CPU time of the main thread per output token, µs: where the server's own work runs. */
  jsMicrosPerToken: number;
}

function percentile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** Requests per client: as given, else at least 3 and 32 in all (CPU time is read in 10 ms ticks: enough tokens to resolve µs per token). */
const requestsFor = (o: Options, clients: number) => o.requests ?? Math.max(3, Math.ceil(32 / clients));

const messagesFor = (i: number): ChatMessage[] => [{ role: 'user', content: `What is ${100 + (i * 37) % 800} + ${10 + (i * 13) % 90}?` }];

/**
 * CPU time of this process's main thread in ms (Linux: /proc, clock ticks of 10 ms: runs are seconds
 * long). Wall-clock busy time would count the moments the thread waits for a core that the engine's
 * threads hold, which on a small machine is most of it. Elsewhere: the event loop's busy wall time.
 */
function mainThreadCpuMs(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;  // utime + stime (fields 14, 15), USER_HZ = 100
  } catch {
    return performance.eventLoopUtilization().active;
  }
}

/** `clients` workers, each sending `requests` requests one after another. */
async function load(clients: number, requests: number, one: (i: number) => Promise<Sample>): Promise<{ samples: Sample[]; wallS: number }> {
  const samples: Sample[] = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let r = 0; r < requests; r++) samples.push(await one(c * requests + r));
  }));
  return { samples, wallS: (performance.now() - t0) / 1000 };
}

function row(mode: Row['mode'], clients: number, run: { samples: Sample[]; wallS: number }, busyMs: number): Row {
  const tokens = run.samples.reduce((n, s) => n + s.tokens, 0);
  const ttft = run.samples.map((s) => s.ttftMs);
  const gaps = run.samples.flatMap((s) => s.gapsMs);
  const pct = (v: number[]) => ({ p50: percentile(v, 0.5), p90: percentile(v, 0.9), p99: percentile(v, 0.99) });
  return {
    mode, clients, requests: run.samples.length, wallS: run.wallS,
    requestsPerS: run.samples.length / run.wallS, outputTokensPerS: tokens / run.wallS, ttftMs: pct(ttft), itlMs: pct(gaps),
    jsMicrosPerToken: (busyMs * 1000) / tokens,
  };
}

async function inProcess(o: Options): Promise<Row[]> {
  const model = await Model.load(o.model, { threads: o.threads });
  try {
    const one = async (i: number): Promise<Sample> => {
      const session = model.createSession();
      try {
        const t0 = performance.now();
        let last = 0, ttft = 0;
        const gaps: number[] = [];
        const gen = session.stream(messagesFor(i), { maxTokens: o.maxTokens, temperature: 0, ignoreEos: true, thinking: false });
        for await (const c of gen) {
          if (c.type === 'done') continue;
          const now = performance.now();
          if (last === 0) ttft = now - t0;
          else gaps.push(now - last);
          last = now;
        }
        return { ttftMs: ttft, gapsMs: gaps, tokens: (await gen.result).usage.completionTokens };
      } finally {
        await session.dispose();
      }
    };
    await one(0);  // warm-up
    const rows: Row[] = [];
    for (const c of o.clients) {
      const before = mainThreadCpuMs();
      const run = await load(c, requestsFor(o, c), one);
      rows.push(row('in-process', c, run, mainThreadCpuMs() - before));
    }
    return rows;
  } finally {
    await model.dispose();
  }
}

async function overHttp(o: Options): Promise<Row[]> {
  const child = fork(fileURLToPath(import.meta.url), [CHILD_ARG, JSON.stringify(o)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (m) => resolve(m as string));
    child.once('exit', (code) => reject(new Error(`server child exited with ${code}`)));
  });
  try {
    const one = async (i: number): Promise<Sample> => {
      const t0 = performance.now();
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: messagesFor(i), max_tokens: o.maxTokens, temperature: 0, ignore_eos: true, stream: true,
          stream_options: { include_usage: true }, chat_template_kwargs: { enable_thinking: false } }),
      });
      if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
      let last = 0, ttft = 0, tokens = 0;
      const gaps: number[] = [];
      for await (const { data } of sseEvents(res.body!)) {
        if (data === '[DONE]') continue;
        const j = JSON.parse(data) as { choices: { delta: { content?: string; reasoning_content?: string } }[]; usage?: { completion_tokens: number } | null };
        if (j.usage) tokens = j.usage.completion_tokens;
        const d = j.choices[0]?.delta;
        if (!d?.content && !d?.reasoning_content) continue;
        const now = performance.now();
        if (last === 0) ttft = now - t0;
        else gaps.push(now - last);
        last = now;
      }
      return { ttftMs: ttft, gapsMs: gaps, tokens };
    };
    await one(0);
    const rows: Row[] = [];
    // The server's main-thread CPU time, read in its own process (the clients' parsing is not in it).
    const busy = () => new Promise<number>((resolve) => {
      child.once('message', (m) => resolve(m as number));
      child.send('elu');
    });
    for (const c of o.clients) {
      const before = await busy();
      const run = await load(c, requestsFor(o, c), one);
      rows.push(row('server', c, run, (await busy()) - before));
    }
    return rows;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

async function serverChild(o: Options): Promise<void> {
  const model = await Model.load(o.model, { threads: o.threads });
  const server = createServer(model, { disposeModelOnClose: true });
  process.send!(await server.listen({ port: 0 }));
  process.on('message', () => process.send!(mainThreadCpuMs()));
  process.once('SIGTERM', () => { void server.close().then(() => process.exit(0)); });
}

async function runAll(o: Options): Promise<void> {
  const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '-');
  console.log(`model ${o.model}, ${o.threads} threads, ${o.requests ?? 'max(3, 32 / clients)'} requests per client, ${o.maxTokens} output tokens each (ignore_eos, thinking off), ` +
    `${os.cpus().length} CPUs: ${os.cpus()[0]?.model ?? '?'}`);
  const rows = [...await inProcess(o), ...await overHttp(o)];
  console.log('\nmode        clients  req/s   out tok/s  TTFT p50/p90/p99 ms      ITL p50/p90/p99 ms   main-thread CPU µs/token');
  for (const r of rows) {
    console.log(`${r.mode.padEnd(11)} ${String(r.clients).padStart(7)}  ${fmt(r.requestsPerS, 2).padStart(6)}  ${fmt(r.outputTokensPerS).padStart(9)}  ` +
      `${`${fmt(r.ttftMs.p50)}/${fmt(r.ttftMs.p90)}/${fmt(r.ttftMs.p99)}`.padEnd(22)}  ${`${fmt(r.itlMs.p50, 2)}/${fmt(r.itlMs.p90, 2)}/${fmt(r.itlMs.p99, 2)}`.padEnd(19)}  ${fmt(r.jsMicrosPerToken)}`);
  }
  console.log('\nserver cost per output token: main-thread CPU time (HTTP, JSON, SSE writes) over HTTP minus in process; and wall time per token over HTTP minus in process');
  const overhead: Record<number, { jsMicros: number; wallMicros: number }> = {};
  for (const c of o.clients) {
    const a = rows.find((r) => r.mode === 'in-process' && r.clients === c)!, b = rows.find((r) => r.mode === 'server' && r.clients === c)!;
    overhead[c] = { jsMicros: b.jsMicrosPerToken - a.jsMicrosPerToken, wallMicros: (1 / b.outputTokensPerS - 1 / a.outputTokensPerS) * 1e6 };
    console.log(`  ${String(c).padStart(3)} clients: ${fmt(overhead[c]!.jsMicros)} µs/token of main-thread CPU; ${fmt(overhead[c]!.wallMicros)} µs/token of wall time ` +
      `(the clients run on the same cores as the engine)`);
  }
  if (o.json) await writeFile(o.json, JSON.stringify({ options: o, rows, overheadMicrosPerToken: overhead }, null, 2));
}

function positiveInt(value: string): number {
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new InvalidArgumentError('expected a positive integer');
  return Number(value);
}

export function serverBenchCommand(): Command {
  return new Command('bench-server')
    .description('HTTP server benchmark: streaming chat load at several client counts, over HTTP and in process')
    .option('--model <dir>', 'checkpoint folder (default: the embedded tiny model)', DEFAULT_MODEL_DIR)
    .option('--threads <n>', 'CPU threads of the engine', positiveInt, os.availableParallelism())
    .option('--clients <list>', 'concurrent streaming clients', (v: string) => v.split(',').map(positiveInt), [1, 16, 64])
    .option('--requests <n>', 'requests per client, one after another (default: at least 3, and 32 in all)', positiveInt)
    .option('--max-tokens <n>', 'output tokens per request', positiveInt, 64)
    .option('--json <file>', 'also write every number as JSON to <file>')
    .action(async (opts: Options) => runAll(opts));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href) {
  if (process.argv[2] === CHILD_ARG) await serverChild(JSON.parse(process.argv[3]!) as Options);
  else await serverBenchCommand().parseAsync(process.argv);
}
