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


def _attention(x, sd, prefix, heads, mask):
    """Multi-head self attention on x [L, N, D] with the packed in_proj of nn.MultiheadAttention."""
    seq, batch, width = x.shape
    head_dim = width // heads
    w = sd[f"{prefix}.in_proj_weight"].to(x.dtype)
    b = sd[f"{prefix}.in_proj_bias"].to(x.dtype)
    q = x @ w[:width].T + b[:width]
    k = x @ w[width:2 * width].T + b[width:2 * width]
    v = x @ w[2 * width:].T + b[2 * width:]

    def split(t):  # [L, N, D] -> [N, H, L, hd]
        return t.reshape(seq, batch, heads, head_dim).permute(1, 2, 0, 3)

    q, k, v = split(q), split(k), split(v)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(head_dim)
    if mask is not None:
        scores = scores + mask.to(scores.dtype)
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ v).permute(2, 0, 1, 3).reshape(seq, batch, width)
    return out @ sd[f"{prefix}.out_proj.weight"].to(x.dtype).T + sd[f"{prefix}.out_proj.bias"].to(x.dtype)


def _mlp(x, sd, prefix):
    h = x @ sd[f"{prefix}.c_fc.weight"].to(x.dtype).T + sd[f"{prefix}.c_fc.bias"].to(x.dtype)
    h = _quick_gelu(h)
    return h @ sd[f"{prefix}.c_proj.weight"].to(x.dtype).T + sd[f"{prefix}.c_proj.bias"].to(x.dtype)


def _n_layers(sd, prefix):
    return len({k[len(prefix):].split(".")[0] for k in sd if k.startswith(prefix)})


def _transformer(x, sd, prefix, mask):
    width = x.shape[-1]
    heads = width // 64
    for i in range(_n_layers(sd, f"{prefix}.resblocks.")):
        p = f"{prefix}.resblocks.{i}"
        x = x + _attention(_layer_norm(x, sd, f"{p}.ln_1"), sd, f"{p}.attn", heads, mask)
        x = x + _mlp(_layer_norm(x, sd, f"{p}.ln_2"), sd, f"{p}.mlp")
    return x


def causal_mask(n, dtype=torch.float64):
    mask = torch.zeros(n, n, dtype=dtype)
    idx = torch.arange(n)
    mask[idx[None, :] > idx[:, None]] = float("-inf")  # token i may not attend to j > i
    return mask


def encode_image(sd, images, dtype=torch.float64):
    """ViT image features [N, E] from images [N, 3, H, W]."""
    conv = sd["visual.conv1.weight"].to(dtype)
    width, _, patch, _ = conv.shape
    x = images.to(dtype)
    n, c, h, w = x.shape
    gh, gw = h // patch, w // patch
    patches = x.reshape(n, c, gh, patch, gw, patch).permute(0, 2, 4, 1, 3, 5).reshape(n, gh * gw, c * patch * patch)
    tokens = patches @ conv.reshape(width, -1).T                       # [N, g*g, width]
    cls = sd["visual.class_embedding"].to(dtype).expand(n, 1, width)
    x = torch.cat([cls, tokens], dim=1) + sd["visual.positional_embedding"].to(dtype)
    x = _layer_norm(x, sd, "visual.ln_pre")
    x = x.permute(1, 0, 2)                                             # [L, N, D]
    x = _transformer(x, sd, "visual.transformer", None)
    x = _layer_norm(x[0], sd, "visual.ln_post")                        # class token
    return x @ sd["visual.proj"].to(dtype)


def encode_text_embeddings(sd, embeddings, tokens, dtype=torch.float64):
    """Text features [N, E] from token embeddings [N, L, D] and the token ids [N, L] (EOT = argmax)."""
    x = embeddings.to(dtype) + sd["positional_embedding"].to(dtype)
    x = x.permute(1, 0, 2)                                             # [L, N, D]
    x = _transformer(x, sd, "transformer", causal_mask(x.shape[0], dtype))
    x = x.permute(1, 0, 2)
    x = _layer_norm(x, sd, "ln_final")
    eot = tokens.argmax(dim=-1)
    x = x[torch.arange(x.shape[0]), eot]
    return x @ sd["text_projection"].to(dtype)


def encode_text(sd, tokens, dtype=torch.float64):
    """Text features [N, E] from token ids [N, L]."""
    return encode_text_embeddings(sd, sd["token_embedding.weight"].to(dtype)[tokens], tokens, dtype)
