# Glm4MoeForCausalLM in PyTorch, written from ../../../shared/glm45-spec.md (section 2 forward,
# section 3 MTP), with the MTP (nextn) layer trained jointly. Everything is fp32 during training; the
# export rounds to BF16. Names of parameters follow the Hugging Face checkpoint so export is a rename-free
# walk (see export.py), except the stacked expert weights, which export splits per expert.
import math

import torch
import torch.nn.functional as F
from torch import nn


class Config:
    """The config.json values the engine reads (spec section 1); one object for model and export."""

    def __init__(self, **kw):
        self.vocab_size = kw['vocab_size']
        self.hidden_size = kw.get('hidden_size', 256)
        self.num_hidden_layers = kw.get('num_hidden_layers', 4)
        self.num_attention_heads = kw.get('num_attention_heads', 4)
        self.num_key_value_heads = kw.get('num_key_value_heads', 2)
        self.head_dim = kw.get('head_dim', 64)
        self.partial_rotary_factor = kw.get('partial_rotary_factor', 0.5)
        self.rope_theta = kw.get('rope_theta', 1000000.0)
        self.rms_norm_eps = kw.get('rms_norm_eps', 1e-5)
        self.intermediate_size = kw.get('intermediate_size', 768)
        self.moe_intermediate_size = kw.get('moe_intermediate_size', 192)
        self.n_routed_experts = kw.get('n_routed_experts', 8)
        self.n_shared_experts = kw.get('n_shared_experts', 1)
        self.num_experts_per_tok = kw.get('num_experts_per_tok', 2)
        self.routed_scaling_factor = kw.get('routed_scaling_factor', 2.5)
        self.norm_topk_prob = True
        self.first_k_dense_replace = kw.get('first_k_dense_replace', 1)
        self.use_qk_norm = True
        self.attention_bias = True
        self.max_position_embeddings = kw.get('max_position_embeddings', 2048)
        self.num_nextn_predict_layers = 1
        self.initializer_range = 0.02

    def to_dict(self):
        return dict(self.__dict__)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rope_tables(cfg, positions):
    """cos/sin [N, r] for partial NeoX RoPE: r = head_dim * factor, inv_freq uses r in the exponent."""
    r = int(cfg.head_dim * cfg.partial_rotary_factor)
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, r, 2, dtype=torch.int64).float() / r))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x, cos, sin):
    """x [N, heads, d]; rotates the first r dims rotate_half style (pairs i, i + r/2), the rest pass."""
    r = cos.shape[-1]
    xr, xp = x[..., :r], x[..., r:]
    half = r // 2
    rotated = torch.cat([-xr[..., half:], xr[..., :half]], dim=-1)
    xr = xr * cos[:, None, :] + rotated * sin[:, None, :]
    return torch.cat([xr, xp], dim=-1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, d = cfg.hidden_size, cfg.head_dim
        self.q_proj = nn.Linear(h, cfg.num_attention_heads * d, bias=True)
        self.k_proj = nn.Linear(h, cfg.num_key_value_heads * d, bias=True)
        self.v_proj = nn.Linear(h, cfg.num_key_value_heads * d, bias=True)
        self.o_proj = nn.Linear(cfg.num_attention_heads * d, h, bias=False)
        self.q_norm = RMSNorm(d, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(d, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask):
        """x [B, T, H]; cos/sin [B*T, r]; mask [B, 1, T, T] boolean (True = may attend)."""
        cfg = self.cfg
        B, T, _ = x.shape
        nh, nkv, d = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q = self.q_norm(self.q_proj(x).view(B * T, nh, d))   # bias, then per-head norm, then RoPE
        k = self.k_norm(self.k_proj(x).view(B * T, nkv, d))
        v = self.v_proj(x).view(B, T, nkv, d)
        q = apply_rope(q, cos, sin).view(B, T, nh, d).transpose(1, 2)
        k = apply_rope(k, cos, sin).view(B, T, nkv, d).transpose(1, 2)
        v = v.transpose(1, 2)
        group = nh // nkv
        k = k.repeat_interleave(group, dim=1)                 # GQA: kv head j serves q heads j*group ..
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2)) * (d ** -0.5)
        scores = scores.masked_fill(~mask, float('-inf'))
        o = torch.softmax(scores, dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(B, T, nh * d))


class MLP(nn.Module):
    def __init__(self, h, inter):
        super().__init__()
        self.gate_proj = nn.Linear(h, inter, bias=False)
        self.up_proj = nn.Linear(h, inter, bias=False)
        self.down_proj = nn.Linear(inter, h, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Router(nn.Module):
    """mlp.gate: the fp32 router weight plus the selection-only score-correction bias (a buffer: it is
    moved by the loss-free balancing rule in train.py, never by gradients)."""

    def __init__(self, cfg):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cfg.n_routed_experts, cfg.hidden_size))
        self.register_buffer('e_score_correction_bias', torch.zeros(cfg.n_routed_experts))


