"""Independent functional reference of OpenAI CLIP's forward pass, written from the architecture description.

It reads an OpenAI-format state dict directly and uses OpenAI's sequence-first layout ([L, N, D]): patchify by
reshaping, class token + positional embedding, ln_pre, residual blocks (x + attn(ln_1(x)); x + mlp(ln_2(x)))
with q/k/v sliced from ``in_proj_weight``, QuickGELU MLP, LayerNorm computed in (at least) fp32, a causal mask
for text, EOT (argmax token id) pooling, ln_post on the class token and the ``proj`` / ``text_projection``
matrices. Everything runs in ``dtype`` (float64 by default, i.e. a higher-precision ground truth).
"""
from __future__ import annotations

import math

import torch


def _layer_norm(x, sd, prefix, eps=1e-5):
    ln_dtype = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(ln_dtype)
    mu = xf.mean(dim=-1, keepdim=True)
    var = ((xf - mu) ** 2).mean(dim=-1, keepdim=True)
    y = (xf - mu) / torch.sqrt(var + eps)
    y = y * sd[f"{prefix}.weight"].to(ln_dtype) + sd[f"{prefix}.bias"].to(ln_dtype)
    return y.to(x.dtype)


def _quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def _attention(x, sd, prefix, heads, mask, kv_tokens=None, deltas=None):
    """Multi-head self attention on x [L, N, D] with the packed in_proj of nn.MultiheadAttention.

    ``kv_tokens`` [M, D]: extra tokens in the keys and values only (visible to every query); ``deltas``: dict
    q / k / v / out -> dW added to that weight."""
    seq, batch, width = x.shape
    head_dim = width // heads
    deltas = deltas or {}
    w = sd[f"{prefix}.in_proj_weight"].to(x.dtype)
    b = sd[f"{prefix}.in_proj_bias"].to(x.dtype)
    weight = {name: w[i * width:(i + 1) * width] + deltas.get(name, 0) for i, name in enumerate("qkv")}
    kv_in = x
    if kv_tokens is not None:
        kv_in = torch.cat([x, kv_tokens.to(x.dtype)[:, None].expand(-1, batch, -1)], dim=0)
    q = x @ weight["q"].T + b[:width]
    k = kv_in @ weight["k"].T + b[width:2 * width]
    v = kv_in @ weight["v"].T + b[2 * width:]

    def split(t):  # [L, N, D] -> [N, H, L, hd]
        return t.reshape(t.shape[0], batch, heads, head_dim).permute(1, 2, 0, 3)

    q, k, v = split(q), split(k), split(v)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
    if mask is not None:
        extra = scores.shape[-1] - mask.shape[-1]
        scores = scores + torch.cat([mask, mask.new_zeros(mask.shape[0], extra)], dim=1).to(scores.dtype)
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v).permute(2, 0, 1, 3).reshape(seq, batch, width)
    w_out = sd[f"{prefix}.out_proj.weight"].to(x.dtype) + deltas.get("out", 0)
    return out @ w_out.T + sd[f"{prefix}.out_proj.bias"].to(x.dtype)


def _dpl_attention(x, sd, p, heads, mask, options, beta):
    """DPL's block attention, written from the paper (Eq. 3-7) and the official block's arrangement: the weighted sum
    over options c of MHA(ln_1 x, ln_1 kv_c), where kv_c inserts the option's prompt tokens E_c [M_c, D] after the
    first token of the text sequence (whose causal mask gets M_c leading all-visible columns: the causal mask's first
    column, SOS, is visible to every query, so every real token keeps its causal visibility) or after the image
    sequence; ``None`` is the option without prompt tokens."""
    seq, batch, width = x.shape
    h = _layer_norm(x, sd, f"{p}.ln_1")
    out = 0
    for option, weight in zip(options, beta):
        if option is None:
            out = out + weight * _attention(h, sd, f"{p}.attn", heads, mask)
            continue
        prompts = option.to(x.dtype)[:, None].expand(-1, batch, -1)
        if mask is None:
            kv = torch.cat([x, prompts], dim=0)
            m = None
        else:
            kv = torch.cat([x[:1], prompts, x[1:]], dim=0)
            m = torch.cat([mask.new_zeros(seq, option.shape[0]), mask], dim=1)
        out = out + weight * _kv_attention(h, _layer_norm(kv, sd, f"{p}.ln_1"), sd, f"{p}.attn", heads, m)
    return out


def _kv_attention(q_in, kv_in, sd, prefix, heads, mask):
    """MHA with queries from q_in [L, N, D] and keys / values from kv_in [L', N, D] (mask [L, L'] or None)."""
    seq, batch, width = q_in.shape
    head_dim = width // heads
    w = sd[f"{prefix}.in_proj_weight"].to(q_in.dtype)
    b = sd[f"{prefix}.in_proj_bias"].to(q_in.dtype)
    q = q_in @ w[:width].T + b[:width]
    k = kv_in @ w[width:2 * width].T + b[width:2 * width]
    v = kv_in @ w[2 * width:].T + b[2 * width:]

    def split(t):
        return t.reshape(t.shape[0], batch, heads, head_dim).permute(1, 2, 0, 3)

    q, k, v = split(q), split(k), split(v)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    out = (torch.softmax(scores, dim=-1) @ v).permute(2, 0, 1, 3).reshape(seq, batch, width)
    return out @ sd[f"{prefix}.out_proj.weight"].to(q_in.dtype).T + sd[f"{prefix}.out_proj.bias"].to(q_in.dtype)


