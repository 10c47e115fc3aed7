// Calibration for `glm-node quantize --calibrate <file.jsonl>`: reads the calibration file (policy and
// validation here), tokenizes it with the checkpoint's own tokenizer and chat template, and has the
// engine run the unquantized model over it, collecting per-input-channel activation statistics for
// every quantizable Linear (cpp/engine/quantize_calibrate.h). The numbers never touch the JS thread.
//
// File format, one JSON object per line (blank lines ignored):
//   {"messages": [{"role": "user", "content": "..."}, ...], "tools"?: [...]}   a chat, rendered with the
//                                                                              checkpoint's template
//   {"text": "..."}                                                            plain text (special-token
//                                                                              text becomes special tokens)
import { readFile } from 'node:fs/promises';
import { binding, type NativeAbortFlag, type NativeCalibrationStats } from './binding.js';
import { renderChatTokens } from './chat-template.js';
import { AbortError, CalibrationFormatError, InvalidParamError, toGlmError } from './errors.js';
import { Tokenizer } from './tokenizer.js';

export interface CalibrationOptions {
  /** Use at most this many samples (the first N lines). Default: all. */
  samples?: number;
  /** Tokens per sample at most (longer ones are cut). Default 2048 (and the model's context). */
  maxTokensPerSample?: number;
  /** A routed expert reached by fewer calibration tokens uses statistics over all tokens. Default 16. */
  minExpertTokens?: number;
  /**
   * Collect full input covariances (GPTQ-style feedback) when they take at most this many bytes in all
   * (default 2 GiB; 0: never). Small models fit; GLM-4.5's experts do not, and get per-channel statistics.
   */
  covarianceBudgetBytes?: number;
  threads?: number;
  signal?: AbortSignal;
  /** Samples run so far of the total. */
  onProgress?: (done: number, total: number) => void;
}

export interface CalibrationStats {
  /** Module ("model.layers.3.mlp.experts.5.down_proj") -> mean squared activation per input channel. */
  modules: Map<string, Float32Array>;
  /** Module -> E[x xᵀ] [C, C] of its input, when covariances were collected. */
  covariances: Map<string, Float32Array>;
  tokens: number;
  samples: number;
  /** Routed experts that saw fewer than minExpertTokens tokens (they use the all-token statistics). */
  fallbackExperts: string[];
}

interface Sample { messages?: unknown; tools?: unknown; text?: unknown }

/** Parses the calibration file into samples; any malformed line is a CalibrationFormatError naming it. */
export function parseCalibrationFile(content: string, file: string): { line: number; sample: Sample }[] {
  const out: { line: number; sample: Sample }[] = [];
  const lines = content.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!.trim();
    if (raw === '') continue;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      throw new CalibrationFormatError(`${where}: not JSON (${(e as Error).message})`, i + 1);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CalibrationFormatError(`${where}: expected an object with "messages" or "text"`, i + 1);
    const s = v as Sample;
    if (s.text !== undefined) {
      if (typeof s.text !== 'string' || s.text.length === 0) throw new CalibrationFormatError(`${where}: "text" must be a non-empty string`, i + 1);
    } else if (Array.isArray(s.messages)) {
      if (s.messages.length === 0) throw new CalibrationFormatError(`${where}: "messages" is empty`, i + 1);
      for (const m of s.messages) {
        const msg = m as { role?: unknown; content?: unknown };
        if (typeof m !== 'object' || m === null || typeof msg.role !== 'string') {
          throw new CalibrationFormatError(`${where}: every message needs a string "role"`, i + 1);
        }
      }
      if (s.tools !== undefined && !Array.isArray(s.tools)) throw new CalibrationFormatError(`${where}: "tools" must be an array`, i + 1);
    } else {
      throw new CalibrationFormatError(`${where}: expected "messages" (an array) or "text" (a string)`, i + 1);
    }
    out.push({ line: i + 1, sample: s });
  }
  if (out.length === 0) throw new CalibrationFormatError(`${file}: no samples`, 0);
  return out;
}

