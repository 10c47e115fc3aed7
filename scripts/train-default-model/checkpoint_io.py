"""Hugging Face checkpoint folder <-> our PyTorch model: tensor naming (the real GLM-4.5 names, spec
section 4, MTP layer as model.layers.<num_hidden_layers>.*) and a minimal safetensors reader/writer."""
import json
import os
import struct

import numpy as np
import torch

from model import Config, Glm4MoeForCausalLM, MoE

# Stored in F32 like Hugging Face keeps it (_keep_in_fp32_modules_strict); everything else BF16.
F32_SUFFIXES = ('e_score_correction_bias',)


def hf_tensors(model):
    """(name, fp32 tensor) pairs in checkpoint naming; stacked experts are split per expert and the
    MTP layer gets copies of the embedding and head it shares with the trunk during training."""
    cfg = model.cfg
    out = [('model.embed_tokens.weight', model.model.embed_tokens.weight)]
    for i, layer in enumerate(model.model.layers):
        p = f'model.layers.{i}'
        for name, t in layer.named_parameters():
            if name.startswith('mlp.experts_'):
                continue
            out.append((f'{p}.{name}', t))
        if isinstance(layer.mlp, MoE):
            m = layer.mlp
            out.append((f'{p}.mlp.gate.e_score_correction_bias', m.gate.e_score_correction_bias))
            for e in range(cfg.n_routed_experts):
                out.append((f'{p}.mlp.experts.{e}.gate_proj.weight', m.experts_gate[e]))
                out.append((f'{p}.mlp.experts.{e}.up_proj.weight', m.experts_up[e]))
                out.append((f'{p}.mlp.experts.{e}.down_proj.weight', m.experts_down[e]))
        if i == cfg.num_hidden_layers:
            out.append((f'{p}.embed_tokens.weight', model.model.embed_tokens.weight))
            out.append((f'{p}.shared_head.head.weight', model.lm_head.weight))
    out.append(('model.norm.weight', model.model.norm.weight))
    out.append(('lm_head.weight', model.lm_head.weight))
    return [(n, t.detach().float().contiguous()) for n, t in out]


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors:
        if name.endswith(F32_SUFFIXES):
            dtype, data = 'F32', t.numpy().astype('<f4').tobytes()
        else:
            # torch's float -> bfloat16 conversion rounds to nearest even.
            dtype, data = 'BF16', t.to(torch.bfloat16).view(torch.int16).numpy().astype('<i2').tobytes()
        header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header['__metadata__'] = {'format': 'pt'}
    raw = json.dumps(header, separators=(',', ':')).encode()
    raw += b' ' * (-len(raw) % 8)  # data starts 8-byte aligned
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(raw)))
        f.write(raw)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """name -> fp32 torch tensor (BF16 widened exactly)."""
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, h in header.items():
        if name == '__metadata__':
            continue
        b, e = h['data_offsets']
        if h['dtype'] == 'BF16':
            bits = np.frombuffer(data[b:e], dtype='<u2').astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif h['dtype'] == 'F32':
            arr = np.frombuffer(data[b:e], dtype='<f4')
        else:
            raise ValueError(f'{name}: unsupported dtype {h["dtype"]}')
        out[name] = torch.from_numpy(arr.copy()).reshape(h['shape'])
    return out


def load_hf_folder(d):
    """Builds our model from an exported folder (config.json + model.safetensors). The MTP layer's
    embed_tokens / shared_head.head must equal the trunk's, since our model shares them."""
    c = json.load(open(os.path.join(d, 'config.json')))
    cfg = Config(**{k: v for k, v in c.items() if k in Config(vocab_size=1).__dict__})
    model = Glm4MoeForCausalLM(cfg)
    t = read_safetensors(os.path.join(d, 'model.safetensors'))
    mine = dict(hf_tensors(model))
    if set(mine) != set(t):
        raise ValueError(f'tensor names differ: missing {sorted(set(mine) - set(t))[:5]}, extra {sorted(set(t) - set(mine))[:5]}')
    N = cfg.num_hidden_layers
    assert torch.equal(t[f'model.layers.{N}.embed_tokens.weight'], t['model.embed_tokens.weight'])
    assert torch.equal(t[f'model.layers.{N}.shared_head.head.weight'], t['lm_head.weight'])
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(t['model.embed_tokens.weight'])
        model.model.norm.weight.copy_(t['model.norm.weight'])
        model.lm_head.weight.copy_(t['lm_head.weight'])
        for i, layer in enumerate(model.model.layers):
            p = f'model.layers.{i}'
            for name, param in layer.named_parameters():
                if not name.startswith('mlp.experts_'):
                    param.copy_(t[f'{p}.{name}'])
            if isinstance(layer.mlp, MoE):
                m = layer.mlp
                m.gate.e_score_correction_bias.copy_(t[f'{p}.mlp.gate.e_score_correction_bias'])
                for e in range(cfg.n_routed_experts):
                    m.experts_gate[e].copy_(t[f'{p}.mlp.experts.{e}.gate_proj.weight'])
                    m.experts_up[e].copy_(t[f'{p}.mlp.experts.{e}.up_proj.weight'])
                    m.experts_down[e].copy_(t[f'{p}.mlp.experts.{e}.down_proj.weight'])
    return model.eval()
