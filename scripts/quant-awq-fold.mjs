// The AWQ-style equalisation that scripts/quant-accuracy.mjs --alphas evaluates (README, "What was tried"):
// each MoE layer's ffn_norm (post_attention_layernorm) is divided by power-of-two per-channel scales s_c
// and every matrix that reads it (router, shared expert, routed experts' gate_proj and up_proj) has column
// c multiplied by s_c. Power-of-two factors make the folded BF16 model compute exactly what the original
// does; only the routed experts' later quantization sees the scaled columns.
// s_c = 2^round(log2(E[x_c²]^(α/2)) − mean over c), E[x_c²] from calibration (the shared expert's input:
// all tokens). Single-file BF16 checkpoints only (the default model); not part of the package.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const WEIGHTS = 'model.safetensors';

function bf16ToF32(u) {
  return new Float32Array(new Uint32Array([u << 16]).buffer)[0];
}

// Multiplies a BF16 value by 2^e, refusing anything that would round (overflow to inf or into subnormals).
function scaleBf16(u, e) {
  const f = Math.fround(bf16ToF32(u) * 2 ** e);
  const bits = new Uint32Array(new Float32Array([f]).buffer)[0];
  if ((bits & 0xffff) !== 0 || (f !== 0 && Math.abs(f) < 2 ** -126) || !Number.isFinite(f)) throw new Error(`folding 2^${e} into ${bf16ToF32(u)} is not exact`);
  return bits >>> 16;
}

/** Writes the folded copy of srcDir to dstDir; returns one line per layer (the exponents used). */
export function foldExpertInputScales(srcDir, dstDir, stats, alpha, layers) {
  mkdirSync(dstDir, { recursive: true });
  for (const f of readdirSync(srcDir)) if (f !== WEIGHTS) copyFileSync(path.join(srcDir, f), path.join(dstDir, f));
  const buf = Buffer.from(readFileSync(path.join(srcDir, WEIGHTS)));
  const headerBytes = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + headerBytes).toString('utf8'));
  const data = buf.subarray(8 + headerBytes);
  const bf16 = (name) => {
    const t = header[name];
    if (!t) return null;
    if (t.dtype !== 'BF16') throw new Error(`${name} is ${t.dtype}, expected BF16`);
    const [a, b] = t.data_offsets;
    return { values: new Uint16Array(data.buffer, data.byteOffset + a, (b - a) / 2), shape: t.shape };
  };
  const scaleColumns = (name, e) => {
    const t = bf16(name);
    if (!t) return false;
    const [rows, cols] = t.shape;
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t.values[r * cols + c] = scaleBf16(t.values[r * cols + c], e[c]);
    return true;
  };
  const report = [];
  for (const layer of layers) {
    const p = `model.layers.${layer}`;
    const meanSquares = stats.modules.get(`${p}.mlp.shared_experts.gate_proj`);
    if (!meanSquares) throw new Error(`no calibration statistics for ${p}'s MoE input`);
    const logs = Array.from(meanSquares, (x) => 0.5 * alpha * Math.log2(Math.max(x, 1e-12)));
    const centre = logs.reduce((s, x) => s + x, 0) / logs.length;
    const e = logs.map((x) => Math.round(x - centre));
    const norm = bf16(`${p}.post_attention_layernorm.weight`);
    for (let c = 0; c < e.length; c++) norm.values[c] = scaleBf16(norm.values[c], -e[c]);
    let matrices = 0;
    for (const m of ['mlp.gate', 'mlp.shared_experts.gate_proj', 'mlp.shared_experts.up_proj']) matrices += scaleColumns(`${p}.${m}.weight`, e) ? 1 : 0;
    for (let x = 0; scaleColumns(`${p}.mlp.experts.${x}.gate_proj.weight`, e); x++) {
      scaleColumns(`${p}.mlp.experts.${x}.up_proj.weight`, e);
      matrices += 2;
    }
    report.push(`${p}: scale exponents ${Math.min(...e)}..${Math.max(...e)} over ${matrices} matrices`);
  }
  writeFileSync(path.join(dstDir, WEIGHTS), buf);
  return report;
}
