#!/usr/bin/python3
"""Trains the default model on the encoded corpus (encode.mjs output). Seeded, resumable, timed.

    /usr/bin/python3 scripts/train-default-model/train.py <corpus-dir> <tokenizer-dir> <run-dir> [--steps N]

Writes <run-dir>/ckpt.pt every --save-every steps (and at the end), <run-dir>/log.jsonl (one line per
logged step) and <run-dir>/summary.json. Rerunning the same command resumes from ckpt.pt.
"""
import argparse
import json
import math
import os
import sys
import time

# Environment fixed before torch starts (so the script re-executes itself once with it):
# - Large temporary tensors otherwise go through mmap/munmap on every allocation; on our sandboxed
#   machines each fresh page then costs a slow page fault and elementwise ops ran ~100x slower
#   (measured: a 1 MB multiply took 2.6 ms instead of 0.03 ms). Keeping them in the malloc heap avoids it.
# - Our 2 cores are shared with builds and tests: OpenMP threads that spin while waiting burn the CPU
#   the other thread needs (measured: the same step took 3-4x longer wall time with spinning threads).
_ENV = {'MALLOC_MMAP_THRESHOLD_': '33554432', 'MALLOC_TRIM_THRESHOLD_': '4294967296', 'MALLOC_TOP_PAD_': '268435456',
        'OMP_WAIT_POLICY': 'PASSIVE'}
if any(os.environ.get(k) != v for k, v in _ENV.items()):
    os.environ.update(_ENV)
    os.execv(sys.executable, [sys.executable] + sys.argv)

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import Config, Glm4MoeForCausalLM, MoE  # noqa: E402
from checkpoint_io import load_hf_folder  # noqa: E402

MODEL_SHAPE = dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                   intermediate_size=768, moe_intermediate_size=192, n_routed_experts=8, num_experts_per_tok=2,
                   n_shared_experts=1, routed_scaling_factor=2.5, first_k_dense_replace=1, max_position_embeddings=2048)
MTP_WEIGHT = 0.3          # DeepSeek-V3's lambda for the next-next-token loss
BIAS_UPDATE = 3e-3        # loss-free balancing step for the score-correction bias: DeepSeek-V3 uses
                          # 1e-3 over ~10^5 steps; our run has ~700, and 1e-3 had not balanced by step 150


def load_corpus(d):
    tokens = np.fromfile(os.path.join(d, 'tokens.u16'), dtype=np.uint16).astype(np.int64)
    loss = np.fromfile(os.path.join(d, 'loss.u8'), dtype=np.uint8)
    starts = np.fromfile(os.path.join(d, 'docs.u32'), dtype=np.uint32).astype(np.int64)
    return tokens, loss, starts


def make_batches(starts, tokens_per_batch, row_len, seed):
    """Shuffles the documents and packs them greedily into rows of row_len tokens, rows_per_batch =
    tokens_per_batch / row_len rows per batch. Random packing mixes task families in every batch
    (batches sorted by length would each hold one family, which made training oscillate). Returns a
    list of batches, each a list of rows of document indices. Deterministic in seed."""
    rng = np.random.default_rng(seed)
    lengths = np.diff(starts)
    rows, cur, used = [], [], 0
    for i in rng.permutation(len(lengths)):
        n = int(lengths[i])
        if n > row_len:
            continue
        if used + n > row_len:
            rows.append(cur)
            cur, used = [], 0
        cur.append(int(i))
        used += n
    if cur:
        rows.append(cur)
    per = max(1, tokens_per_batch // row_len)
    return [rows[k:k + per] for k in range(0, len(rows) - per + 1, per)]


def make_batch(rows, tokens, loss, starts, row_len, pad_id):
    """ids/positions/document ids/loss flags [B, row_len] for packed rows; padding has document id -1.
    Positions restart at 0 in every document."""
    B = len(rows)
    ids = np.full((B, row_len), pad_id, dtype=np.int64)
    pos = np.zeros((B, row_len), dtype=np.int64)
    doc = np.full((B, row_len), -1, dtype=np.int64)
    lm = np.zeros((B, row_len), dtype=np.float32)
    for b, row in enumerate(rows):
        o = 0
        for j, i in enumerate(row):
            s, e = int(starts[i]), int(starts[i + 1])
            n = e - s
            ids[b, o:o + n] = tokens[s:e]
            lm[b, o:o + n] = loss[s:e]
            pos[b, o:o + n] = np.arange(n)
            doc[b, o:o + n] = j
            o += n
    return torch.from_numpy(ids), torch.from_numpy(pos), torch.from_numpy(doc), torch.from_numpy(lm)


def attention_mask(doc):
    """[B, 1, T, T]: causal within a document; a padding position sees only itself (no empty rows)."""
    T = doc.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    same = (doc[:, :, None] == doc[:, None, :]) & (doc[:, :, None] >= 0)
    return ((same & causal) | torch.eye(T, dtype=torch.bool))[:, None]


def losses(model, ids, pos, doc, lm):
    """Masked next-token and next-next-token (MTP) cross-entropies, as (main, mtp, counts)."""
    mask = attention_mask(doc)
    logits, mtp_logits = model(ids, pos, mask)
    V = logits.shape[-1]
    # Trunk row t predicts t+1; counted when t+1 is a trained token of the same document.
    w1 = lm[:, 1:] * (doc[:, 1:] == doc[:, :-1]).float()
    l1 = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1), reduction='none')
    # MTP row t predicts t+2 (row t reads token t+1); counted when t+2 is trained and in t's document.
    w2 = lm[:, 2:] * (doc[:, 2:] == doc[:, :-2]).float()
    l2 = F.cross_entropy(mtp_logits[:, :-1].reshape(-1, V), ids[:, 2:].reshape(-1), reduction='none')
    n1, n2 = w1.sum(), w2.sum()
    main = (l1 * w1.reshape(-1)).sum() / n1.clamp(min=1)
    mtp = (l2 * w2.reshape(-1)).sum() / n2.clamp(min=1)
    return main, mtp, (float(n1), float(n2))


