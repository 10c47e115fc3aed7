// End-to-end loader hardening (RELIABILITY §1.6, table B and rows E3/E4/E5/E7): every malformed or
// hostile checkpoint folder must make Model.load reject with a typed GlmError whose message names the
// culprit (file, tensor or config key) — never crash, hang or load garbage — and a good model must
// still load and run afterwards.

import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  AbortError, GlmError, Model, ModelFormatError, ModelLoadError, UnsupportedFormatError, type GlmErrorCode,
} from '../lib/index.js';
import { ensureFixture } from './fixtures/variants.js';
import {
  copyFixture, editHeader, editJson, editTensors, entriesByOffset, padHeader, rawSafetensors, readSt, splitSafetensors,
} from './helpers/corrupt.js';

const CLASS_OF: Partial<Record<GlmErrorCode, new (...args: never[]) => GlmError>> = {
  MODEL_FORMAT: ModelFormatError,
  UNSUPPORTED_FORMAT: UnsupportedFormatError,
  MODEL_LOAD: ModelLoadError,
  ABORTED: AbortError,
};

const tmpRoot = mkdtempSync(path.join(os.tmpdir(), 'glm-loader-test-'));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

let baseFixture = '';
let airFixture = '';
beforeAll(async () => {
  baseFixture = await ensureFixture('base');
  airFixture = await ensureFixture('air');
}, 120_000);

let caseCount = 0;
/** A fresh copy of a fixture for one case: `dir` is the model folder, `caseDir` its private parent. */
function fresh(fixture: 'base' | 'air', label: string): { caseDir: string; dir: string } {
  return copyFixture(fixture === 'base' ? baseFixture : airFixture, tmpRoot, `${String(caseCount++).padStart(3, '0')}-${label}`);
}

const LOAD = { threads: 1, prefetch: false } as const;

/**
 * Loads `dir`, expects a rejection with `code` (and its class), and checks that the message mentions
 * each of `mentions` (the offending file, tensor or key). A surprise success disposes the model.
 */
async function expectLoadError(dir: string, code: GlmErrorCode, mentions: Array<string | RegExp>): Promise<GlmError> {
  let error: unknown;
  try {
    const m = await Model.load(dir, LOAD);
    await m.dispose();
  } catch (e) {
    error = e;
  }
  expect(error, `loading ${dir} should fail with ${code}`).toBeInstanceOf(GlmError);
  const g = error as GlmError;
  expect({ code: g.code, message: g.message }).toMatchObject({ code });
  const cls = CLASS_OF[code];
  if (cls) expect(g).toBeInstanceOf(cls);
  for (const m of mentions) {
    if (typeof m === 'string') expect(g.message).toContain(m);
    else expect(g.message).toMatch(m);
  }
  return g;
}

const ST = 'model.safetensors';
const SHARD1 = 'model-00001-of-00003.safetensors';
const SHARD2 = 'model-00002-of-00003.safetensors';
const SHARD3 = 'model-00003-of-00003.safetensors';
const INDEX = 'model.safetensors.index.json';

// ---------------------------------------------------------------------------------------------
// Table B1–B4: one safetensors file (the single-file `base` fixture) corrupted byte by byte.

