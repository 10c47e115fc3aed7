// Client side of server-sent events, for the server benchmark and tests: a response body read
// incrementally into events (frames split on a blank line; `event:` and `data:` lines, comments skipped).

export interface SseEvent {
  event: string | undefined;
  data: string;
}

/** One frame's event, or undefined for a frame without data (a comment, a keep-alive). */
export function parseSseFrame(frame: string): SseEvent | undefined {
  let event: string | undefined;
  const data: string[] = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith(':')) continue;
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data.push(line.slice(6));
  }
  return data.length > 0 ? { event, data: data.join('\n') } : undefined;
}

/** The events of a body as they arrive; leaving the loop early cancels the body. */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut: number;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        const e = parseSseFrame(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
        if (e) yield e;
      }
    }
    const last = parseSseFrame(buffer + decoder.decode());
    if (last) yield last;
  } finally {
    await reader.cancel().catch(() => {});  // an aborted fetch rejects here: nothing left to release
  }
}
