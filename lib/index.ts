// The package entry: every value and every type a user meets in the README or in a public signature
// is importable from 'glm-node' (test/consumer-types.test.ts type-checks a consumer project against it).
import type { Model } from './model.js';

export { Model } from './model.js';
export type {
  Backend, LoadOptions, LoadProgress, ModelInfo, TokenizerInfo, GenerateOptions, GenerateResult, BatchItem,
} from './model.js';
export { Session } from './session.js';
export type { EvaluateOptions } from './session.js';
export type { KvCacheType, ServingOptions, ServingStats, LatencyPercentiles } from './serving-options.js';
export type { Generation, StreamChunk, TextGenerateResult, TokenLogprob, FinishReason } from './generation.js';
export type { TextGenerateOptions } from './generate-options.js';
export type { SpeculativeLoadOptions, SpeculativeGenerateOptions, SpeculativeStats } from './speculative.js';
export type { GenerateInput } from './prompt.js';
export type { ParsedToolCall } from './text/tool-calls.js';
export * from './errors.js';
export type { TokenInput } from './options.js';
export { Tokenizer, MAX_ENCODE_BYTES } from './tokenizer.js';
export type { EncodeOptions, DecodeOptions, AddedTokenInfo, ChatTemplateSource } from './tokenizer.js';
export { renderChat, renderChatTokens } from './chat-template.js';
export type {
  ChatMessage, ChatContent, TextContentPart, ToolCall, ToolDefinition, JSONSchema, JsonValue, RenderChatOptions, ChatTokens,
} from './chat-template.js';

// Named for users; derived from the signatures so they cannot drift from them.
/** Options of model.createSession. */
export type SessionOptions = NonNullable<Parameters<Model['createSession']>[0]>;
/** Options of model.evaluateBatch. */
export type EvaluateBatchOptions = NonNullable<Parameters<Model['evaluateBatch']>[1]>;
export { createServer, stripBillingHeader } from './server/index.js';
export type { GlmServer, ServerOptions, RequestLimits } from './server/index.js';