describe('safetensors header and data section', () => {
  test('empty file', async () => {
    const { dir } = fresh('base', 'st-empty');
    writeFileSync(path.join(dir, ST), Buffer.alloc(0));
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, /0 bytes/]);
  });

  test('file shorter than the 8-byte length field', async () => {
    const { dir } = fresh('base', 'st-short');
    writeFileSync(path.join(dir, ST), Buffer.from([1, 2, 3, 4, 5]));
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, /5 bytes/]);
  });

  test('header length 2^64-1 (N + 8 overflows)', async () => {
    const { dir } = fresh('base', 'st-len-max');
    const f = path.join(dir, ST);
    const buf = readFileSync(f);
    buf.writeBigUInt64LE(2n ** 64n - 1n, 0);
    writeFileSync(f, buf);
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, '18446744073709551615']);
  });

  test('header length larger than the file', async () => {
    const { dir } = fresh('base', 'st-len-past-eof');
    const f = path.join(dir, ST);
    const buf = readFileSync(f);
    buf.writeBigUInt64LE(BigInt(buf.length - 8 + 1), 0);
    writeFileSync(f, buf);
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, String(buf.length - 8 + 1)]);
  });

  test('header that is not JSON', async () => {
    const { dir } = fresh('base', 'st-not-json');
    const { data } = splitSafetensors(path.join(dir, ST));
    writeFileSync(path.join(dir, ST), rawSafetensors(padHeader('this is not json {'), data));
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, /JSON/]);
  });

  test('header that is not UTF-8', async () => {
    const { dir } = fresh('base', 'st-not-utf8');
    const { headerText, data } = splitSafetensors(path.join(dir, ST));
    const at = headerText.indexOf('"model.norm.weight"');
    expect(at).toBeGreaterThan(0);
    // An invalid byte (0xFF) inside a tensor name; same length, so nothing else moves.
    const bytes = Buffer.from(headerText, 'utf8');
    bytes[at + 'model.norm'.length + 1] = 0xff;
    writeFileSync(path.join(dir, ST), rawSafetensors(bytes, data));
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, /UTF-8/]);
  });

  test('whitespace-padded header is accepted', async () => {
    const { dir } = fresh('base', 'st-ws-padded');
    const { headerText, data } = splitSafetensors(path.join(dir, ST));
    // Trailing JSON whitespace of every kind, beyond the writer's alignment padding (safetensors accepts it).
    writeFileSync(path.join(dir, ST), rawSafetensors(headerText.trimEnd() + '\r \t\n        \n', data));
    const m = await Model.load(dir, LOAD);
    try {
      const s = m.createSession({ contextLength: 8 });
      const logits = await s.evaluate([1, 2, 3]);
      expect(logits.length).toBe(m.vocabSize);
      expect(logits.every(Number.isFinite)).toBe(true);
    } finally {
      await m.dispose();
    }
  });

  test('truncated file (data section short)', async () => {
    const { dir } = fresh('base', 'st-truncated');
    const f = path.join(dir, ST);
    const { header } = splitSafetensors(f);
    const last = entriesByOffset(header).at(-1)!;
    truncateSync(f, readFileSync(f).length - 100);
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, last.name, /truncated|past the end/]);
  });

  test('trailing bytes after the data section', async () => {
    const { dir } = fresh('base', 'st-trailing');
    const f = path.join(dir, ST);
    writeFileSync(f, Buffer.concat([readFileSync(f), Buffer.from('PK\x03\x04 hidden payload!')]));
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, /trailing/]);
  });

  test('overlapping data offsets', async () => {
    const { dir } = fresh('base', 'st-overlap');
    let first = '', second = '';
    editHeader(path.join(dir, ST), (h) => {
      const [a, b] = entriesByOffset(h);
      first = a!.name; second = b!.name;
      // Same size, shifted back over its neighbour: the two tensors alias bytes.
      b!.entry.data_offsets = [b!.entry.data_offsets[0] - 2, b!.entry.data_offsets[1] - 2];
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, second, first, /overlap/]);
  });

  test('gap between tensors', async () => {
    const { dir } = fresh('base', 'st-gap');
    let first = '', second = '';
    editHeader(path.join(dir, ST), (h) => {
      const [a, b] = entriesByOffset(h);
      first = a!.name; second = b!.name;
      b!.entry.data_offsets = [b!.entry.data_offsets[0] + 2, b!.entry.data_offsets[1] + 2];
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, second, first, /gap/]);
  });

  test('offsets not starting at 0', async () => {
    const { dir } = fresh('base', 'st-not-zero');
    let first = '';
    editHeader(
      path.join(dir, ST),
      (h) => {
        const all = entriesByOffset(h);
        first = all[0]!.name;
        for (const { entry } of all) entry.data_offsets = [entry.data_offsets[0] + 8, entry.data_offsets[1] + 8];
      },
      undefined,
      (data) => Buffer.concat([Buffer.alloc(8), data]),  // the file stays exactly covered, just shifted
    );
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, first, /offset 0/]);
  });

  test('end - begin != numel x dtype size', async () => {
    const { dir } = fresh('base', 'st-size-mismatch');
    editHeader(path.join(dir, ST), (h) => {
      (h['model.norm.weight'] as { shape: number[] }).shape = [63];
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, 'model.norm.weight', /\[63\]/]);
  });

  for (const [label, dims] of [
    ['[2, 2^63]', '2,9223372036854775808'],
    ['[2, 2^64-2]', '2,18446744073709551614'],
    ['[2^40, 2^40] (each dim in range, product overflows)', '1099511627776,1099511627776'],
  ] as const) {
    test(`shape overflow ${label}`, async () => {
      const { dir } = fresh('base', 'st-shape-overflow');
      // The number is spliced in as text: JS numbers cannot hold it exactly.
      editHeader(
        path.join(dir, ST),
        (h) => { (h['model.norm.weight'] as { shape: unknown }).shape = ['@DIMS@']; },
        (t) => t.replace('["@DIMS@"]', `[${dims}]`),
      );
      await expectLoadError(dir, 'MODEL_FORMAT', [ST, 'model.norm.weight', /shape/]);
    });
  }

  test('duplicate tensor name in the header JSON', async () => {
    const { dir } = fresh('base', 'st-dup-name');
    const f = path.join(dir, ST);
    const { header, data } = splitSafetensors(f);
    // A first-wins or last-wins parser would silently pick one of two differing entries.
    const decoy = JSON.stringify({ dtype: 'BF16', shape: [64], data_offsets: [0, 128] });
    const text = JSON.stringify(header).replace(/^\{/, `{"model.norm.weight":${decoy},`);
    writeFileSync(f, rawSafetensors(padHeader(text), data));
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, /duplicate/, 'model.norm.weight']);
  });

  test('tensor entry named __metadata__', async () => {
    const { dir } = fresh('base', 'st-metadata-tensor');
    editHeader(path.join(dir, ST), (h) => {
      h.__metadata__ = { dtype: 'BF16', shape: [0], data_offsets: [0, 0] };
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, '__metadata__']);
  });

  test('__metadata__ with a non-string value', async () => {
    const { dir } = fresh('base', 'st-metadata-types');
    editHeader(path.join(dir, ST), (h) => {
      h.__metadata__ = { format: 'pt', num_layers: 4 };
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [ST, '__metadata__', 'num_layers']);
  });

  test('unknown dtype string', async () => {
    const { dir } = fresh('base', 'st-unknown-dtype');
    editHeader(path.join(dir, ST), (h) => {
      (h['model.norm.weight'] as { dtype: string }).dtype = 'Q4_K';
    });
    // Possibly a newer safetensors dtype: well-formed but not runnable here.
    await expectLoadError(dir, 'UNSUPPORTED_FORMAT', [ST, 'model.norm.weight', 'Q4_K']);
  });
});

