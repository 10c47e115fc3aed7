// Bridges an AbortSignal to a native AbortFlag for the duration of one call.
import { binding, type NativeAbortFlag } from './binding.js';
import { AbortError, toGlmError } from './errors.js';

/**
 * Runs `fn` with a native abort flag wired to `signal`. An already-aborted signal rejects at once
 * without starting native work; the listener is removed when the call settles. Native errors are
 * converted to GlmErrors.
 */
export async function withAbort<T>(signal: AbortSignal | undefined, fn: (flag: NativeAbortFlag) => Promise<T>): Promise<T> {
  if (signal?.aborted) throw new AbortError(abortMessage(signal));
  const flag = new (binding().AbortFlag)();
  const onAbort = () => flag.abort();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await fn(flag);
  } catch (error) {
    throw toGlmError(error);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

function abortMessage(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? `aborted: ${reason.message}` : 'the operation was aborted';
}
