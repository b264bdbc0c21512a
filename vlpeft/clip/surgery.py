"""One CLIP-surgery layer for every method: edits attached to an unmodified open_clip CLIP model.

The four ways the methods change CLIP, all attached here and removable (:meth:`ClipSurgery.detach`):

* **token edits** at the input of a residual block (forward pre-hooks): ``write`` overwrites positions with prompt
  tokens (IVLP / MaPLe deep prompts), ``append`` concatenates tokens (the vision prompts of layer 0 enter after the
  positional embedding, before ``ln_pre``), ``remove`` drops the last tokens after a block;
* **K/V-only tokens** (DPL): extra tokens that enter the keys and values of one block's attention, never the sequence
  (optionally through the block's ``ln_1``, as DPL's block normalises them); and **K/V mixtures**: the attention output
  as a weighted sum over alternative K/V token sets (DPL's search), computed with one attention over the
  sequence shared by every alternative;
* **low-rank weight deltas** ``dW = B A`` on q / k / v / out of the attention and on the MLP's ``c_fc`` / ``c_proj``
  (LoRA-style), applied through their rank-r bottleneck; and **fused q/k/v deltas** (DPD-LoRA), whose
  ``[3D, D]`` matrix is added to ``in_proj_weight`` for the forward, so the block runs one projection GEMM;
* **input adapters**, linear maps ``z -> z T`` applied to the input of the attention (after ``ln_1``) or of the MLP
  (after ``ln_2``) (DsRA's ``z + z M R M^T``).

Weight deltas and input adapters are linear in the input of a weight, so :meth:`ClipSurgery.merge` folds them into
the weights (``W <- (W + dW) T^T``) and the merged model runs at the cost of plain CLIP; :meth:`ClipSurgery.unmerge`
restores the saved weights exactly. The surgery layer owns no parameters: every tensor it applies comes from a
callable / module owned by the method's prompt learner, so checkpoints hold only the method's tensors.

Block indices count from 0 (``layer 0`` = the first residual block); prompt depth J counts layer 0
(docs/decisions/baselines.md#prompt-depth).
Only the attention of a block that carries q/k/v/out deltas or K/V tokens is replaced (by :class:`SurgicalAttention`,
which keeps the original ``nn.MultiheadAttention`` as ``base_layer``); with nothing attached it calls it unchanged.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ClipSurgery", "SurgicalAttention", "LowRankDelta", "text_blocks", "vision_blocks"]

TokensFn = Callable[[], torch.Tensor]


def text_blocks(clip_model) -> List[nn.Module]:
    return list(clip_model.transformer.resblocks)


def vision_blocks(clip_model) -> List[nn.Module]:
    """The residual blocks of a ViT image tower; none for a ResNet one (which takes no token edits)."""
    transformer = getattr(clip_model.visual, "transformer", None)
    return list(transformer.resblocks) if transformer is not None else []


def _batch_first(block) -> bool:
    attn = block.attn.base_layer if isinstance(block.attn, SurgicalAttention) else block.attn
    return getattr(attn, "batch_first", False)


def _expand(tokens: torch.Tensor, x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """``tokens`` [M, D] or [N, M, D] -> the layout of ``x`` (NLD or LND), in ``x``'s dtype."""
    n = x.shape[0] if batch_first else x.shape[1]
    tokens = tokens.to(x.dtype)
    if tokens.dim() == 2:
        tokens = tokens.unsqueeze(0).expand(n, -1, -1)
    return tokens if batch_first else tokens.transpose(0, 1)


def _replace_tokens(x, tokens, start, batch_first):
    """``x`` with the positions ``start .. start + M`` (``start`` may be negative) replaced by ``tokens``."""
    seq = x.shape[1] if batch_first else x.shape[0]
    m = tokens.shape[1] if batch_first else tokens.shape[0]
    start = start + seq if start < 0 else start
    if not 0 <= start <= seq - m:
        raise ValueError(f"cannot write {m} tokens at position {start} of a {seq}-token sequence")
    dim = 1 if batch_first else 0
    before, after = x.narrow(dim, 0, start), x.narrow(dim, start + m, seq - start - m)
    return torch.cat([before, tokens, after], dim=dim)