class MoE(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        E, h, i = cfg.n_routed_experts, cfg.hidden_size, cfg.moe_intermediate_size
        self.gate = Router(cfg)
        # Routed experts stacked [E, out, in] so one layer holds them as three tensors; export splits.
        self.experts_gate = nn.Parameter(torch.empty(E, i, h))
        self.experts_up = nn.Parameter(torch.empty(E, i, h))
        self.experts_down = nn.Parameter(torch.empty(E, h, i))
        self.shared_experts = MLP(h, i * cfg.n_shared_experts)
        self.last_load = None  # tokens per expert in the latest forward (for balancing and reports)

    def forward(self, x):
        cfg = self.cfg
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        s = torch.sigmoid(x @ self.gate.weight.t())                       # unbiased scores
        idx = torch.topk(s.detach() + self.gate.e_score_correction_bias, cfg.num_experts_per_tok, dim=-1).indices
        w = s.gather(1, idx)
        w = w / (w.sum(-1, keepdim=True) + 1e-20) * cfg.routed_scaling_factor
        flat_e = idx.reshape(-1)
        self.last_load = torch.bincount(flat_e, minlength=cfg.n_routed_experts).detach()
        # Group the (token, expert) pairs by expert: one gather in, one matmul chain per expert on a
        # contiguous slice, one weighted scatter-add out (fewer full-size temporaries than per-expert
        # gathers, which dominated the step time on our CPUs).
        order = torch.argsort(flat_e)
        token_of = order // cfg.num_experts_per_tok
        xs = x.index_select(0, token_of)
        outs = []
        start = 0
        for e, n in enumerate(self.last_load.tolist()):
            if n == 0:
                continue
            xe = xs[start:start + n]
            he = F.silu(xe @ self.experts_gate[e].t()) * (xe @ self.experts_up[e].t())
            outs.append(he @ self.experts_down[e].t())
            start += n
        ys = torch.cat(outs) * w.reshape(-1)[order][:, None]
        out = self.shared_experts(x).index_add(0, token_of, ys)           # shared expert: weight 1, unscaled
        return out.reshape(shape)


class DecoderLayer(nn.Module):
    def __init__(self, cfg, dense):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg.hidden_size, cfg.intermediate_size) if dense else MoE(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class SharedHead(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class MTPLayer(DecoderLayer):
    """model.layers.N: enorm/hnorm/eh_proj in front of a full MoE decoder layer, then shared_head.norm.
    Its embedding and head are the trunk's during training (DeepSeek-V3 shares them); export writes
    copies under embed_tokens / shared_head.head, as GLM-4.5 checkpoints carry them."""

    def __init__(self, cfg):
        super().__init__(cfg, dense=False)
        self.enorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.hnorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.eh_proj = nn.Linear(2 * cfg.hidden_size, cfg.hidden_size, bias=False)
        self.shared_head = SharedHead(cfg)

    def forward_mtp(self, emb_next, h, cos, sin, mask):
        # Concat order: embedding first, hidden second (spec section 3.2; what the engines run).
        u = self.eh_proj(torch.cat([self.enorm(emb_next), self.hnorm(h)], dim=-1))
        return self.shared_head.norm(super().forward(u, cos, sin, mask))


class Glm4MoeModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(
            [DecoderLayer(cfg, dense=i < cfg.first_k_dense_replace) for i in range(cfg.num_hidden_layers)]
            + [MTPLayer(cfg)])
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Glm4MoeForCausalLM(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.model = Glm4MoeModel(cfg)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.init_weights()

    def init_weights(self):
        """GLM-4.5's init: N(0, 0.02) weights, zero biases, unit norms; attention and MLP output
        projections (o_proj, down_proj, experts' down) further scaled by 1/sqrt(2 * num_layers)."""
        std = self.cfg.initializer_range
        out_std = std / math.sqrt(2 * self.cfg.num_hidden_layers)
        for name, p in self.named_parameters():
            if name.endswith('bias'):
                nn.init.zeros_(p)
            elif p.dim() == 1:
                nn.init.ones_(p)                                   # RMSNorm weights
            elif name.endswith('o_proj.weight') or name.endswith('down_proj.weight') or name.endswith('experts_down'):
                nn.init.normal_(p, 0.0, out_std)
            else:
                nn.init.normal_(p, 0.0, std)

    @property
    def moe_layers(self):
        return [l.mlp for l in self.model.layers if isinstance(l.mlp, MoE)]

    def trunk(self, ids, positions, mask):
        """ids/positions [B, T]; returns the final hidden state after model.norm, [B, T, H]."""
        B, T = ids.shape
        cos, sin = rope_tables(self.cfg, positions.reshape(-1))
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers[:-1]:
            x = layer(x, cos, sin, mask)
        return self.model.norm(x), (cos, sin)

    def forward(self, ids, positions, mask):
        """Returns (trunk logits [B, T, V], MTP logits [B, T-1, V]). MTP row t reads the trunk hidden
        at t and the embedding of token t+1 at RoPE position t, and predicts token t+2."""
        h, (cos, sin) = self.trunk(ids, positions, mask)
        logits = self.lm_head(h)
        B, T, H = h.shape
        mtp = self.model.layers[-1]
        emb_next = self.model.embed_tokens(ids[:, 1:])
        cos_m = cos.view(B, T, -1)[:, :-1].reshape(B * (T - 1), -1)
        sin_m = sin.view(B, T, -1)[:, :-1].reshape(B * (T - 1), -1)
        z = mtp.forward_mtp(emb_next, h[:, :-1], cos_m, sin_m, mask[:, :, :-1, :-1])
        return logits, self.lm_head(z)
