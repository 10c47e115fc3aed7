#!/usr/bin/python3
"""Exports a training checkpoint to a Hugging Face Glm4MoeForCausalLM folder:

    /usr/bin/python3 scripts/train-default-model/export.py <run-dir>/ckpt.pt <tokenizer-dir> <out-dir>

config.json, model.safetensors (BF16; the correction bias F32), tokenizer.json, tokenizer_config.json
(with the chat template) and generation_config.json.
"""
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_io import hf_tensors, write_safetensors  # noqa: E402
from model import Config, Glm4MoeForCausalLM  # noqa: E402


def config_json(cfg, tokenizer_dir):
    added = {t['content']: t['id'] for t in json.load(open(os.path.join(tokenizer_dir, 'tokenizer.json')))['added_tokens']}
    eos = [added['<|endoftext|>'], added['<|user|>'], added['<|observation|>']]
    keys = ['hidden_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'head_dim',
            'partial_rotary_factor', 'rope_theta', 'rms_norm_eps', 'vocab_size', 'intermediate_size',
            'moe_intermediate_size', 'n_routed_experts', 'n_shared_experts', 'num_experts_per_tok',
            'routed_scaling_factor', 'norm_topk_prob', 'first_k_dense_replace', 'use_qk_norm', 'attention_bias',
            'max_position_embeddings', 'num_nextn_predict_layers', 'initializer_range']
    c = {'architectures': ['Glm4MoeForCausalLM'], 'model_type': 'glm4_moe'}
    c.update({k: getattr(cfg, k) for k in keys})
    c.update({'n_group': 1, 'topk_group': 1, 'hidden_act': 'silu', 'rope_scaling': None, 'tie_word_embeddings': False,
              'attention_dropout': 0.0, 'eos_token_id': eos, 'pad_token_id': added['<|endoftext|>'],
              'torch_dtype': 'bfloat16'})
    return c, eos


def main():
    ckpt_path, tokenizer_dir, out = sys.argv[1:4]
    ck = torch.load(ckpt_path)
    cfg = Config(**ck['config'])
    model = Glm4MoeForCausalLM(cfg)
    model.load_state_dict(ck['model'])
    os.makedirs(out, exist_ok=True)
    for f in os.listdir(out):
        os.remove(os.path.join(out, f))
    conf, eos = config_json(cfg, tokenizer_dir)
    json.dump(conf, open(os.path.join(out, 'config.json'), 'w'), indent=2)
    # Greedy by default: a tiny model's answers are exact strings (sums, tool arguments).
    json.dump({'eos_token_id': eos, 'pad_token_id': conf['pad_token_id'], 'do_sample': False},
              open(os.path.join(out, 'generation_config.json'), 'w'), indent=2)
    for f in ('tokenizer.json', 'tokenizer_config.json'):
        shutil.copyfile(os.path.join(tokenizer_dir, f), os.path.join(out, f))
    write_safetensors(os.path.join(out, 'model.safetensors'), hf_tensors(model))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    print(f'exported step {ck["step"]} to {out}: {size / 1e6:.1f} MB')


if __name__ == '__main__':
    main()