/** Token ids of each sample (chat rendered with the checkpoint's template). */
export function tokenizeSamples(tokenizer: Tokenizer, samples: { line: number; sample: Sample }[], file: string, maxTokens: number): Int32Array[] {
  return samples.map(({ line, sample }) => {
    let ids: number[];
    if (typeof sample.text === 'string') {
      ids = tokenizer.encode(sample.text, { special: true });
    } else {
      const template = tokenizer.chatTemplate;
      if (!template) throw new CalibrationFormatError(`${file}:${line}: a chat sample, but the checkpoint has no chat template`, line);
      try {
        ids = renderChatTokens(tokenizer, template, sample.messages as never, { tools: sample.tools as never }).tokens;
      } catch (e) {
        throw new CalibrationFormatError(`${file}:${line}: cannot render the chat: ${(e as Error).message}`, line, { cause: e });
      }
    }
    if (ids.length === 0) throw new CalibrationFormatError(`${file}:${line}: the sample has no tokens`, line);
    return Int32Array.from(ids.slice(0, maxTokens));
  });
}

/** Runs the unquantized checkpoint in `dir` over the calibration file and returns per-module statistics. */
export async function calibrate(dir: string, file: string, opts: CalibrationOptions = {}): Promise<CalibrationStats> {
  const samplesWanted = opts.samples ?? Infinity;
  if (!(samplesWanted >= 1)) throw new InvalidParamError('samples must be >= 1');
  const minExpertTokens = opts.minExpertTokens ?? 16;
  if (!Number.isInteger(minExpertTokens) || minExpertTokens < 0) throw new InvalidParamError('minExpertTokens must be an integer >= 0');
  const config = JSON.parse(await readFile(`${dir}/config.json`, 'utf8')) as { max_position_embeddings?: number };
  const maxTokens = Math.min(opts.maxTokensPerSample ?? 2048, config.max_position_embeddings ?? 2048);
  const parsed = parseCalibrationFile(await readFile(file, 'utf8'), file).slice(0, samplesWanted);
  const tokenizer = await Tokenizer.fromDir(dir);
  return calibrateTokens(dir, tokenizeSamples(tokenizer, parsed, file, maxTokens), opts);
}

/** The same from token ids (one sequence per sample; e.g. a checkpoint without a tokenizer). */
export async function calibrateTokens(dir: string, sequences: Int32Array[], opts: CalibrationOptions = {}): Promise<CalibrationStats> {
  const minExpertTokens = opts.minExpertTokens ?? 16;
  if (!Number.isInteger(minExpertTokens) || minExpertTokens < 0) throw new InvalidParamError('minExpertTokens must be an integer >= 0');
  if (sequences.length === 0) throw new InvalidParamError('calibration needs at least one sequence');
  if (opts.signal?.aborted) throw new AbortError();

  const b = binding();
  let flag: NativeAbortFlag | undefined;
  const onAbort = () => flag?.abort();
  if (opts.signal) {
    flag = new b.AbortFlag();
    opts.signal.addEventListener('abort', onAbort, { once: true });
  }
  let native: NativeCalibrationStats;
  try {
    native = await b.collectActivationStats(dir, sequences, { threads: opts.threads ?? 0, minExpertTokens, covarianceBudgetBytes: opts.covarianceBudgetBytes ?? 2 ** 31 }, flag, opts.onProgress);
  } catch (e) {
    throw toGlmError(e);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  // Modules reading the same input share one array.
  const modules = new Map<string, Float32Array>(), covariances = new Map<string, Float32Array>();
  for (const [m, key] of Object.entries(native.modules)) {
    modules.set(m, native.inputs[key]!);
    const cov = native.covariances[key];
    if (cov) covariances.set(m, cov);
  }
  const fallbackExperts = Object.entries(native.expertTokens).filter(([, n]) => n < minExpertTokens).map(([p]) => p).sort();
  return { modules, covariances, tokens: native.tokens, samples: sequences.length, fallbackExperts };
}
