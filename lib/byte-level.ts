// The byte-level BPE alphabet (GPT-2's bytes_to_unicode, used by HF's ByteLevel pre-tokenizer and
// decoder, and so by GLM's tokenizer.json): each byte 0..255 is written as one printable code point so
// vocab entries are strings. Printable Latin-1 bytes map to themselves; the other 68 bytes (controls,
// space, 0x7F-0xA0, 0xAD) map to U+0100 upwards in byte order, which is why a leading space shows up
// as 'Ġ' (U+0120) and '\n' as 'Ċ' (U+010A).

function buildAlphabet(): string[] {
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  const out = new Array<string>(256);
  let next = 0;
  for (let b = 0; b < 256; b++) out[b] = String.fromCharCode(printable(b) ? b : 0x100 + next++);
  return out;
}

/** BYTE_TO_CHAR[b] is the one-character string standing for byte b in byte-level vocab entries. */
export const BYTE_TO_CHAR: readonly string[] = Object.freeze(buildAlphabet());

/** Inverse of BYTE_TO_CHAR, keyed by UTF-16 code unit (every alphabet character is one unit < 0x144). */
export const CHAR_TO_BYTE: ReadonlyMap<number, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c.charCodeAt(0), b]));

/** Byte-level string of the UTF-8 encoding of `text`. */
export function toByteLevel(text: string): string {
  let s = '';
  for (const b of Buffer.from(text, 'utf8')) s += BYTE_TO_CHAR[b]!;
  return s;
}

/** The bytes a byte-level string stands for, or undefined if it contains a character outside the alphabet. */
export function fromByteLevel(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token.charCodeAt(i));
    if (b === undefined) return undefined;
    out[i] = b;
  }
  return out;
}
