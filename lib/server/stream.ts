// Drives a streamed answer: pulls chunks from the generation and hands them to the dialect's writer,
// committing the HTTP 200 only at the first chunk or after `commitMs` (so a request refused at once,
// e.g. by a full queue, still gets a real 429/529 status), pinging while the model is silent (a long
// prefill), and turning a failure after the commit into an in-stream error event.
import type { StreamChunk, TextGenerateResult } from '../generation.js';
import { toHttpError, type HttpError } from './errors.js';
import type { Run } from './run.js';
import type { SseWriter } from './sse.js';

export interface StreamHooks {
  /** Sends the headers (through the SseWriter) and the opening events. */
  commit(): Promise<void>;
  chunk(chunk: Exclude<StreamChunk, { type: 'done' }>): Promise<void>;
  done(result: TextGenerateResult): Promise<void>;
  /** A keep-alive event while nothing else is sent. */
  ping(): Promise<void>;
  /** An error after the commit, as the dialect's error event. */
  error(e: HttpError): Promise<void>;
}

const TIMEOUT = Symbol('timeout');

function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMEOUT> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<typeof TIMEOUT>((resolve) => { timer = setTimeout(() => resolve(TIMEOUT), ms); });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

/**
 * Streams `run` through `hooks`. Resolves when the stream is over (ended, failed in-stream, or the
 * client left); rejects only with an error that happened before the commit, for the caller to answer
 * as a plain HTTP error.
 */
export async function pumpStream(run: Run, sse: SseWriter, hooks: StreamHooks, opts: { commitMs: number; pingMs: number }): Promise<void> {
  const it = run.generation[Symbol.asyncIterator]();
  let next = it.next();
  try {
    for (;;) {
      const r = await within(next, sse.committed ? Math.max(1, opts.pingMs - sse.idleMs) : opts.commitMs);
      if (sse.closed) break;
      if (r === TIMEOUT) {
        if (!sse.committed) await hooks.commit();
        else if (sse.idleMs >= opts.pingMs) await hooks.ping();
        continue;
      }
      if (r.done) break;
      next = it.next();
      if (!sse.committed) await hooks.commit();
      run.observe(r.value);
      if (r.value.type === 'done') await hooks.done(r.value.result);
      else await hooks.chunk(r.value);
    }
  } catch (error) {
    if (run.disconnected || sse.closed) return;  // nobody left to tell
    const e = toHttpError(error);
    if (!sse.committed) throw e;
    await hooks.error(e);
  } finally {
    // A stream that stopped early (client gone, a failed write) must not leave the generation running;
    // after a normal end this is a no-op.
    run.controller.abort(new Error('the stream closed'));
    if (sse.committed) sse.end();
  }
}
