// The model's vocabulary as the grammar engine reads it: every token's bytes, and which tokens a
// grammar's text never matches (added tokens: roles, <think>, <tool_call>, ...; a grammar names them
// with <[id]>). Built once per tokenizer.
import type { NativeGrammarVocabulary } from '../binding.js';
import type { Tokenizer } from '../tokenizer.js';

const built = new WeakMap<Tokenizer, Map<number, NativeGrammarVocabulary>>();

/** `vocabSize` is the model's (embedding rows): ids past the tokenizer's have no bytes and are never allowed. */
export function grammarVocabulary(tokenizer: Tokenizer, vocabSize: number): NativeGrammarVocabulary {
  let bySize = built.get(tokenizer);
  if (!bySize) built.set(tokenizer, (bySize = new Map()));
  const cached = bySize.get(vocabSize);
  if (cached) return cached;
  const parts: Uint8Array[] = [];
  const offsets = new Uint32Array(vocabSize + 1);
  let total = 0;
  for (let id = 0; id < vocabSize; id++) {
    const b = id < tokenizer.vocabSize ? tokenizer.tokenBytes(id) : new Uint8Array(0);
    parts.push(b);
    total += b.length;
    offsets[id + 1] = total;
  }
  const bytes = new Uint8Array(total);
  for (let id = 0; id < vocabSize; id++) bytes.set(parts[id]!, offsets[id]!);
  const tokenOnly = new Uint8Array(vocabSize);
  for (const t of tokenizer.addedTokens) if (t.id < vocabSize) tokenOnly[t.id] = 1;
  const v = { bytes, offsets, tokenOnly };
  bySize.set(vocabSize, v);
  return v;
}
