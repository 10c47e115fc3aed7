export { Model } from './model.js';
export type { Backend, LoadOptions, LoadProgress, ModelInfo, TokenizerInfo, GenerateOptions, GenerateResult, BatchItem } from './model.js';
export { Session } from './session.js';
export type { EvaluateOptions } from './session.js';
export * from './errors.js';
export type { TokenInput } from './options.js';
export { Tokenizer, MAX_ENCODE_BYTES } from './tokenizer.js';
export type { EncodeOptions, DecodeOptions, AddedTokenInfo, ChatTemplateSource } from './tokenizer.js';
export { renderChat, renderChatTokens } from './chat-template.js';
export type {
  ChatMessage, ChatContent, TextContentPart, ToolCall, ToolDefinition, JSONSchema, JsonValue, RenderChatOptions, ChatTokens,
} from './chat-template.js';
