// HTTP errors of the server and their two wire shapes (OpenAI and Anthropic). Library errors keep
// their stable codes; this file decides which HTTP status each code is, so both dialects agree.
import { GlmError, toGlmError } from '../errors.js';

export type Dialect = 'openai' | 'anthropic';

/** An error with an HTTP status, raised by request validation or mapped from a GlmError. */
export class HttpError extends Error {
  readonly status: number;
  /** OpenAI's `param`: the request field at fault, when one is. */
  readonly param: string | undefined;
  /** A stable code (GlmError codes, or the server's own: INVALID_REQUEST, UNAUTHORIZED, ...). */
  readonly code: string;
  /** Seconds, for 429/503/529. */
  readonly retryAfter: number | undefined;
  constructor(status: number, message: string, opts: { param?: string; code?: string; retryAfter?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'HttpError';
    this.status = status;
    this.param = opts.param;
    this.code = opts.code ?? (status === 401 ? 'UNAUTHORIZED' : status === 404 ? 'NOT_FOUND' : 'INVALID_REQUEST');
    this.retryAfter = opts.retryAfter;
  }
}

/** A 400 naming the field at fault. */
export function badRequest(message: string, param?: string): HttpError {
  return new HttpError(400, message, param === undefined ? {} : { param });
}

/**
 * Any thrown value as an HttpError. Caller mistakes (bad parameters, prompts over the context, a
 * template that refuses the input) are 400; a full queue is 429 (the Anthropic dialect turns it into
 * 529 overloaded); a disposed or dead model is 503; the rest is 500 and says so.
 */
export function toHttpError(error: unknown): HttpError {
  if (error instanceof HttpError) return error;
  // Fastify's own errors (malformed JSON, body too large, wrong content type) carry a 4xx statusCode.
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  if (!(error instanceof GlmError) && typeof status === 'number' && status >= 400 && status < 500) {
    const code = (error as { code?: unknown }).code;
    return new HttpError(status, (error as Error).message, { code: typeof code === 'string' ? code : 'INVALID_REQUEST', cause: error });
  }
  const e = toGlmError(error);
  switch (e.code) {
    case 'INVALID_PARAM': case 'INVALID_TOKEN': case 'CONTEXT_OVERFLOW': case 'TEMPLATE': case 'UNSUPPORTED_FORMAT':
      return new HttpError(400, e.message, { code: e.code, cause: e });
    case 'QUEUE_FULL':
      return new HttpError(429, e.message, { code: e.code, retryAfter: 1, cause: e });
    case 'DISPOSED': case 'ENGINE_DEAD':
      return new HttpError(503, e.message, { code: e.code, retryAfter: 5, cause: e });
    case 'ABORTED':
      return new HttpError(499, e.message, { code: e.code, cause: e });
    default:
      return new HttpError(500, `internal error (${e.code}): ${e.message}`, { code: e.code, cause: e });
  }
}

const OPENAI_TYPES: Record<number, string> = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error',
  413: 'invalid_request_error', 415: 'invalid_request_error', 429: 'rate_limit_error', 503: 'service_unavailable', 500: 'server_error',
};
const ANTHROPIC_TYPES: Record<number, string> = {
  400: 'invalid_request_error', 401: 'authentication_error', 403: 'permission_error', 404: 'not_found_error',
  413: 'request_too_large', 415: 'invalid_request_error', 429: 'rate_limit_error', 500: 'api_error', 503: 'overloaded_error',
  529: 'overloaded_error',
};

/** The status actually sent: Anthropic clients (Claude Code) read a full queue as 529 overloaded and back off. */
export function wireStatus(e: HttpError, dialect: Dialect): number {
  return dialect === 'anthropic' && e.status === 429 && e.code === 'QUEUE_FULL' ? 529 : e.status;
}

/** The JSON body of an error response (also the payload of an in-stream error event). */
export function errorBody(e: HttpError, dialect: Dialect, requestId: string): Record<string, unknown> {
  const status = wireStatus(e, dialect);
  if (dialect === 'anthropic') {
    const type = ANTHROPIC_TYPES[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
    return { type: 'error', error: { type, message: e.message }, request_id: requestId };
  }
  const type = OPENAI_TYPES[status] ?? (status >= 500 ? 'server_error' : 'invalid_request_error');
  return { error: { message: e.message, type, param: e.param ?? null, code: e.code.toLowerCase() } };
}
