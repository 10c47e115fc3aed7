// One generation for one HTTP request: a temporary session (prompt pages come from the model's
// prefix cache), max_tokens clamped to what the context has room for, the request's AbortSignal
// raised when the client disconnects or the server shuts down, and the latency metrics observed where
// the client sees them.
import type { ServerResponse } from 'node:http';
import { ContextOverflowError } from '../errors.js';
import type { Generation, StreamChunk, TextGenerateResult } from '../generation.js';
import type { TextGenerateOptions } from '../generate-options.js';
import type { Model } from '../model.js';
import type { GenerateInput } from '../prompt.js';
import type { Session } from '../session.js';
import type { ServerMetrics } from './metrics.js';

export interface ServerContext {
  model: Model;
  metrics: ServerMetrics;
  /** Controllers of the generations running now (shutdown aborts what is left after its grace period). */
  running: Set<AbortController>;
  /** The name the server answers with when a request names none. */
  modelName: string;
}

export class Run {
  readonly generation: Generation;
  readonly controller: AbortController;
  readonly #ctx: ServerContext;
  readonly #receivedAt: number;
  #last = 0;
  #disconnected = false;

  private constructor(ctx: ServerContext, generation: Generation, controller: AbortController, receivedAt: number) {
    this.#ctx = ctx;
    this.generation = generation;
    this.controller = controller;
    this.#receivedAt = receivedAt;
  }

  /**
   * Starts the generation. `maxTokens` undefined: the library's default (512 or what fits); a number
   * larger than the room the prompt leaves is lowered to that room (as llama.cpp and vLLM do; clients
   * such as Claude Code send a large max_tokens whatever the model's context).
   */
  static start(ctx: ServerContext, res: ServerResponse, receivedAt: number, input: GenerateInput,
    options: Omit<TextGenerateOptions, 'signal' | 'onChunk'>, maxTokens: number | undefined): Run {
    const controller = new AbortController();
    const session = ctx.model.createSession();
    let generation: Generation;
    try {
      try {
        generation = session.stream(input, { ...options, ...(maxTokens !== undefined ? { maxTokens } : {}), signal: controller.signal });
      } catch (error) {
        // The overflow error carries prompt + maxTokens; retry once with the room that leaves. A prompt
        // that itself does not fit fails again and is reported as such.
        if (!(error instanceof ContextOverflowError) || maxTokens === undefined || error.requestedTokens === undefined) throw error;
        const room = session.contextLength - (error.requestedTokens - maxTokens);
        if (room < 1 || room >= maxTokens) throw error;
        generation = session.stream(input, { ...options, maxTokens: room, signal: controller.signal });
      }
    } catch (error) {
      void session.dispose();
      throw error;
    }
    const run = new Run(ctx, generation, controller, receivedAt);
    ctx.running.add(controller);
    const onClose = () => {
      if (!res.writableFinished) {
        run.#disconnected = true;
        ctx.metrics.clientDisconnected();
        controller.abort(new Error('the client disconnected'));
      }
    };
    res.once('close', onClose);
    const cleanup = (session: Session) => {
      ctx.running.delete(controller);
      res.off('close', onClose);
      void session.dispose().catch(() => undefined);
    };
    generation.result.then(
      (r) => {
        cleanup(session);
        ctx.metrics.generationDone((performance.now() - receivedAt) / 1000, r.usage);
      },
      () => cleanup(session),
    );
    return run;
  }

  /** The client left before the answer was complete (its generation was aborted). */
  get disconnected(): boolean {
    return this.#disconnected;
  }

  /** Records TTFT / inter-token gaps for a streamed chunk. */
  observe(chunk: StreamChunk): void {
    if (chunk.type === 'done') return;
    const now = performance.now();
    if (this.#last === 0) this.#ctx.metrics.timeToFirstToken((now - this.#receivedAt) / 1000);
    else this.#ctx.metrics.interToken((now - this.#last) / 1000);
    this.#last = now;
  }

  /** Waits for the whole result (non-streamed requests), observing TTFT from the engine's timings. */
  async result(): Promise<TextGenerateResult> {
    const r = await this.generation.result;
    this.#ctx.metrics.timeToFirstToken((r.timings.queueMs + r.timings.prefillMs) / 1000);
    return r;
  }
}
