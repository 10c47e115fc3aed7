// A constrained generation's grammar, compiled by the engine against the model's vocabulary (which is
// handed over with the first compile), plus GLM's markup token ids the grammars refer to.
import type { NativeGrammar, NativeModel } from '../binding.js';
import { binding } from '../binding.js';
import { toGlmError } from '../errors.js';
import type { Tokenizer } from '../tokenizer.js';
import type { MarkupTokens } from './build.js';
import { grammarVocabulary } from './vocabulary.js';

export async function compileGrammar(native: NativeModel, tokenizer: Tokenizer, vocabSize: number, gbnf: string): Promise<NativeGrammar> {
  const vocabulary = native.hasGrammarVocabulary() ? null : grammarVocabulary(tokenizer, vocabSize);
  try {
    return await native.compileGrammar(gbnf, vocabulary);
  } catch (error) {
    throw toGlmError(error);
  }
}

export function schemaToGbnf(schemaJson: string, rulePrefix: string): string {
  try {
    return binding().jsonSchemaToGbnf(schemaJson, rulePrefix, true);
  } catch (error) {
    throw toGlmError(error);
  }
}

export function markupTokens(tokenizer: Tokenizer): MarkupTokens {
  const id = (t: string) => tokenizer.tokenToId(t);
  return {
    think: id('<think>'), endThink: id('</think>'), toolCall: id('<tool_call>'), endToolCall: id('</tool_call>'),
    argKey: id('<arg_key>'), endArgKey: id('</arg_key>'), argValue: id('<arg_value>'), endArgValue: id('</arg_value>'),
  };
}
