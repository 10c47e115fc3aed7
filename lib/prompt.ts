// Generation input → prompt token ids. A string is a raw completion prompt (user text: control-token
// spellings in it stay plain text); chat messages are rendered with the checkpoint's own chat template
// (renderChatTokens keeps control tokens where only the template wrote them); token ids pass through.
import { renderChatTokens, type ChatMessage } from './chat-template.js';
import { InvalidParamError, UnsupportedFormatError } from './errors.js';
import { describe, toTokenArray, type TokenInput } from './options.js';
import type { ToolDefinition } from './text/tool-calls.js';
import type { Tokenizer } from './tokenizer.js';

export type GenerateInput = string | readonly ChatMessage[] | TokenInput;

export interface PromptSource {
  readonly tokenizer: Tokenizer | undefined;
  readonly vocabSize: number;
}

/** The tokenizer a text feature needs, or a typed error saying the checkpoint has none. */
export function requireTokenizer(source: PromptSource): Tokenizer {
  if (!source.tokenizer) {
    throw new UnsupportedFormatError('this checkpoint has no tokenizer.json: text and chat input need one; pass token ids instead');
  }
  return source.tokenizer;
}

/** Chat messages (rendered with the chat template), as opposed to a prompt string or token ids. */
export function isChatInput(input: unknown): boolean {
  return Array.isArray(input) && input.length > 0 && input.every((m) => typeof m === 'object' && m !== null);
}

export function buildPrompt(source: PromptSource, input: unknown, opts: { tools: readonly ToolDefinition[]; thinking: boolean }): Int32Array {
  if (typeof input === 'string') {
    if (input.length === 0) throw new InvalidParamError('the prompt string is empty');
    if (opts.tools.length > 0) throw new InvalidParamError('tools need chat messages as input, not a raw prompt string');
    return Int32Array.from(requireTokenizer(source).encode(input, { special: false }));
  }
  if (input instanceof Uint32Array || input instanceof Int32Array || (Array.isArray(input) && input.every((x) => typeof x === 'number'))) {
    if (opts.tools.length > 0) throw new InvalidParamError('tools need chat messages as input, not token ids');
    return toTokenArray('input', input, source.vocabSize);
  }
  if (Array.isArray(input)) {
    if (input.length === 0) throw new InvalidParamError('messages must not be empty');
    const tokenizer = requireTokenizer(source);
    const template = tokenizer.chatTemplate;
    if (!template) {
      throw new UnsupportedFormatError('this checkpoint has no chat template (no chat_template in tokenizer_config.json, no chat_template.jinja): ' +
        'chat messages need one; pass a prompt string or token ids, or add the model\'s template as chat_template.jinja');
    }
    const { tokens } = renderChatTokens(tokenizer, template, input as ChatMessage[], {
      ...(opts.tools.length > 0 ? { tools: opts.tools } : {}),
      addGenerationPrompt: true,
      enableThinking: opts.thinking,
    });
    return Int32Array.from(tokens);
  }
  throw new InvalidParamError(`input must be a prompt string, an array of chat messages or token ids, got ${describe(input)}`);
}
