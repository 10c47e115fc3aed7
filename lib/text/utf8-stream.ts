// Turns a stream of token byte strings into text chunks that are always valid UTF-8: a multi-byte
// character split across tokens is held back until it is complete, bytes that can never form a
// character become U+FFFD, and flush() releases whatever is left at the end (RELIABILITY C8).
export class Utf8StreamDecoder {
  #decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

  push(bytes: Uint8Array): string {
    return this.#decoder.decode(bytes, { stream: true });
  }

  flush(): string {
    return this.#decoder.decode();
  }
}
