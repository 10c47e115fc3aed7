#!/usr/bin/python3
"""PyTorch side of the export check and of the MTP evaluation, on an exported folder's BF16 weights.

    /usr/bin/python3 scripts/train-default-model/torch_logits.py <model-dir> <ids.json> <out.bin> [--mtp]

<ids.json> is a list of token-id lists. Writes float32 little-endian: for each sequence, its trunk
logits [T, V] (every position), and with --mtp also the MTP logits [T-1, V] (row t drafts token t+2
from the trunk's hidden at t and token t+1). With --mtp, <out.bin>.loads.json gets the number of
tokens routed to each expert of each MoE layer (the MTP layer last) over all sequences.
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checkpoint_io import load_hf_folder  # noqa: E402


def main():
    model_dir, ids_file, out_file = sys.argv[1:4]
    with_mtp = '--mtp' in sys.argv[4:]
    torch.set_num_threads(2)
    model = load_hf_folder(model_dir)
    seqs = json.load(open(ids_file))
    loads = None
    with open(out_file, 'wb') as f, torch.no_grad():
        for ids in seqs:
            x = torch.tensor([ids], dtype=torch.int64)
            T = x.shape[1]
            pos = torch.arange(T)[None]
            mask = torch.ones(T, T, dtype=torch.bool).tril()[None, None]
            logits, mtp = model(x, pos, mask)
            f.write(logits[0].numpy().astype('<f4').tobytes())
            if with_mtp:
                f.write(mtp[0].numpy().astype('<f4').tobytes())
                step = torch.stack([m.last_load for m in model.moe_layers])
                loads = step if loads is None else loads + step
    if with_mtp:
        json.dump(loads.tolist(), open(out_file + '.loads.json', 'w'))


if __name__ == '__main__':
    main()
