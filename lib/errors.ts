// Typed errors at the JS boundary. Every error glm-node raises is a GlmError with a stable `code`;
// native errors arrive as plain Errors carrying one of these codes (cpp/engine/status.h) and are
// rewrapped by toGlmError().

export type GlmErrorCode =
  | 'MODEL_FORMAT'
  | 'UNSUPPORTED_FORMAT'
  | 'MODEL_LOAD'
  | 'INSUFFICIENT_MEMORY'
  | 'CONTEXT_OVERFLOW'
  | 'INVALID_PARAM'
  | 'INVALID_TOKEN'
  | 'ABORTED'
  | 'DISPOSED'
  | 'ENGINE_DEAD'
  | 'NUMERICAL'
  | 'BACKEND_UNAVAILABLE'
  | 'NATIVE_ADDON'
  | 'TEMPLATE'
  | 'QUEUE_FULL'
  | 'CALIBRATION_FORMAT'
  | 'INTERNAL';

export class GlmError extends Error {
  readonly code: GlmErrorCode;
  constructor(code: GlmErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** The checkpoint folder, a header, a tensor or config.json is malformed or inconsistent. */
export class ModelFormatError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('MODEL_FORMAT', message, options); }
}
/** Well-formed, but not something glm-node runs (pickle weights, another architecture, FP8 before support). */
export class UnsupportedFormatError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('UNSUPPORTED_FORMAT', message, options); }
}
/** The model path cannot be read (missing, not a directory, permissions). */
export class ModelLoadError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('MODEL_LOAD', message, options); }
}
export class InsufficientMemoryError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('INSUFFICIENT_MEMORY', message, options); }
}
/** Tokens would not fit in the session's context. Carries both sizes. */
export class ContextOverflowError extends GlmError {
  readonly requestedTokens: number | undefined;
  readonly contextLength: number | undefined;
  constructor(message: string, sizes?: { requestedTokens?: number; contextLength?: number }, options?: { cause?: unknown }) {
    super('CONTEXT_OVERFLOW', message, options);
    this.requestedTokens = sizes?.requestedTokens;
    this.contextLength = sizes?.contextLength;
  }
}
/** An option or argument is out of range or of the wrong type. */
export class InvalidParamError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_PARAM', message, options); }
}
/** A token id outside the model's vocabulary. */
export class InvalidTokenError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('INVALID_TOKEN', message, options); }
}
/** The operation was cancelled through its AbortSignal. */
export class AbortError extends GlmError {
  constructor(message = 'the operation was aborted', options?: { cause?: unknown }) { super('ABORTED', message, options); }
}
/** The model or session was disposed. */
export class DisposedError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('DISPOSED', message, options); }
}
export class EngineDeadError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('ENGINE_DEAD', message, options); }
}
/** Non-finite values where finite ones are required (e.g. every logit NaN). */
export class NumericalError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('NUMERICAL', message, options); }
}
/** The requested backend is not available in this build or on this machine. */
export class BackendUnavailableError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('BACKEND_UNAVAILABLE', message, options); }
}
/**
 * The native addon cannot be loaded: no prebuilt binary for this platform and no local build, or the
 * file is damaged or built for another platform. The message names the file and how to build from source.
 */
export class NativeAddonError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('NATIVE_ADDON', message, options); }
}
/**
 * A chat template failed to parse or render, called raise_exception, or exceeded its step, time or
 * output budget (a hostile template must not hang or exhaust the process, RELIABILITY A12).
 */
export class TemplateError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('TEMPLATE', message, options); }
}
/** The model's request queue is at maxQueuedRequests: retry later (HTTP 429). The model keeps serving. */
export class QueueFullError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('QUEUE_FULL', message, options); }
}
/** A broken invariant inside glm-node: please report it. */
export class InternalError extends GlmError {
  constructor(message: string, options?: { cause?: unknown }) { super('INTERNAL', message, options); }
}

const byCode: Record<GlmErrorCode, (message: string, cause: unknown) => GlmError> = {
  MODEL_FORMAT: (m, cause) => new ModelFormatError(m, { cause }),
  UNSUPPORTED_FORMAT: (m, cause) => new UnsupportedFormatError(m, { cause }),
  MODEL_LOAD: (m, cause) => new ModelLoadError(m, { cause }),
  INSUFFICIENT_MEMORY: (m, cause) => new InsufficientMemoryError(m, { cause }),
  CONTEXT_OVERFLOW: (m, cause) => new ContextOverflowError(m, undefined, { cause }),
  INVALID_PARAM: (m, cause) => new InvalidParamError(m, { cause }),
  INVALID_TOKEN: (m, cause) => new InvalidTokenError(m, { cause }),
  ABORTED: (m, cause) => new AbortError(m, { cause }),
  DISPOSED: (m, cause) => new DisposedError(m, { cause }),
  ENGINE_DEAD: (m, cause) => new EngineDeadError(m, { cause }),
  NUMERICAL: (m, cause) => new NumericalError(m, { cause }),
  BACKEND_UNAVAILABLE: (m, cause) => new BackendUnavailableError(m, { cause }),
  NATIVE_ADDON: (m, cause) => new NativeAddonError(m, { cause }),
  TEMPLATE: (m, cause) => new TemplateError(m, { cause }),
  QUEUE_FULL: (m, cause) => new QueueFullError(m, { cause }),
  CALIBRATION_FORMAT: (m, cause) => new CalibrationFormatError(m, 0, { cause }),
  INTERNAL: (m, cause) => new InternalError(m, { cause }),
};

/** A calibration file (`glm-node quantize --calibrate`) has a line that is not a sample; `line` is 1-based. */
export class CalibrationFormatError extends GlmError {
  readonly line: number;
  constructor(message: string, line: number, options?: { cause?: unknown }) {
    super('CALIBRATION_FORMAT', message, options);
    this.line = line;
  }
}

/** Converts anything thrown by the native binding into a GlmError (unknown errors become INTERNAL). */
export function toGlmError(error: unknown): GlmError {
  if (error instanceof GlmError) return error;
  if (error instanceof Error) {
    const code = (error as Error & { code?: unknown }).code;
    if (typeof code === 'string' && code in byCode) return byCode[code as GlmErrorCode](error.message, error);
    if (error instanceof TypeError) return new InvalidParamError(error.message, { cause: error });
    return new InternalError(error.message, { cause: error });
  }
  return new InternalError(String(error));
}
