// Server-sent events on a raw ServerResponse, written by hand: one `write` per event so each reaches
// the client at once (no compression, no buffering proxies: X-Accel-Buffering), and every write
// respects back-pressure: when the socket buffer is full the writer waits for 'drain' (or the client
// leaving) before the caller produces the next event.
import type { ServerResponse } from 'node:http';

export class SseWriter {
  readonly #res: ServerResponse;
  #committed = false;
  #closed = false;
  #lastWrite = 0;

  readonly #onBackpressure: (() => void) | undefined;

  /** `onBackpressure` is told each time a write has to wait for the socket to drain. */
  constructor(res: ServerResponse, onBackpressure?: () => void) {
    this.#res = res;
    this.#onBackpressure = onBackpressure;
    res.once('close', () => { this.#closed = true; });
  }

  /** The client went away (or the stream ended). */
  get closed(): boolean {
    return this.#closed || this.#res.destroyed;
  }

  get committed(): boolean {
    return this.#committed;
  }

  /** Milliseconds since the last event was written (for keep-alive pings). */
  get idleMs(): number {
    return performance.now() - this.#lastWrite;
  }

  /** Sends the 200 status and stream headers (once). Until then an error can still be a plain HTTP error. */
  commit(headers: Record<string, string>): void {
    if (this.#committed || this.closed) return;
    this.#committed = true;
    this.#res.socket?.setNoDelay(true);
    this.#res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    this.#res.flushHeaders();
    this.#lastWrite = performance.now();
  }

  /** Writes one event (`event:` line only when named); resolves once the socket can take more. */
  async send(data: string, event?: string): Promise<void> {
    await this.#write(event === undefined ? `data: ${data}\n\n` : `event: ${event}\ndata: ${data}\n\n`);
  }

  /** An SSE comment: ignored by parsers, keeps proxies and idle timers from closing the stream. */
  async comment(text: string): Promise<void> {
    await this.#write(`: ${text}\n\n`);
  }

  async #write(frame: string): Promise<void> {
    if (this.closed) return;
    this.#lastWrite = performance.now();
    if (this.#res.write(frame)) return;
    this.#onBackpressure?.();
    await new Promise<void>((resolve) => {
      const done = () => {
        this.#res.off('drain', done);
        this.#res.off('close', done);
        resolve();
      };
      this.#res.on('drain', done);
      this.#res.on('close', done);
    });
  }

  end(): void {
    if (!this.#res.writableEnded) this.#res.end();
  }
}
