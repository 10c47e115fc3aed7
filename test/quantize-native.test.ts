// The C++ quantizer (cpp/engine/quantize.cc) against the JavaScript reference in lib/quantize.ts:
// without calibration every output file must be byte for byte the same (metric: equal bytes, budget
// zero: the native path is a faster implementation of the same choices, not a new quantizer). Also
// the calibration front end: a calibration file with a bad line is a CALIBRATION_FORMAT error naming
// it, and a calibrated checkpoint of the trained default model passes the loader's format checks and
// runs (the accuracy itself is the README's report, scripts/quant-accuracy.mjs).
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { CalibrationFormatError, Model } from '../lib/index.js';
import { calibrate, parseCalibrationFile, tokenizeSamples } from '../lib/calibrate.js';
import { Tokenizer } from '../lib/tokenizer.js';
import { quantizeCheckpoint, type QuantTarget } from '../lib/quantize.js';
import { ensureFixture, type VariantName } from './fixtures/variants.js';

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'glm-quant-native-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const defaultModel = path.join(root, 'models', 'tiny-default');

const CASES: Array<[VariantName, QuantTarget, QuantTarget?]> = [
  ['base', 'fp8'], ['base', 'fp8-block'], ['base', 'mxfp4'], ['base', 'mxfp4', 'fp8'], ['base', 'mxfp4', 'fp8-block'],
  ['glm45', 'fp8'], ['glm45', 'fp8-block'], ['glm45', 'mxfp4'], ['air', 'fp8-block'], ['air', 'fp8'], ['groups', 'mxfp4'],
];

describe.each(CASES)('native quantizer = JS reference: %s -> %s (from %s)', (name, to, from) => {
  test('every output file is identical', async () => {
    let src = await ensureFixture(name);
    if (from) {
      const mid = path.join(tmpRoot, `${name}-${from}`);
      await quantizeCheckpoint(src, mid, { to: from, engine: 'js' });
      src = mid;
    }
    const js = path.join(tmpRoot, `${name}-${from ?? ''}-${to}-js`), cc = path.join(tmpRoot, `${name}-${from ?? ''}-${to}-cc`);
    const rj = await quantizeCheckpoint(src, js, { to, engine: 'js' });
    const rc = await quantizeCheckpoint(src, cc, { to, engine: 'native', threads: 3 });
    const files = readdirSync(js).sort();
    expect(readdirSync(cc).sort()).toEqual(files);
    for (const f of files) expect(Buffer.compare(readFileSync(path.join(js, f)), readFileSync(path.join(cc, f))), f).toBe(0);
    expect(rc.quantizedTensors).toBe(rj.quantizedTensors);
    // The per-layer error report sums in another order (per row): equal to 1e-12.
    for (let i = 0; i < rj.layers.length; i++) expect(Math.abs(rc.layers[i]!.relRms - rj.layers[i]!.relRms)).toBeLessThanOrEqual(1e-12 * rj.layers[i]!.relRms);
  });
});

describe('calibration', () => {
  test('a calibration file with a bad line is a CALIBRATION_FORMAT error naming the line', async () => {
    const file = path.join(tmpRoot, 'bad.jsonl');
    writeFileSync(file, '{"text": "hello"}\n\n{"messages": [{"role": "user", "content": "hi"}]}\n{"text": 3}\n');
    const err = await calibrate(defaultModel, file).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CalibrationFormatError);
    expect((err as CalibrationFormatError).code).toBe('CALIBRATION_FORMAT');
    expect((err as CalibrationFormatError).line).toBe(4);
    expect((err as Error).message).toContain('bad.jsonl:4');
    writeFileSync(file, '{"text": "ok"}\nnot json\n');
    const err2 = await calibrate(defaultModel, file).catch((e: unknown) => e);
    expect((err2 as CalibrationFormatError).line).toBe(2);
  });

  test('the documented general calibration set parses and renders with a GLM chat template', async () => {
    const file = path.join(root, 'models', 'calibration', 'general.jsonl');
    const samples = parseCalibrationFile(readFileSync(file, 'utf8'), file);
    expect(samples.length).toBe(24);
    const seqs = tokenizeSamples(await Tokenizer.fromDir(defaultModel), samples, file, 2048);
    for (const s of seqs) expect(s.length).toBeGreaterThan(8);
  });

  test('statistics cover every quantizable trunk module; routed experts from their own tokens', async () => {
    const stats = await calibrate(defaultModel, path.join(root, 'models', 'calibration', 'tiny-default.jsonl'), { samples: 16, threads: 2 });
    expect(stats.samples).toBe(16);
    expect(stats.tokens).toBeGreaterThan(1000);
    // 4 trunk layers: 4 attention modules each, 3 dense MLP modules, 3 MoE layers x (8 experts + 1 shared) x 3.
    expect(stats.modules.size).toBe(4 * 4 + 3 + 3 * 9 * 3);
    const gate0 = stats.modules.get('model.layers.1.mlp.experts.0.gate_proj')!;
    const shared = stats.modules.get('model.layers.1.mlp.shared_experts.gate_proj')!;
    expect(gate0.length).toBe(256);
    for (const v of gate0) expect(Number.isFinite(v) && v >= 0).toBe(true);
    // An expert with its own statistics sees a subset of the tokens: not the layer's all-token array.
    if (!stats.fallbackExperts.includes('model.layers.1.mlp.experts.0')) expect(gate0).not.toBe(shared);
  });

  test.each(['fp8', 'fp8-block', 'mxfp4'] as QuantTarget[])('a calibrated %s checkpoint loads and runs on the CPU backend', async (to) => {
    const stats = await calibrate(defaultModel, path.join(root, 'models', 'calibration', 'tiny-default.jsonl'), { samples: 8, threads: 2 });
    const out = path.join(tmpRoot, `default-cal-${to}`);
    const r = await quantizeCheckpoint(defaultModel, out, { to, calibration: stats });
    expect(r.calibratedTensors).toBeGreaterThan(0);
    const model = await Model.load(out, { backend: 'cpu', threads: 2 });
    try {
      const s = model.createSession({ contextLength: 64 });
      const logits = await s.evaluate([992, 994, 10, 20, 30]);
      expect(logits.every((v) => Number.isFinite(v))).toBe(true);
    } finally {
      await model.dispose();
    }
  });
});
