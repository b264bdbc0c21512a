"""Thin, exact pieces that CoOp-style trainers compose around a frozen open_clip CLIP model."""
from __future__ import annotations

import inspect
from typing import Union

import torch
from torch import nn

__all__ = ["model_dtype", "weights_dtype", "cast_clip", "TextEncoder", "ImageEncoder", "encode_image", "as_dtype"]

_NORMS = (nn.LayerNorm, nn.modules.batchnorm._BatchNorm)
_KEEP_FP32 = ("logit_scale", "logit_bias")
_PREC = {"fp16": torch.float16, "half": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32,
         "float": torch.float32, "amp": torch.float32}  # amp: fp32 weights, autocast at run time


def as_dtype(dtype: Union[str, torch.dtype]) -> torch.dtype:
    """``torch.dtype`` from a dtype or a precision string (fp16 / bf16 / fp32 / amp)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _PREC[str(dtype).lower()]
    except KeyError:
        raise ValueError(f"unknown precision {dtype!r}; use one of {sorted(_PREC)}") from None


def weights_dtype(module: nn.Module) -> torch.dtype:
    """dtype of the first matmul weight (MHA / Linear / Conv) found in ``module`` (pre-order)."""
    for m in module.modules():
        if isinstance(m, nn.MultiheadAttention) and m.in_proj_weight is not None:
            return m.in_proj_weight.dtype
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            return m.weight.dtype
    for p in module.parameters():
        if p.is_floating_point():
            return p.dtype
    return torch.float32


def model_dtype(clip_model: nn.Module) -> torch.dtype:
    """dtype of a CLIP model's weights (``visual.conv1.weight`` as in OpenAI's ``CLIP.dtype``)."""
    conv = getattr(getattr(clip_model, "visual", None), "conv1", None)
    if isinstance(conv, nn.Conv2d):
        return conv.weight.dtype
    return weights_dtype(clip_model)


def cast_clip(clip_model: nn.Module, dtype: Union[str, torch.dtype]) -> nn.Module:
    """Cast a frozen CLIP model in place (and return it) to fp32 / fp16 / bf16.

    Low precision follows OpenAI's ``convert_weights``: Linear / Conv / MHA weights, ``proj`` and
    ``text_projection`` are cast; embeddings (token, positional, class) are cast too, which changes no output
    since OpenAI casts them to the compute dtype on use. Norm-layer parameters, norm buffers and
    ``logit_scale`` stay fp32; LayerNorms compute in fp32 (plain LayerNorms become ``LayerNormFp32``).
    Parameters keep their identity, so modules sharing them (e.g. a :class:`TextEncoder`) follow.
    Call it before attaching trainable prompt modules: it casts every parameter it finds.
    """
    dtype = as_dtype(dtype)
    if dtype == torch.float32:
        return clip_model.float()
    from open_clip.transformer import LayerNorm as OCLayerNorm, LayerNormFp32

    norm_params = set()
    for m in clip_model.modules():
        if isinstance(m, _NORMS):
            if type(m) in (nn.LayerNorm, OCLayerNorm):
                m.__class__ = LayerNormFp32  # same parameters; computes in fp32 and returns the input dtype
            for p in m.parameters(recurse=False):
                p.data = p.data.float()
                norm_params.add(id(p))
            for name, b in m.named_buffers(recurse=False):
                if b is not None and b.is_floating_point():
                    setattr(m, name, b.float())
    for name, p in clip_model.named_parameters():
        if id(p) in norm_params or not p.is_floating_point():
            continue
        if name.split(".")[-1] in _KEEP_FP32:
            p.data = p.data.float()
        else:
            p.data = p.data.to(dtype)
    return clip_model


class TextEncoder(nn.Module):
    """CoOp's text encoder over open_clip modules: prompt embeddings ``[N, L, D]`` + token ids ``[N, L]`` ->
    features ``[N, E]``.

    Positional embedding is added, the transformer runs with the causal mask, then ``ln_final``, the token at
    ``tokenized.argmax(-1)`` (EOT) and ``text_projection``. It computes in the dtype of the transformer's
    weights (inputs are cast), so fp32 trainable prompts work with an fp16/bf16 model. An open_clip
    ``Transformer`` (it has ``batch_first``) takes ``[N, L, D]`` whatever its internal layout; any other
    transformer is assumed to take OpenAI's ``[L, N, D]``; it gets the mask if its forward has ``attn_mask``.
    """

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.transformer = clip_model.transformer
        self.positional_embedding = clip_model.positional_embedding
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("attn_mask", getattr(clip_model, "attn_mask", None), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        return weights_dtype(self.transformer)

    def run_transformer(self, x: torch.Tensor) -> torch.Tensor:
        """Run the transformer on ``[N, L, D]`` and return ``[N, L, D]``."""
        if hasattr(self.transformer, "batch_first"):  # open_clip API: NLD in/out, handles its own layout
            return self.transformer(x, attn_mask=self.attn_mask)
        x = x.permute(1, 0, 2)  # OpenAI API: LND
        if "attn_mask" in inspect.signature(self.transformer.forward).parameters:  # e.g. older open_clip
            x = self.transformer(x, attn_mask=self.attn_mask)
        else:
            x = self.transformer(x)  # OpenAI's transformer applies its own mask
        return x.permute(1, 0, 2)

    def forward(self, prompts: torch.Tensor, tokenized: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype
        x = prompts.to(dtype) + self.positional_embedding.to(dtype)
        x = self.run_transformer(x)
        x = self.ln_final(x).to(dtype)
        x = x[torch.arange(x.shape[0], device=x.device), tokenized.argmax(dim=-1)]
        proj = self.text_projection
        if isinstance(proj, nn.Linear):
            return proj(x)
        return x @ proj.to(dtype)


class ImageEncoder(nn.Module):
    """``visual(images)`` with images cast to the dtype of the visual tower's weights."""

    def __init__(self, clip_model: nn.Module):
        super().__init__()
        self.visual = clip_model.visual

    @property
    def dtype(self) -> torch.dtype:
        conv = getattr(self.visual, "conv1", None)
        return conv.weight.dtype if isinstance(conv, nn.Conv2d) else weights_dtype(self.visual)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images.to(self.dtype))


def encode_image(clip_model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Image features ``[N, E]`` (unnormalised) in the model's dtype; images are cast to it."""
    return clip_model.visual(images.to(model_dtype(clip_model)))
