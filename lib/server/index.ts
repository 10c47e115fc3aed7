// createServer(model, options): the OpenAI- and Anthropic-compatible HTTP server on one Fastify
// instance. This file wires the pieces (auth, limits, metrics, request ids, access log, CORS, error
// shapes, graceful shutdown); each API's routes live in their own file.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fastify, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { InvalidParamError } from '../errors.js';
import type { Model } from '../model.js';
import { checkInteger, checkKnownKeys, checkObject, describe } from '../options.js';
import { countTokens, messages } from './anthropic.js';
import { ApiKeyCheck } from './auth.js';
import { errorBody, HttpError, toHttpError, wireStatus, type Dialect } from './errors.js';
import { DEFAULT_LIMITS, checkDepth, type RequestLimits } from './limits.js';
import { ServerMetrics } from './metrics.js';
import { chatCompletions, completions, type RouteSettings } from './openai.js';
import type { ServerContext } from './run.js';

export type { RequestLimits } from './limits.js';
export { stripBillingHeader } from './anthropic.js';

export interface ServerOptions {
  /**
   * Require this key on every endpoint except /health, as `x-api-key` or `Authorization: Bearer`.
   * Default: no key (the server binds to 127.0.0.1 unless told otherwise).
   */
  apiKey?: string;
  /** The model id listed by /v1/models and answered when a request names none (default: the model folder's name). */
  modelName?: string;
  /** Allow browsers from this origin (true: any origin). Default: no CORS headers. */
  cors?: boolean | string;
  /** Request size limits (see RequestLimits); each refusal is a 4xx naming the limit. */
  limits?: Partial<RequestLimits>;
  /** One line per request (access log). Default: none. */
  log?: (line: string) => void;
  /** close(): dispose the model after the server stops (default false: the caller owns the model). */
  disposeModelOnClose?: boolean;
  /** close(): how long in-flight requests may finish before they are aborted, in ms (default 10,000). */
  shutdownGraceMs?: number;
  /** Streams: how long to wait for the first output before sending headers, in ms (default 200). */
  streamCommitMs?: number;
  /** Streams: keep-alive ping after this many ms without an event, e.g. during a long prefill (default 5,000). */
  pingIntervalMs?: number;
}

const OPTION_KEYS = ['apiKey', 'modelName', 'cors', 'limits', 'log', 'disposeModelOnClose', 'shutdownGraceMs', 'streamCommitMs', 'pingIntervalMs'];

export interface GlmServer {
  /** The Fastify instance (add routes or hooks before listen; `inject()` works for tests). */
  readonly app: FastifyInstance;
  /** Starts listening (default 127.0.0.1:8080; port 0 picks a free one); resolves with the base URL. */
  listen(options?: { host?: string; port?: number }): Promise<string>;
  /**
   * Graceful shutdown: refuses new requests (503), lets running ones finish for shutdownGraceMs, aborts
   * the rest, closes the listener and, with disposeModelOnClose, disposes the model. Idempotent.
   */
  close(): Promise<void>;
  /** The server's counters as Prometheus text (what GET /metrics answers). */
  metrics(): string;
}

function resolveLimits(v: unknown): RequestLimits {
  const o = checkObject('limits', v);
  checkKnownKeys('limits', o, Object.keys(DEFAULT_LIMITS));
  const int = (k: keyof RequestLimits, max: number) => (o[k] === undefined ? DEFAULT_LIMITS[k] : checkInteger(`limits.${k}`, o[k], 1, max));
  return {
    bodyBytes: int('bodyBytes', 2 ** 31 - 1),
    messages: int('messages', 1_000_000),
    maxTokens: int('maxTokens', 2 ** 31 - 1),
    toolSchemaBytes: int('toolSchemaBytes', 2 ** 31 - 1),
  };
}

const dialectOf = (req: FastifyRequest): Dialect =>
  req.url.startsWith('/v1/messages') || req.headers['anthropic-version'] !== undefined ? 'anthropic' : 'openai';

