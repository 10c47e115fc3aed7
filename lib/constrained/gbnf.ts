// GBNF text helpers for composing grammars in lib/: quoting literals, and renaming rules of a user's
// grammar (its `root` becomes one rule of a larger grammar) without touching literals, character
// classes, token references or comments.
import { InvalidParamError } from '../errors.js';

/** A GBNF string literal matching exactly `text`. */
export function gbnfLiteral(text: string): string {
  let out = '"';
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === '\\') out += '\\\\';
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || c === 0x7f) out += `\\x${c.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return out + '"';
}

/** A reference to token `id` (grammar text never matches such tokens: roles, <think>, <tool_call>, ...). */
export function gbnfToken(id: number): string {
  return `<[${id}]>`;
}

export const RESERVED_RULE_PREFIX = 'glm-';

/**
 * `text` with every reference to and definition of rule `from` renamed `to`. Names starting with
 * RESERVED_RULE_PREFIX are refused (lib/ composes its own rules under that prefix).
 */
export function renameRule(text: string, from: string, to: string): string {
  let out = '';
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i]!;
    if (c === '"' || c === '[') {
      // A literal or a class runs to its unescaped closing character.
      const close = c === '"' ? '"' : ']';
      let j = i + 1;
      while (j < n && text[j] !== close) j += text[j] === '\\' ? 2 : 1;
      out += text.slice(i, j + 1);
      i = j + 1;
    } else if (c === '#') {
      const j = text.indexOf('\n', i);
      const end = j < 0 ? n : j;
      out += text.slice(i, end);
      i = end;
    } else if (c === '<' && text[i + 1] === '[') {
      const j = text.indexOf(']>', i);
      const end = j < 0 ? n : j + 2;
      out += text.slice(i, end);
      i = end;
    } else if (/[A-Za-z0-9_-]/.test(c)) {
      let j = i;
      while (j < n && /[A-Za-z0-9_-]/.test(text[j]!)) ++j;
      const name = text.slice(i, j);
      if (name.startsWith(RESERVED_RULE_PREFIX)) {
        throw new InvalidParamError(`grammar: rule names starting with "${RESERVED_RULE_PREFIX}" are reserved ("${name}")`);
      }
      out += name === from ? to : name;
      i = j;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}
