export { Model } from './model.js';
export type { Backend, LoadOptions, LoadProgress, ModelInfo, GenerateOptions, GenerateResult, BatchItem } from './model.js';
export { Session } from './session.js';
export type { EvaluateOptions } from './session.js';
export * from './errors.js';
export type { TokenInput } from './options.js';
