// Bridges an AbortSignal to a native AbortFlag for the duration of one call.
import { binding, type NativeAbortFlag } from './binding.js';
import { AbortError, toGlmError } from './errors.js';

/**
 * Runs `fn` with a native abort flag wired to `signal`. An already-aborted signal rejects at once
 * without starting native work; the listener is removed when the call settles. Native errors are
 * converted to GlmErrors, and an abort caused by `signal` carries the signal's reason as `cause`.
 */
export async function withAbort<T>(signal: AbortSignal | undefined, fn: (flag: NativeAbortFlag) => Promise<T>): Promise<T> {
  if (signal?.aborted) throw abortErrorFor(signal);
  const flag = new (binding().AbortFlag)();
  const onAbort = () => flag.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn(flag);
  } catch (error) {
    throw abortReasonOf(toGlmError(error), signal);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * The AbortError for an aborted `signal`: `cause` is `signal.reason` (what `ac.abort(reason)` was given,
 * or the DOMException AbortError / TimeoutError the platform made), as Node's own APIs do, so a caller
 * can tell its own reasons apart. The code stays ABORTED whatever the reason. `what` says what was cut
 * short (the native message, when native work noticed the abort).
 */
export function abortErrorFor(signal: AbortSignal, what = 'the operation was aborted'): AbortError {
  const reason: unknown = signal.reason;
  const why = reason instanceof Error ? reason.message : typeof reason === 'string' ? reason : '';
  // The default reason's message ("This operation was aborted") would only repeat ours.
  const plain = why === '' || (reason instanceof Error && reason.name === 'AbortError');
  return new AbortError(plain ? what : `${what}: ${why}`, { cause: reason });
}

/**
 * An ABORTED error from native work that `signal` cancelled gets the signal's reason (the native error
 * knows only that its flag was raised, not why). Other errors pass through unchanged.
 */
export function abortReasonOf(error: unknown, signal: AbortSignal | undefined): unknown {
  if (signal?.aborted && error instanceof AbortError) return abortErrorFor(signal, error.message);
  return error;
}