def update_balance_bias(model):
    """Loss-free balancing: raise the selection bias of under-loaded experts, lower over-loaded ones."""
    loads = []
    for moe in model.moe_layers:
        load = moe.last_load.float()
        moe.gate.e_score_correction_bias += BIAS_UPDATE * torch.sign(load.mean() - load)
        loads.append(load)
    return torch.stack(loads)


def param_groups(model, wd):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (decay if p.dim() >= 2 and 'embed' not in n else no_decay).append(p)
    return [{'params': decay, 'weight_decay': wd}, {'params': no_decay, 'weight_decay': 0.0}]


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('corpus')
    ap.add_argument('tokenizer')
    ap.add_argument('run')
    ap.add_argument('--steps', type=int, default=1200)
    ap.add_argument('--batch-tokens', type=int, default=6144, help='tokens per step, padding included')
    ap.add_argument('--row-len', type=int, default=512)
    ap.add_argument('--lr', type=float, default=1.5e-3)
    ap.add_argument('--warmup', type=int, default=60)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--save-every', type=int, default=50)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--max-minutes', type=float, default=0, help='stop (after saving) once this much time has run')
    ap.add_argument('--stop-after', type=int, default=0, help='end this phase after this many steps of the --steps schedule')
    ap.add_argument('--init-from', help="a previous phase's ckpt.pt: start from its weights and balancing biases "
                                        '(fresh optimizer and schedule); its time and tokens count towards the totals. '
                                        'An exported model folder works too (its BF16 weights)')
    ap.add_argument('--prior-summary', help='with --init-from <folder>: the summary.json of the run that made it, for the totals')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.run, exist_ok=True)

    tok_cfg = json.load(open(os.path.join(args.tokenizer, 'tokenizer.json')))
    vocab_size = max(t['id'] for t in tok_cfg['added_tokens']) + 1
    pad_id = next(t['id'] for t in tok_cfg['added_tokens'] if t['content'] == '<|endoftext|>')
    tokens, loss, starts = load_corpus(args.corpus)
    batches = make_batches(starts, args.batch_tokens, args.row_len, args.seed)
    steps_per_epoch = len(batches)

    torch.manual_seed(args.seed)
    cfg = Config(vocab_size=vocab_size, **MODEL_SHAPE)
    model = Glm4MoeForCausalLM(cfg)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    step, elapsed, cpu_seconds, tokens_seen = 0, 0.0, 0.0, 0
    prior = {'steps': 0, 'minutes': 0.0, 'cpu_minutes': 0.0, 'tokens_seen': 0}
    ckpt_path = os.path.join(args.run, 'ckpt.pt')
    if args.init_from and os.path.isdir(args.init_from):
        # An exported folder (BF16 weights): what remains of a run whose fp32 checkpoint is gone.
        # Its training totals come from that run's summary.json, if given.
        model.load_state_dict(load_hf_folder(args.init_from).state_dict())
        if args.prior_summary:
            p = json.load(open(args.prior_summary))
            prior = {'steps': p['earlier_phases']['steps'] + p['steps'], 'minutes': p['total_minutes'],
                     'cpu_minutes': p['total_cpu_minutes'], 'tokens_seen': p['total_tokens_seen']}
        print(f'starting from the exported model in {args.init_from}', flush=True)
    elif args.init_from:
        ck = torch.load(args.init_from)
        model.load_state_dict(ck['model'])
        p = ck.get('prior', {'steps': 0, 'minutes': 0.0, 'cpu_minutes': 0.0, 'tokens_seen': 0})
        prior = {'steps': p['steps'] + ck['step'], 'minutes': p['minutes'] + ck['elapsed'] / 60,
                 'cpu_minutes': p['cpu_minutes'] + ck['cpu_seconds'] / 60, 'tokens_seen': p['tokens_seen'] + ck['tokens_seen']}
        print(f'starting from {args.init_from} (step {ck["step"]})', flush=True)
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck['model'])
        opt.load_state_dict(ck['opt'])
        step, elapsed, cpu_seconds, tokens_seen = ck['step'], ck['elapsed'], ck['cpu_seconds'], ck['tokens_seen']
        prior = ck.get('prior', prior)
        print(f'resumed at step {step} ({elapsed / 60:.1f} min trained)', flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f'{n_params / 1e6:.2f} M parameters; {len(starts) - 1} documents; {steps_per_epoch} steps per epoch; '
          f'{args.steps} steps', flush=True)

    log = open(os.path.join(args.run, 'log.jsonl'), 'a')
    load_acc = torch.zeros(len(model.moe_layers), cfg.n_routed_experts)
    t_start = time.time() - elapsed
    last = min(args.steps, args.stop_after) if args.stop_after else args.steps
    while step < last:
        epoch, k = divmod(step, steps_per_epoch)
        if epoch > 0 and k == 0:
            batches = make_batches(starts, args.batch_tokens, args.row_len, args.seed + epoch)
        batch = make_batch(batches[k], tokens, loss, starts, args.row_len, pad_id)
        for g in opt.param_groups:
            g['lr'] = lr_at(step, args.steps, args.lr, args.warmup)
        t0, c0 = time.time(), time.process_time()
        model.train()
        main_loss, mtp_loss, (n1, n2) = losses(model, *batch)
        total = main_loss + MTP_WEIGHT * mtp_loss
        opt.zero_grad(set_to_none=True)
        total.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            loads = update_balance_bias(model)
        load_acc += loads
        step += 1
        dt = time.time() - t0
        cpu_seconds += time.process_time() - c0
        tokens_seen += int((batch[2] >= 0).sum())
        if step % 10 == 0 or step == 1:
            frac = loads / loads.sum(-1, keepdim=True)
            rec = {'step': step, 'loss': round(main_loss.item(), 4), 'mtp_loss': round(mtp_loss.item(), 4),
                   'lr': opt.param_groups[0]['lr'], 'grad_norm': round(float(gnorm), 3),
                   'tok_per_s': round(int((batch[2] >= 0).sum()) / dt), 'tokens_seen': tokens_seen, 'minutes': round((time.time() - t_start) / 60, 2), 'cpu_minutes': round(cpu_seconds / 60, 2),
                   'max_expert_share': round(float(frac.max()), 3), 'min_expert_share': round(float(frac.min()), 3)}
            log.write(json.dumps(rec) + '\n')
            log.flush()
            print(json.dumps(rec), flush=True)
        done = step >= last
        out_of_time = args.max_minutes and (time.time() - t_start) / 60 >= args.max_minutes
        if step % args.save_every == 0 or done or out_of_time:
            tmp = ckpt_path + '.tmp'
            torch.save({'model': model.state_dict(), 'opt': opt.state_dict(), 'step': step,
                        'elapsed': time.time() - t_start, 'cpu_seconds': cpu_seconds, 'tokens_seen': tokens_seen, 'prior': prior, 'config': cfg.to_dict(), 'args': vars(args)}, tmp)
            os.replace(tmp, ckpt_path)
        if out_of_time:
            print('stopping: --max-minutes reached (rerun to resume)', flush=True)
            return
    share = (load_acc / load_acc.sum(-1, keepdim=True)).tolist()
    summary = {'steps': step, 'minutes': round((time.time() - t_start) / 60, 1), 'cpu_minutes': round(cpu_seconds / 60, 1),
               'tokens_seen': tokens_seen, 'parameters': n_params, 'earlier_phases': prior,
               'total_minutes': round(prior['minutes'] + (time.time() - t_start) / 60, 1),
               'total_cpu_minutes': round(prior['cpu_minutes'] + cpu_seconds / 60, 1),
               'total_tokens_seen': prior['tokens_seen'] + tokens_seen,
               'final_loss': round(main_loss.item(), 4), 'final_mtp_loss': round(mtp_loss.item(), 4),
               'expert_share_per_moe_layer': [[round(x, 4) for x in l] for l in share],
               'correction_bias': [[round(float(x), 4) for x in m.gate.e_score_correction_bias] for m in model.moe_layers],
               'config': cfg.to_dict(), 'args': vars(args), 'torch': torch.__version__}
    json.dump(summary, open(os.path.join(args.run, 'summary.json'), 'w'), indent=1)
    print(json.dumps(summary), flush=True)


if __name__ == '__main__':
    main()