export function createServer(model: Model, options?: ServerOptions): GlmServer {
  const o = checkObject('server options', options);
  checkKnownKeys('server options', o, OPTION_KEYS);
  if (o.apiKey !== undefined && (typeof o.apiKey !== 'string' || o.apiKey.length === 0)) {
    throw new InvalidParamError(`apiKey must be a non-empty string, got ${describe(o.apiKey)}`);
  }
  if (o.modelName !== undefined && (typeof o.modelName !== 'string' || o.modelName.length === 0)) {
    throw new InvalidParamError(`modelName must be a non-empty string, got ${describe(o.modelName)}`);
  }
  if (o.cors !== undefined && typeof o.cors !== 'boolean' && typeof o.cors !== 'string') {
    throw new InvalidParamError(`cors must be a boolean or an origin string, got ${describe(o.cors)}`);
  }
  if (o.log !== undefined && typeof o.log !== 'function') throw new InvalidParamError(`log must be a function, got ${describe(o.log)}`);
  if (o.disposeModelOnClose !== undefined && typeof o.disposeModelOnClose !== 'boolean') {
    throw new InvalidParamError(`disposeModelOnClose must be a boolean, got ${describe(o.disposeModelOnClose)}`);
  }
  const limits = resolveLimits(o.limits);
  const graceMs = o.shutdownGraceMs === undefined ? 10_000 : checkInteger('shutdownGraceMs', o.shutdownGraceMs, 0, 3_600_000);
  const settings: RouteSettings = {
    limits,
    commitMs: o.streamCommitMs === undefined ? 200 : checkInteger('streamCommitMs', o.streamCommitMs, 1, 60_000),
    pingMs: o.pingIntervalMs === undefined ? 5_000 : checkInteger('pingIntervalMs', o.pingIntervalMs, 10, 3_600_000),
  };
  const auth = o.apiKey === undefined ? undefined : new ApiKeyCheck(o.apiKey as string);
  const cors = o.cors === true ? '*' : typeof o.cors === 'string' ? o.cors : undefined;
  const log = o.log as ((line: string) => void) | undefined;
  const ctx: ServerContext = {
    model,
    metrics: new ServerMetrics(),
    running: new Set(),
    modelName: (o.modelName as string | undefined) ?? (path.basename(path.resolve(model.path)) || 'glm'),
  };

  const app = fastify({
    logger: false,
    bodyLimit: limits.bodyBytes,
    // Time to receive a whole request (a 32 MiB transcript on a slow link), not to answer it.
    requestTimeout: 600_000,
    genReqId: () => `req_${randomBytes(12).toString('hex')}`,
    return503OnClosing: true,
  });
  let closing = false;

  app.addHook('onRequest', async (req, reply) => {
    const started = performance.now();
    ctx.metrics.requestStarted();
    reply.header('request-id', req.id).header('x-request-id', req.id);
    if (cors) reply.header('access-control-allow-origin', cors).header('vary', 'origin');
    reply.raw.once('close', () => {
      // A response that never finished was cut off by the client (nginx's 499).
      const status = reply.raw.writableFinished ? reply.raw.statusCode : 499;
      ctx.metrics.requestEnded(req.routeOptions.url ?? 'unmatched', status);
      try {
        log?.(`${new Date().toISOString()} ${req.id} ${req.ip} ${req.method} ${req.url} ${status} ${(performance.now() - started).toFixed(1)}ms`);
      } catch {
        // A throwing logger must not take the process down from inside an event handler.
      }
    });
    if (closing) throw new HttpError(503, 'the server is shutting down', { code: 'SHUTTING_DOWN', retryAfter: 5 });
    if (cors && req.method === 'OPTIONS') return;  // a preflight carries no key
    if (auth && req.url !== '/health' && !req.url.startsWith('/health?') && !auth.accepts(req.headers)) {
      throw new HttpError(401, ApiKeyCheck.presented(req.headers) === undefined
        ? 'missing API key: send it as x-api-key or Authorization: Bearer'
        : 'invalid API key');
    }
  });

  app.addHook('preHandler', async (req) => {
    if (req.body !== undefined) checkDepth(req.body);
  });

  app.setErrorHandler((error, req, reply) => {
    const e = toHttpError(error);
    const dialect = dialectOf(req);
    if (e.code === 'QUEUE_FULL') ctx.metrics.queueFull();
    if (e.retryAfter !== undefined) reply.header('retry-after', String(e.retryAfter));
    if (reply.raw.headersSent) return;  // a stream already under way reports in-stream
    void reply.code(wireStatus(e, dialect)).send(errorBody(e, dialect, req.id));
  });
  app.setNotFoundHandler((req, reply) => {
    const e = new HttpError(404, `no route ${req.method} ${req.url.split('?')[0]}`);
    void reply.code(404).send(errorBody(e, dialectOf(req), req.id));
  });

  if (cors) {
    app.options('/*', async (_req, reply) => reply.code(204)
      .header('access-control-allow-methods', 'GET, HEAD, POST, OPTIONS')
      .header('access-control-allow-headers', 'authorization, content-type, x-api-key, anthropic-version, anthropic-beta')
      .header('access-control-max-age', '600').send());
  }

  const receivedAt = (reply: FastifyReply) => performance.now() - reply.elapsedTime;
  const health = async (_req: FastifyRequest, reply: FastifyReply) => {
    if (model.disposed) return reply.code(503).send({ status: 'unavailable' });
    return { status: 'ok' };
  };
  app.get('/', health);  // Claude Code and others probe HEAD / (Fastify answers HEAD for every GET)
  app.get('/health', health);
  app.get('/metrics', async (_req, reply) => {
    const stats = model.disposed ? undefined : model.stats();
    return reply.type('text/plain; version=0.0.4; charset=utf-8').send(ctx.metrics.render(stats));
  });
  const created = Math.floor(Date.now() / 1000);
  const modelEntry = (id: string, anthropic: boolean) => anthropic
    ? { type: 'model', id, display_name: id, created_at: new Date(created * 1000).toISOString() }
    : { id, object: 'model', created, owned_by: 'glm-node' };
  app.get('/v1/models', async (req) => {
    const anthropic = req.headers['anthropic-version'] !== undefined;
    const data = [modelEntry(ctx.modelName, anthropic)];
    return anthropic ? { data, has_more: false, first_id: ctx.modelName, last_id: ctx.modelName } : { object: 'list', data };
  });
  // Any model id maps to the loaded model (clients ask for names such as claude-sonnet-4-5), so every id exists.
  app.get<{ Params: { id: string } }>('/v1/models/:id', async (req) => modelEntry(req.params.id, req.headers['anthropic-version'] !== undefined));
  app.post('/v1/chat/completions', (req, reply) => chatCompletions(ctx, settings, req, reply, receivedAt(reply)));
  app.post('/v1/completions', (req, reply) => completions(ctx, settings, req, reply, receivedAt(reply)));
  app.post('/v1/messages', (req, reply) => messages(ctx, settings, req, reply, receivedAt(reply)));
  app.post('/v1/messages/count_tokens', async (req) => countTokens(ctx, settings, req));

  let closed: Promise<void> | undefined;
  const close = async () => {
    closing = true;
    const deadline = performance.now() + graceMs;
    while (ctx.running.size > 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    for (const c of ctx.running) c.abort(new Error('the server is shutting down'));
    // Aborted streams still write their error event: wait for those responses to end, so that
    // Fastify's close finds their keep-alive connections idle and closes them instead of waiting
    // for the clients to hang up.
    const ends = performance.now() + 5_000;
    while (ctx.metrics.inFlight > 0 && performance.now() < ends) await new Promise((r) => setTimeout(r, 10));
    const force = setTimeout(() => app.server.closeAllConnections(), 1_000);
    try {
      await app.close();
    } finally {
      clearTimeout(force);
    }
    if (o.disposeModelOnClose === true) await model.dispose();
  };

  return {
    app,
    async listen(opts = {}) {
      const host = opts.host ?? '127.0.0.1';
      const port = opts.port === undefined ? 8080 : checkInteger('port', opts.port, 0, 65535);
      try {
        await app.listen({ host, port });
      } catch (error) {
        // The address is the caller's choice: a taken or forbidden one is a parameter problem, not an internal one.
        const code = (error as { code?: unknown }).code;
        if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL' || code === 'ENOTFOUND') {
          throw new InvalidParamError(`cannot listen on ${host}:${port}: ${(error as Error).message}`, { cause: error });
        }
        throw error;
      }
      const addr = app.server.address();
      const p = typeof addr === 'object' && addr ? addr.port : port;
      return `http://${host.includes(':') ? `[${host}]` : host}:${p}`;
    },
    close() {
      closed ??= close();
      return closed;
    },
    metrics: () => ctx.metrics.render(model.disposed ? undefined : model.stats()),
  };
}