def _mlp(x, sd, prefix, deltas=None):
    deltas = deltas or {}
    w_fc = sd[f"{prefix}.c_fc.weight"].to(x.dtype) + deltas.get("c_fc", 0)
    w_proj = sd[f"{prefix}.c_proj.weight"].to(x.dtype) + deltas.get("c_proj", 0)
    h = _quick_gelu(x @ w_fc.T + sd[f"{prefix}.c_fc.bias"].to(x.dtype))
    return h @ w_proj.T + sd[f"{prefix}.c_proj.bias"].to(x.dtype)


def _n_layers(sd, prefix):
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def _transformer(x, sd, prefix, mask, edits=None):
    """Residual blocks on x [L, N, D]. ``edits`` (all optional, keyed by block index):
    ``write``: layer -> (start, tokens [M, D]) overwritten at the block input; ``kv``: layer -> K/V-only tokens;
    ``attn_in`` / ``mlp_in``: layer -> matrix T applied to the attention / MLP input (z T);
    ``deltas``: layer -> {q/k/v/out/c_fc/c_proj: dW}; ``dpl``: layer -> (options [tokens or None], weights): DPL's
    block (:func:`_dpl_attention`)."""
    edits = edits or {}
    width = x.shape[-1]
    heads = width // 64
    for i in range(_n_layers(sd, f"{prefix}.resblocks.")):
        p = f"{prefix}.resblocks.{i}"
        if i in edits.get("write", {}):
            start, tokens = edits["write"][i]
            start = start % x.shape[0]
            t = tokens.to(x.dtype)[:, None].expand(-1, x.shape[1], -1)
            x = torch.cat([x[:start], t, x[start + t.shape[0]:]], dim=0)
        deltas = edits.get("deltas", {}).get(i)
        h = _layer_norm(x, sd, f"{p}.ln_1")
        if i in edits.get("attn_in", {}):
            h = h @ edits["attn_in"][i].to(h.dtype)
        if i in edits.get("dpl", {}):
            x = x + _dpl_attention(x, sd, p, heads, mask, *edits["dpl"][i])
        else:
            x = x + _attention(h, sd, f"{p}.attn", heads, mask, edits.get("kv", {}).get(i), deltas)
        h = _layer_norm(x, sd, f"{p}.ln_2")
        if i in edits.get("mlp_in", {}):
            h = h @ edits["mlp_in"][i].to(h.dtype)
        x = x + _mlp(h, sd, f"{p}.mlp", deltas)
    return x


def causal_mask(n, dtype=torch.float64):
    mask = torch.zeros(n, n, dtype=dtype)
    idx = torch.arange(n)
    mask[idx[None, :] > idx[:, None]] = float("-inf")  # token i may not attend to j > i
    return mask


def encode_image(sd, images, dtype=torch.float64, append=None, edits=None):
    """ViT image features [N, E] from images [N, 3, H, W]; ``append`` [M, D]: tokens concatenated after the
    positional embedding (before ln_pre); ``edits``: see :func:`_transformer`."""
    conv = sd["visual.conv1.weight"].to(dtype)
    width, _, patch, _ = conv.shape
    x = images.to(dtype)
    n, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    patches = x.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c * patch * patch)
    tokens = patches @ conv.reshape(width, -1).T                       # [N, g*g, width]
    cls = sd["visual.class_embedding"].to(dtype).expand(n, 1, width)
    x = torch.cat([cls, tokens], dim=1) + sd["visual.positional_embedding"].to(dtype)
    if append is not None:
        x = torch.cat([x, append.to(dtype).expand(n, -1, -1)], dim=1)
    x = _layer_norm(x, sd, "visual.ln_pre")
    x = x.permute(1, 0, 2)                                             # [L, N, D]
    x = _transformer(x, sd, "visual.transformer", None, edits)
    x = _layer_norm(x[0], sd, "visual.ln_post")                        # class token
    return x @ sd["visual.proj"].to(dtype)


def encode_text_embeddings(sd, embeddings, tokens, dtype=torch.float64, edits=None):
    """Text features [N, E] from token embeddings [N, L, D] and the token ids [N, L] (EOT = argmax)."""
    x = embeddings.to(dtype) + sd["positional_embedding"].to(dtype)
    x = x.permute(1, 0, 2)                                             # [L, N, D]
    x = _transformer(x, sd, "transformer", causal_mask(x.shape[0], dtype), edits)
    x = x.permute(1, 0, 2)
    x = _layer_norm(x, sd, "ln_final")
    eot = tokens.argmax(dim=-1)
    x = x[torch.arange(x.shape[0]), eot]
    return x @ sd["text_projection"].to(dtype)


def encode_text(sd, tokens, dtype=torch.float64):
    """Text features [N, E] from token ids [N, L]."""
    return encode_text_embeddings(sd, sd["token_embedding.weight"].to(dtype)[tokens], tokens, dtype)