class LowRankDelta(nn.Module):
    """``dW = scale * B A`` with ``A`` [r, in] (Kaiming-uniform, as LoRA) and ``B`` [out, r] (zeros): starts at 0."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: Optional[float] = None):
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=5 ** 0.5)
        self.scale = (alpha if alpha is not None else rank) / rank

    def weight(self) -> torch.Tensor:
        return self.scale * (self.B @ self.A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x dW^T`` computed through the rank-r bottleneck."""
        return self.scale * F.linear(F.linear(x, self.A.to(x.dtype)), self.B.to(x.dtype))


class SurgicalAttention(nn.Module):
    """Drop-in for a block's ``nn.MultiheadAttention`` with q/k/v/out weight deltas and K/V-only tokens.

    Deltas are callables ``x -> x dW^T`` with a ``weight()`` method (:class:`LowRankDelta`); a ``qkv`` delta only needs
    ``weight()`` (the ``[3D, D]`` update of ``in_proj_weight``, added to it for the forward). K/V tokens are callables
    returning [M, D] or [N, M, D]. The extra keys are visible to every query (an additive mask gets zero columns).
    """

    def __init__(self, base_layer: nn.MultiheadAttention):
        super().__init__()
        if not base_layer._qkv_same_embed_dim or base_layer.in_proj_weight is None:
            raise ValueError("SurgicalAttention needs a packed in_proj (as in CLIP)")
        self.base_layer = base_layer
        self.batch_first = base_layer.batch_first
        self.deltas: Dict[str, list] = {"q": [], "k": [], "v": [], "out": [], "qkv": []}
        self.kv_tokens: List[TokensFn] = []
        self.kv_mixture = None  # (options: [TokensFn or None], weights: () -> [T])
        self.merged = False
        self.enabled = True

    @property
    def active(self) -> bool:
        return self.enabled and (bool(self.kv_tokens) or self.kv_mixture is not None
                                 or (not self.merged and any(self.deltas.values())))

    def forward(self, query, key, value, need_weights=False, attn_mask=None, **kwargs):
        if not self.active:
            return self.base_layer(query, key, value, need_weights=need_weights, attn_mask=attn_mask, **kwargs)
        if need_weights:
            raise ValueError("SurgicalAttention does not return attention weights")
        base = self.base_layer
        self_attention = query is key and key is value
        if not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        d, h = base.embed_dim, base.num_heads
        use_deltas = not self.merged
        w_in = base.in_proj_weight
        fused = use_deltas and bool(self.deltas["qkv"])
        if fused:
            w_in = w_in + sum(delta.weight() for delta in self.deltas["qkv"]).to(w_in.dtype)
        w_q, w_k, w_v = w_in.chunk(3)
        b_q, b_k, b_v = base.in_proj_bias.chunk(3) if base.in_proj_bias is not None else (None,) * 3
        kv_extra = [_expand(fn(), key, True) for fn in self.kv_tokens]
        if kv_extra:
            key = torch.cat([key] + kv_extra, dim=1)
            value = torch.cat([value] + kv_extra, dim=1)

        def project(x, w, b, name):
            y = F.linear(x, w, b)
            if use_deltas:
                for delta in self.deltas[name]:
                    y = y + delta(x)
            return y

        if fused and self_attention and not kv_extra and not any(self.deltas[n] for n in "qkv"):
            q, k, v = F.linear(query, w_in, base.in_proj_bias).chunk(3, dim=-1)  # one GEMM, as nn.MultiheadAttention
        else:
            q, k, v = project(query, w_q, b_q, "q"), project(key, w_k, b_k, "k"), project(value, w_v, b_v, "v")
        n, lq, lk = q.shape[0], q.shape[1], k.shape[1]
        q, k, v = (t.reshape(n, t.shape[1], h, d // h).transpose(1, 2) for t in (q, k, v))
        mask = None
        if attn_mask is not None:
            mask = attn_mask.to(q.dtype)
            if mask.shape[-1] < lk:  # the K/V-only tokens are visible to every query
                mask = F.pad(mask, (0, lk - mask.shape[-1]))
        if self.kv_mixture is not None:
            options, weights = self.kv_mixture
            extra = [None if fn is None else _expand(fn(), key, True) for fn in options]
            tokens = [e for e in extra if e is not None]
            k_e = v_e = None
            if tokens:
                tokens = torch.cat(tokens, dim=1)
                k_e, v_e = project(tokens, w_k, b_k, "k"), project(tokens, w_v, b_v, "v")
                k_e, v_e = (t.reshape(n, t.shape[1], h, d // h).transpose(1, 2) for t in (k_e, v_e))
            beta = weights()
            out = mixture_attention(q, k, v, mask, k_e, v_e, [0 if e is None else e.shape[1] for e in extra], beta)
            out = out.transpose(1, 2).reshape(n, lq, d)
            out = project(out, base.out_proj.weight, None, "out")
            if base.out_proj.bias is not None:  # sum_c beta_c (W o_c + b) = W sum_c beta_c o_c + (sum_c beta_c) b
                out = out + beta.sum().to(out.dtype) * base.out_proj.bias
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=base.dropout if self.training else 0.0)
            out = out.transpose(1, 2).reshape(n, lq, d)
            out = project(out, base.out_proj.weight, base.out_proj.bias, "out")
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, None


def mixture_attention(q, k, v, mask, k_extra, v_extra, sizes, beta):
    """``sum_c beta_c softmax(q [k; K_c]^T / sqrt(d_h)) [v; V_c]`` for alternative extra key/value sets ``K_c`` (the
    consecutive ``sizes[c]`` columns of ``k_extra`` / ``v_extra``; size 0: no extra tokens) [N, H, Lq, d_h].

    The attention over the sequence (``q k^T``, its exponentials and their product with ``v``) is computed once and
    shared: each alternative only rescales it to its own maximum and adds its few extra columns, so the cost is one
    attention plus ``sum(sizes)`` extra keys, whatever the number of alternatives. Computed in fp32."""
    dtype = q.dtype
    q, k, v = q.float() * q.shape[-1] ** -0.5, k.float(), v.float()
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores + mask.float()
    top = scores.amax(dim=-1, keepdim=True)
    weights = torch.exp(scores - top)
    numerator, denominator = weights @ v, weights.sum(dim=-1, keepdim=True)
    extra = None
    if k_extra is not None:
        extra = q @ k_extra.float().transpose(-2, -1)
        v_extra = v_extra.float()
    out, start = 0, 0
    beta = beta.float()
    for c, size in enumerate(sizes):
        if size == 0:
            out = out + beta[c] * (numerator / denominator)
            continue
        s_c, v_c = extra[..., start:start + size], v_extra[..., start:start + size, :]
        start += size
        top_c = torch.maximum(top, s_c.amax(dim=-1, keepdim=True))
        rescale, w_c = torch.exp(top - top_c), torch.exp(s_c - top_c)
        out = out + beta[c] * (rescale * numerator + w_c @ v_c) / (rescale * denominator + w_c.sum(-1, keepdim=True))
    return out.to(dtype)


class _InputAdapterHook:
    """Forward pre-hook applying ``adapters`` (callables z -> z T) to the input(s) of a Linear or an attention."""

    def __init__(self, surgery):
        self.surgery = surgery
        self.adapters: List[Callable] = []

    def __call__(self, module, args, kwargs):
        if self.surgery.merged or not self.adapters or not self.surgery.enabled:
            return None

        def adapt(z):
            for adapter in self.adapters:
                z = adapter(z)
            return z

        if isinstance(module, (nn.MultiheadAttention, SurgicalAttention)):
            query = kwargs.get("query", args[0] if args else None)
            key = kwargs.get("key", args[1] if len(args) > 1 else None)
            value = kwargs.get("value", args[2] if len(args) > 2 else None)
            adapted_q = adapt(query)
            adapted_k = adapted_q if key is query else adapt(key)
            adapted_v = adapted_q if value is query else (adapted_k if value is key else adapt(value))
            return (adapted_q, adapted_k, adapted_v) + tuple(args[3:]), {
                k: v for k, v in kwargs.items() if k not in ("query", "key", "value")}
        return (adapt(args[0]),) + tuple(args[1:]), kwargs


def adapter_matrix(adapters, dim, device, dtype=torch.float32) -> torch.Tensor:
    """The matrix ``T`` with ``adapt(z) = z T`` for a chain of linear adapters (probed on the identity)."""
    z = torch.eye(dim, device=device, dtype=dtype)
    for adapter in adapters:
        z = adapter(z)
    return z


class ClipSurgery:
    """Edits attached to one open_clip CLIP model; see the module docstring.

    ``tower`` is ``"text"`` or ``"vision"``; ``layer`` is a block index. Every ``add_*`` / token method returns
    nothing; :meth:`detach` removes every edit and restores the original modules and weights.
    """

    def __init__(self, clip_model: nn.Module):
        self.model = clip_model
        self.blocks = {"text": text_blocks(clip_model), "vision": vision_blocks(clip_model)}
        self._handles = []
        self._adapter_hooks: Dict[int, tuple] = {}  # id(module) -> (module, hook)
        self._linear_deltas: Dict[int, tuple] = {}  # id(linear) -> (linear, [deltas], hook handle, its MLP)
        self._attentions: List[tuple] = []  # (block, SurgicalAttention)
        self._saved_weights: Dict[int, tuple] = {}  # id(param) -> (param, original data), while merged
        self._tower_callbacks: List[Callable[[], None]] = []
        self.merged = False
        self.enabled = True
        self.edited_towers = set()  # "text" / "vision": towers carrying at least one edit

    @contextlib.contextmanager
    def disabled(self):
        """Run the plain model inside this block (e.g. a frozen zero-shot teacher sharing the weights)."""
        if self.merged:
            raise RuntimeError("unmerge() before running the plain model: the weights hold the merged edits")
        previous = self.enabled
        self.enabled = False
        for _, attention in self._attentions:
            attention.enabled = False
        try:
            yield self.model
        finally:
            self.enabled = previous
            for _, attention in self._attentions:
                attention.enabled = previous

    # ---------------------------------------------------------------- token edits
    def _block(self, tower, layer):
        try:
            block = self.blocks[tower][layer]
            self.edited_towers.add(tower)
            return block
        except KeyError:
            raise ValueError(f'tower must be "text" or "vision", got {tower!r}') from None
        except IndexError:
            raise ValueError(f"{tower} tower has {len(self.blocks[tower])} blocks; no block {layer}") from None

    def write(self, tower: str, layer: int, start: int, tokens: TokensFn):
        """At the input of block ``layer``, overwrite positions ``start ..`` with ``tokens()`` ([M, D] / [N, M, D])."""
        block = self._block(tower, layer)
        batch_first = _batch_first(block)

        def hook(module, args, kwargs):
            if not self.enabled:
                return None
            x = args[0] if args else kwargs.pop("q_x")
            x = _replace_tokens(x, _expand(tokens(), x, batch_first), start, batch_first)
            return (x,) + tuple(args[1:]), kwargs

        self._handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))

    def append(self, tower: str, tokens: TokensFn, layer: Optional[int] = None):
        """Append ``tokens()`` to the sequence: before ``ln_pre`` (vision, ``layer=None``: after the positional
        embedding, as VPT / IVLP / MaPLe) or at the input of block ``layer``. The text tower's causal mask has a
        fixed length, so text tokens can only be written, not appended."""
        if tower == "text":
            raise ValueError("the text tower's causal mask fixes the sequence length: use write(), not append()")
        if layer is None:
            self.edited_towers.add("vision")
            module, batch_first = self.model.visual.ln_pre, True  # open_clip's VisionTransformer works in NLD here
        else:
            module = self._block(tower, layer)
            batch_first = _batch_first(module)

        def hook(mod, args, kwargs):
            if not self.enabled:
                return None
            x = args[0] if args else kwargs.pop("q_x" if layer is not None else "input")
            x = torch.cat([x, _expand(tokens(), x, batch_first)], dim=1 if batch_first else 0)
            return (x,) + tuple(args[1:]), kwargs

        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def remove(self, tower: str, layer: int, count: int):
        """Drop the last ``count`` tokens of the output of block ``layer``."""
        block = self._block(tower, layer)
        batch_first = _batch_first(block)

        def hook(module, args, output):
            if not self.enabled:
                return None
            return output[:, :-count] if batch_first else output[:-count]

        self._handles.append(block.register_forward_hook(hook))

    # ---------------------------------------------------------------- attention: K/V tokens, q/k/v/out deltas
    def _attention(self, tower, layer) -> SurgicalAttention:
        block = self._block(tower, layer)
        if not isinstance(block.attn, SurgicalAttention):
            if self.merged:
                raise RuntimeError("unmerge() before attaching new weight edits")
            surgical = SurgicalAttention(block.attn)
            surgical.enabled = self.enabled
            hook = self._adapter_hooks.pop(id(block.attn), None)
            block.attn = surgical
            self._attentions.append((block, surgical))
            if hook is not None:  # move input adapters registered on the plain attention
                self._handles.remove(hook[2])
                hook[2].remove()
                self._adapter_hook(surgical).adapters.extend(hook[1].adapters)
        return block.attn

    def add_kv_tokens(self, tower: str, layer: int, tokens: TokensFn, through_ln_1: bool = False):
        """Tokens that enter only the keys and values of block ``layer``'s attention (DPL); ``through_ln_1``: they
        are normalised by the block's ``ln_1`` first, like the sequence (DPL's official block)."""
        self._attention(tower, layer).kv_tokens.append(self._kv_fn(tower, layer, tokens, through_ln_1))

    def add_kv_mixture(self, tower: str, layer: int, options: List[Optional[TokensFn]], weights: TokensFn,
                       through_ln_1: bool = True):
        """Block ``layer``'s attention output becomes ``sum_c weights()[c] * Attn(x, [x; options[c]()])``: a mixture
        over alternative K/V-only token sets (``None``: no extra tokens), DPL's supernet (DPL Eq. 6-7). The output
        projection is applied once to the mixture (exact: it is linear)."""
        attention = self._attention(tower, layer)
        if attention.kv_mixture is not None:
            raise ValueError(f"{tower} block {layer} already has a K/V mixture")
        fns = [None if fn is None else self._kv_fn(tower, layer, fn, through_ln_1) for fn in options]
        attention.kv_mixture = (fns, weights)

    def _kv_fn(self, tower, layer, tokens, through_ln_1):
        if not through_ln_1:
            return tokens
        ln_1 = self._block(tower, layer).ln_1

        def normalised():
            t = tokens()
            return ln_1(t.to(ln_1.weight.dtype))

        return normalised

    def add_attention_delta(self, tower: str, layer: int, which: str, delta):
        """A weight delta on ``which`` in q / k / v / out of block ``layer`` (``delta(x) = x dW^T``, ``delta.weight()``),
        or on ``qkv``: ``delta.weight()`` is the ``[3D, D]`` update of the packed ``in_proj_weight``, added to it for
        the forward (cheaper than a bottleneck per projection when the update is recomputed from its factors anyway)."""
        if which not in ("q", "k", "v", "out", "qkv"):
            raise ValueError(f"attention delta must be on q, k, v, qkv or out, got {which!r}")
        self._attention(tower, layer).deltas[which].append(delta)

    def add_mlp_delta(self, tower: str, layer: int, which: str, delta):
        """A weight delta on the MLP's ``c_fc`` or ``c_proj`` of block ``layer`` (added through a forward hook)."""
        if which not in ("c_fc", "c_proj"):
            raise ValueError(f"MLP delta must be on c_fc or c_proj, got {which!r}")
        if self.merged:
            raise RuntimeError("unmerge() before attaching new weight edits")
        mlp = self._block(tower, layer).mlp
        linear = getattr(mlp, which)
        if id(linear) not in self._linear_deltas:
            deltas = []

            def hook(module, args, output, deltas=deltas):
                if self.merged or not self.enabled:
                    return None
                x = args[0]
                for delta in deltas:
                    output = output + delta(x)
                return output

            handle = linear.register_forward_hook(hook)
            self._handles.append(handle)
            self._linear_deltas[id(linear)] = (linear, deltas, handle, mlp)
        self._linear_deltas[id(linear)][1].append(delta)

    def before_tower(self, tower: str, fn: Callable[[], None], merged_too: bool = False):
        """Call ``fn()`` at the start of every forward of ``tower`` (the text transformer; the whole image tower, so
        before the vision tokens appended at its input) while the edits apply (enabled; and unmerged unless
        ``merged_too``: token edits stay active on merged weights), and before :meth:`merge` reads the deltas. E.g.
        to compute, once per forward, tensors shared by all the tower's blocks; it runs outside the blocks, so
        per-block activation checkpointing recomputes none of it."""
        module = self.model.transformer if tower == "text" else self.model.visual
        if tower not in ("text", "vision") or (tower == "vision" and not self.blocks["vision"]):
            raise ValueError(f'tower must be "text" or a ViT "vision", got {tower!r}')

        def hook(mod, args):
            if self.enabled and (merged_too or not self.merged):
                fn()  # returns None: the tower's input is unchanged

        self._tower_callbacks.append(fn)
        self._handles.append(module.register_forward_pre_hook(hook))

    # ---------------------------------------------------------------- input adapters
    def _adapter_hook(self, module) -> _InputAdapterHook:
        if id(module) not in self._adapter_hooks:
            hook = _InputAdapterHook(self)
            handle = module.register_forward_pre_hook(hook, with_kwargs=True)
            self._handles.append(handle)
            self._adapter_hooks[id(module)] = (module, hook, handle)
        return self._adapter_hooks[id(module)][1]

    def add_input_adapter(self, tower: str, layer: int, position: str, adapter: Callable):
        """A linear map ``z -> z T`` on the input of the attention (``position="attn"``, the output of ``ln_1``,
        feeding q, k and v) or of the MLP (``"mlp"``, the output of ``ln_2``). ``adapter`` must be linear."""
        if self.merged:
            raise RuntimeError("unmerge() before attaching new weight edits")
        block = self._block(tower, layer)
        if position == "attn":
            module = block.attn
        elif position == "mlp":
            module = block.mlp
        else:
            raise ValueError(f'adapter position must be "attn" or "mlp", got {position!r}')
        self._adapter_hook(module).adapters.append(adapter)

    # ---------------------------------------------------------------- merge / unmerge
    @property
    def has_weight_edits(self) -> bool:
        """Whether :meth:`merge` has anything to fold (input adapters or weight deltas)."""
        return (any(hook.adapters for _, hook, _ in self._adapter_hooks.values())
                or any(any(a.deltas.values()) for _, a in self._attentions)
                or any(deltas for _, deltas, _, _ in self._linear_deltas.values()))

    def _save(self, param):
        if id(param) not in self._saved_weights:
            self._saved_weights[id(param)] = (param, param.data.clone())

    @torch.no_grad()
    def merge(self):
        """Fold every weight delta and input adapter into the frozen weights (``W <- (W + dW) T^T``).

        Token edits stay active. Call :meth:`unmerge` before training again."""
        if self.merged:
            return
        for fn in self._tower_callbacks:
            fn()
        for module, hook, _ in self._adapter_hooks.values():
            if not hook.adapters:
                continue
            if isinstance(module, SurgicalAttention):
                module = module.base_layer
            weight = module.in_proj_weight if isinstance(module, nn.MultiheadAttention) else module.c_fc.weight
            self._save(weight)
            t = adapter_matrix(hook.adapters, weight.shape[1], weight.device)
            weight.copy_((weight.float() @ t.t()).to(weight.dtype))  # W stays (out, in): y = z T W^T
        for block, attention in self._attentions:
            base = attention.base_layer
            qkv = [torch.zeros(base.embed_dim, base.embed_dim, device=base.in_proj_weight.device)
                   for _ in range(3)]
            for i, name in enumerate("qkv"):
                for delta in attention.deltas[name]:
                    qkv[i] = qkv[i] + delta.weight().float()
            t = self._input_matrix(attention, base.embed_dim, base.in_proj_weight.device)
            if any(attention.deltas[n] for n in ("q", "k", "v", "qkv")):
                self._save(base.in_proj_weight)
                stacked = torch.cat(qkv)
                for delta in attention.deltas["qkv"]:
                    stacked = stacked + delta.weight().float()
                # the adapter (if any) was already folded into in_proj_weight: (W T^T) + dW T^T = (W + dW) T^T
                base.in_proj_weight.add_((stacked @ t.t()).to(base.in_proj_weight.dtype))
            if attention.deltas["out"]:
                self._save(base.out_proj.weight)
                total = sum(delta.weight().float() for delta in attention.deltas["out"])
                base.out_proj.weight.add_(total.to(base.out_proj.weight.dtype))
            attention.merged = True
        for linear, deltas, _, mlp in self._linear_deltas.values():
            if not deltas:
                continue
            self._save(linear.weight)
            total = sum(delta.weight().float() for delta in deltas)
            if linear is mlp.c_fc:  # the MLP's input adapters act before c_fc
                total = total @ self._input_matrix(mlp, linear.weight.shape[1], linear.weight.device).t()
            linear.weight.add_(total.to(linear.weight.dtype))
        self.merged = True

    def _input_matrix(self, module, dim, device):
        entry = self._adapter_hooks.get(id(module))
        if entry is None or not entry[1].adapters:
            return torch.eye(dim, device=device)
        return adapter_matrix(entry[1].adapters, dim, device)

    @torch.no_grad()
    def unmerge(self):
        """Restore the weights saved by :meth:`merge` (bit-exact) and re-enable the on-the-fly edits."""
        for param, original in self._saved_weights.values():
            param.copy_(original)
        self._saved_weights.clear()
        for _, attention in self._attentions:
            attention.merged = False
        self.merged = False

    def detach(self):
        """Remove every edit; the CLIP model is as it was before (modules and weights)."""
        self.unmerge()
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for block, attention in self._attentions:
            block.attn = attention.base_layer
        self._attentions.clear()
        self._adapter_hooks.clear()
        self._linear_deltas.clear()
        self._tower_callbacks.clear()