// ---------------------------------------------------------------------------------------------
// Table B5, B9, E3: the folder and its index (the 3-shard `air` fixture).

describe('checkpoint folder and index', () => {
  const setShard = (dir: string, tensor: string, shard: string) =>
    editJson(path.join(dir, INDEX), (o) => { (o.weight_map as Record<string, string>)[tensor] = shard; });

  test('shard path ../x.safetensors', async () => {
    const { caseDir, dir } = fresh('air', 'idx-dotdot');
    copyFileSync(path.join(dir, SHARD3), path.join(caseDir, 'x.safetensors'));  // the target exists: only confinement stops it
    setShard(dir, 'lm_head.weight', '../x.safetensors');
    await expectLoadError(dir, 'MODEL_FORMAT', [INDEX, '../x.safetensors']);
  });

  test('absolute shard path', async () => {
    const { caseDir, dir } = fresh('air', 'idx-absolute');
    const outside = path.join(caseDir, 'x.safetensors');
    copyFileSync(path.join(dir, SHARD3), outside);
    setShard(dir, 'lm_head.weight', outside);
    await expectLoadError(dir, 'MODEL_FORMAT', [outside, /absolute/]);
  });

  test('shard that is a symlink to a file outside the folder', async () => {
    const { caseDir, dir } = fresh('air', 'idx-symlink-out');
    const outside = path.join(caseDir, 'outside.safetensors');
    copyFileSync(path.join(dir, SHARD2), outside);
    unlinkSync(path.join(dir, SHARD2));
    symlinkSync(outside, path.join(dir, SHARD2));
    await expectLoadError(dir, 'MODEL_FORMAT', [SHARD2, outside, /outside/]);
  });

  test('missing shard', async () => {
    const { dir } = fresh('air', 'idx-missing-shard');
    unlinkSync(path.join(dir, SHARD3));
    await expectLoadError(dir, 'MODEL_FORMAT', [SHARD3]);
  });

  test('tensor listed in the index but absent from its shard', async () => {
    const { dir } = fresh('air', 'idx-absent');
    // Drop a real tensor from shard 1 while the index still promises it there.
    const f = path.join(dir, SHARD1);
    const victim = readSt(f).tensors[1]!.name;
    editTensors(f, (st) => { st.tensors = st.tensors.filter((t) => t.name !== victim); });
    await expectLoadError(dir, 'MODEL_FORMAT', [INDEX, victim, SHARD1]);
  });

  test('tensor present in two shards', async () => {
    const { dir } = fresh('air', 'idx-two-shards');
    const dup = readSt(path.join(dir, SHARD1)).tensors[0]!;
    editTensors(path.join(dir, SHARD2), (st) => { st.tensors.push(dup); });
    await expectLoadError(dir, 'MODEL_FORMAT', [dup.name, SHARD1, SHARD2]);
  });

  test('duplicate weight_map key', async () => {
    const { dir } = fresh('air', 'idx-dup-key');
    const f = path.join(dir, INDEX);
    const text = readFileSync(f, 'utf8');
    const edited = text.replace(/"weight_map"\s*:\s*\{/, `"weight_map": {"lm_head.weight": "${SHARD1}",`);
    expect(edited).not.toBe(text);
    writeFileSync(f, edited);
    await expectLoadError(dir, 'MODEL_FORMAT', [INDEX, /duplicate/, 'lm_head.weight']);
  });

  test('pickle-only folder is UNSUPPORTED_FORMAT', async () => {
    const { dir } = fresh('base', 'pickle-only');
    unlinkSync(path.join(dir, ST));
    // A pickle header: it must never be opened, let alone unpickled.
    writeFileSync(path.join(dir, 'pytorch_model.bin'), Buffer.from([0x80, 0x02, 0x63, 0x6f, 0x73, 0x0a]));
    await expectLoadError(dir, 'UNSUPPORTED_FORMAT', ['pytorch_model.bin']);
  });

  test('missing folder is MODEL_LOAD', async () => {
    const missing = path.join(tmpRoot, 'does-not-exist');
    await expectLoadError(missing, 'MODEL_LOAD', [missing]);
  });

  test('a file instead of a folder is MODEL_LOAD', async () => {
    const { dir } = fresh('base', 'file-not-folder');
    await expectLoadError(path.join(dir, ST), 'MODEL_LOAD', [path.join(dir, ST), /director/]);
  });

  test('no weights at all', async () => {
    const { dir } = fresh('base', 'no-weights');
    unlinkSync(path.join(dir, ST));
    await expectLoadError(dir, 'MODEL_FORMAT', [dir, /safetensors/]);
  });
});

// ---------------------------------------------------------------------------------------------
// Table B6: config.json (valid `base` weights, bad config).

describe('config.json', () => {
  const CFG = 'config.json';
  const withConfig = async (label: string, edit: (c: Record<string, unknown>) => void) => {
    const { dir } = fresh('base', label);
    editJson(path.join(dir, CFG), edit);
    return dir;
  };

  test('missing config.json', async () => {
    const { dir } = fresh('base', 'cfg-missing');
    unlinkSync(path.join(dir, CFG));
    await expectLoadError(dir, 'MODEL_FORMAT', [CFG]);
  });

  test('config.json that is not JSON', async () => {
    const { dir } = fresh('base', 'cfg-not-json');
    writeFileSync(path.join(dir, CFG), '{"architectures": ["Glm4MoeForCausalLM"], oops');
    await expectLoadError(dir, 'MODEL_FORMAT', [CFG, /JSON/]);
  });

  test('duplicate key in config.json', async () => {
    const { dir } = fresh('base', 'cfg-dup-key');
    const f = path.join(dir, CFG);
    writeFileSync(f, readFileSync(f, 'utf8').replace(/^\{/, '{\n  "num_hidden_layers": 2,'));
    await expectLoadError(dir, 'MODEL_FORMAT', [CFG, /duplicate/, 'num_hidden_layers']);
  });

  test('unknown architecture is UNSUPPORTED_FORMAT', async () => {
    const dir = await withConfig('cfg-arch', (c) => { c.architectures = ['LlamaForCausalLM']; });
    await expectLoadError(dir, 'UNSUPPORTED_FORMAT', [CFG, 'LlamaForCausalLM']);
  });

  for (const key of ['rope_theta', 'attention_bias', 'num_key_value_heads', 'rms_norm_eps']) {
    test(`missing required key ${key} (no class defaults)`, async () => {
      const dir = await withConfig(`cfg-no-${key}`, (c) => { delete c[key]; });
      await expectLoadError(dir, 'MODEL_FORMAT', [CFG, key, /missing/]);
    });
  }

  const inconsistent: Array<[string, string, Record<string, unknown>]> = [
    ['num_experts_per_tok > n_routed_experts', 'num_experts_per_tok', { num_experts_per_tok: 9 }],
    ['first_k_dense_replace > num_hidden_layers', 'first_k_dense_replace', { first_k_dense_replace: 5 }],
    ['num_attention_heads % num_key_value_heads != 0', 'num_key_value_heads', { num_key_value_heads: 3 }],
    ['absurd num_hidden_layers 1e9', 'num_hidden_layers', { num_hidden_layers: 1e9 }],
    ['partial_rotary_factor 0', 'partial_rotary_factor', { partial_rotary_factor: 0 }],
    ['partial_rotary_factor 1.5', 'partial_rotary_factor', { partial_rotary_factor: 1.5 }],
    ['eos id >= vocab_size', 'eos_token_id', { eos_token_id: [1, 256] }],
    ['negative vocab_size', 'vocab_size', { vocab_size: -256 }],
  ];
  for (const [label, key, over] of inconsistent) {
    test(label, async () => {
      const dir = await withConfig(`cfg-${key}`, (c) => Object.assign(c, over));
      await expectLoadError(dir, 'MODEL_FORMAT', [CFG, key]);
    });
  }

  test('an unknown quantization_config method is UNSUPPORTED_FORMAT naming it', async () => {
    const dir = await withConfig('cfg-quant', (c) => {
      c.quantization_config = { quant_method: 'awq', bits: 4 };
    });
    await expectLoadError(dir, 'UNSUPPORTED_FORMAT', [CFG, 'quantization_config', '"awq"']);
  });

  test('rope_scaling non-null is UNSUPPORTED_FORMAT', async () => {
    const dir = await withConfig('cfg-rope-scaling', (c) => { c.rope_scaling = { type: 'yarn', factor: 4 }; });
    await expectLoadError(dir, 'UNSUPPORTED_FORMAT', [CFG, 'rope_scaling']);
  });
});

// ---------------------------------------------------------------------------------------------
// Table B7: tensors that disagree with config.json.

describe('checkpoint vs config', () => {
  const dropTensor = (label: string, name: string) => {
    const { dir } = fresh('base', label);
    let found = false;
    editTensors(path.join(dir, ST), (st) => {
      found = st.tensors.some((t) => t.name === name);
      st.tensors = st.tensors.filter((t) => t.name !== name);
    });
    expect(found).toBe(true);
    return dir;
  };

  test('missing attention bias', async () => {
    const name = 'model.layers.0.self_attn.q_proj.bias';
    await expectLoadError(dropTensor('ck-no-bias', name), 'MODEL_FORMAT', [name, /missing/]);
  });

  test("missing expert's down_proj", async () => {
    const name = 'model.layers.1.mlp.experts.3.down_proj.weight';
    await expectLoadError(dropTensor('ck-no-down', name), 'MODEL_FORMAT', [name, /missing/]);
  });

  test('unexpected extra expert', async () => {
    const { dir } = fresh('base', 'ck-extra-expert');
    const name = 'model.layers.1.mlp.experts.8.gate_proj.weight';  // n_routed_experts is 8
    editTensors(path.join(dir, ST), (st) => {
      const src = st.tensors.find((t) => t.name === 'model.layers.1.mlp.experts.7.gate_proj.weight')!;
      st.tensors.push({ ...src, name });
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [name, ST, /unexpected/]);
  });

  test('MTP layer present while num_nextn_predict_layers is 0', async () => {
    const { dir } = fresh('base', 'ck-unexpected-mtp');
    editJson(path.join(dir, 'config.json'), (c) => { c.num_nextn_predict_layers = 0; });
    // base has 4 layers; its MTP layer is model.layers.4.*
    await expectLoadError(dir, 'MODEL_FORMAT', [/model\.layers\.4\./, /unexpected/]);
  });

  test('wrong shape', async () => {
    const { dir } = fresh('base', 'ck-shape');
    const name = 'model.layers.0.self_attn.q_proj.weight';
    editHeader(path.join(dir, ST), (h) => {
      const e = h[name] as { shape: number[] };
      expect(e.shape).toEqual([128, 64]);
      e.shape = [64, 128];  // same byte count: only the binding can notice
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [name, '[64, 128]', '[128, 64]']);
  });

  test('I32 weight is MODEL_FORMAT', async () => {
    const { dir } = fresh('air', 'ck-i32');
    const name = 'model.layers.0.self_attn.q_proj.weight';
    editHeader(path.join(dir, SHARD1), (h) => {
      const e = h[name] as { dtype: string };
      expect(e.dtype).toBe('F32');
      e.dtype = 'I32';  // same element size as F32
    });
    await expectLoadError(dir, 'MODEL_FORMAT', [name, 'I32']);
  });

  test('F8_E4M3 weight is UNSUPPORTED_FORMAT', async () => {
    const { dir } = fresh('base', 'ck-fp8');
    const name = 'model.layers.1.mlp.experts.0.up_proj.weight';
    editTensors(path.join(dir, ST), (st) => {
      const t = st.tensors.find((x) => x.name === name)!;
      t.dtype = 'F8_E4M3';
      t.data = t.data.subarray(0, t.data.length / 2);  // BF16 -> 1 byte per element
    });
    await expectLoadError(dir, 'UNSUPPORTED_FORMAT', [name, 'F8_E4M3']);
  });
});

// ---------------------------------------------------------------------------------------------
// E4, E5, E7: cancellation and throwing callbacks.

describe('abort and progress callbacks', () => {
  test('an already-aborted signal rejects with ABORTED at once', async () => {
    const ac = new AbortController();
    ac.abort();
    let progressCalls = 0;
    const t0 = performance.now();
    const p = Model.load(baseFixture, { ...LOAD, signal: ac.signal, onProgress: () => { progressCalls++; } });
    await expect(p).rejects.toBeInstanceOf(AbortError);
    await expect(p).rejects.toMatchObject({ code: 'ABORTED' });
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(progressCalls).toBe(0);
  });

  test('aborting from the first progress report rejects with ABORTED', async () => {
    const ac = new AbortController();
    const stages: string[] = [];
    let settled = false;
    let reportsAfterSettle = 0;
    let error: unknown;
    try {
      const m = await Model.load(baseFixture, {
        threads: 1,
        prefetch: true,
        signal: ac.signal,
        onProgress: (r) => {
          stages.push(r.stage);
          if (settled) reportsAfterSettle++;
          if (stages.length === 1) ac.abort();
        },
      });
      settled = true;
      await m.dispose();
    } catch (e) {
      settled = true;
      error = e;
    }
    await new Promise((r) => setTimeout(r, 50));  // let late reports arrive, for the diagnostic below
    expect(stages.length).toBeGreaterThan(0);
    expect(error, `load resolved although the signal aborted during it (stages ${stages.join(',')}; ` +
      `${reportsAfterSettle} reported after the load settled)`).toBeInstanceOf(AbortError);
    expect((error as GlmError).code).toBe('ABORTED');
  });

  test('an onProgress that throws makes load reject with that error', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => { unhandled.push(reason); };
    process.on('unhandledRejection', onUnhandled);
    try {
      const boom = new Error('progress callback failed');
      let calls = 0;
      let settled = false;
      let callsAfterSettle = 0;
      let error: unknown;
      try {
        const m = await Model.load(baseFixture, {
          threads: 1,
          prefetch: true,
          onProgress: () => {
            calls++;
            if (settled) callsAfterSettle++;
            throw boom;
          },
        });
        settled = true;
        await m.dispose();
      } catch (e) {
        settled = true;
        error = e;
      }
      await new Promise((r) => setTimeout(r, 50));  // let late callbacks and stray rejections surface
      expect(calls).toBeGreaterThan(0);
      expect(error, `load resolved although onProgress threw (${calls} calls, ${callsAfterSettle} after the load settled)`).toBe(boom);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
    expect(unhandled).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// After everything above failed: the engine is still healthy.

describe('a good model after all failures', () => {
  const evaluateOnce = async (m: Model) => {
    const s = m.createSession({ contextLength: 16 });
    try {
      const logits = await s.evaluate([1, 2, 3]);
      expect(logits.length).toBe(m.vocabSize);
      expect(logits.every(Number.isFinite)).toBe(true);
      return logits;
    } finally {
      await s.dispose();
    }
  };

  test('the good fixture loads and evaluates finite logits of length vocab', async () => {
    const m = await Model.load(baseFixture, { threads: 2 });
    try {
      expect(m.vocabSize).toBe(256);
      await evaluateOnce(m);
    } finally {
      await m.dispose();
    }
  });

  test('the same good model loaded twice concurrently', async () => {
    const [a, b] = await Promise.all([Model.load(airFixture, { threads: 1 }), Model.load(airFixture, { threads: 1 })]);
    try {
      const [la, lb] = await Promise.all([evaluateOnce(a), evaluateOnce(b)]);
      expect(Array.from(lb)).toEqual(Array.from(la));
    } finally {
      await Promise.all([a.dispose(), b.dispose()]);
    }
  });
});
