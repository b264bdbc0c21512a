"""Random CLIP checkpoints in OpenAI's format, for tests and benchmarks (no downloads).

``tiny_openai_state_dict`` gives the key names and shapes OpenAI's checkpoints have (ViT, or ModifiedResNet when
``vision_layers`` is a 4-tuple), deterministic from the seed, scaled so features are not degenerate.
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Dict, Sequence, Tuple, Union

import torch
from torch import nn

__all__ = ["tiny_openai_state_dict", "save_tiny_checkpoint", "vit_b16_state_dict", "random_openai_state_dict",
           "build_random_clip"]


class _Gen:
    """Deterministic tensor factory (fixed draw order = fixed values for a seed)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(seed)

    def normal(self, *shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=self.g).mul_(std).add_(mean)

    def ln(self, sd, prefix, width):
        sd[f"{prefix}.weight"] = self.normal(width, std=0.1, mean=1.0)
        sd[f"{prefix}.bias"] = self.normal(width, std=0.1)

    def linear(self, sd, prefix, out_f, in_f, std, bias=True):
        sd[f"{prefix}.weight"] = self.normal(out_f, in_f, std=std)
        if bias:
            sd[f"{prefix}.bias"] = self.normal(out_f, std=0.02)

    def bn(self, sd, prefix, width):
        self.ln(sd, prefix, width)
        sd[f"{prefix}.running_mean"] = self.normal(width, std=0.1)
        sd[f"{prefix}.running_var"] = 1.0 + 0.1 * torch.rand(width, generator=self.g)
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def _resblocks(gen: _Gen, sd: dict, prefix: str, width: int, layers: int):
    attn_std = width ** -0.5
    proj_std = attn_std * (2 * layers) ** -0.5
    fc_std = (2 * width) ** -0.5
    for i in range(layers):
        p = f"{prefix}.resblocks.{i}"
        sd[f"{p}.attn.in_proj_weight"] = gen.normal(3 * width, width, std=attn_std)
        sd[f"{p}.attn.in_proj_bias"] = gen.normal(3 * width, std=0.02)
        gen.linear(sd, f"{p}.attn.out_proj", width, width, proj_std)
        gen.ln(sd, f"{p}.ln_1", width)
        gen.linear(sd, f"{p}.mlp.c_fc", 4 * width, width, fc_std)
        gen.linear(sd, f"{p}.mlp.c_proj", width, 4 * width, proj_std)
        gen.ln(sd, f"{p}.ln_2", width)


def _vit(gen: _Gen, sd: dict, width: int, layers: int, patch: int, image: int, embed_dim: int):
    if image % patch:
        raise ValueError(f"image_size {image} is not a multiple of patch_size {patch}")
    scale = width ** -0.5
    grid = image // patch
    sd["visual.class_embedding"] = gen.normal(width, std=scale)
    sd["visual.positional_embedding"] = gen.normal(grid * grid + 1, width, std=scale)
    sd["visual.proj"] = gen.normal(width, embed_dim, std=scale)
    sd["visual.conv1.weight"] = gen.normal(width, 3, patch, patch, std=(3 * patch * patch) ** -0.5)
    gen.ln(sd, "visual.ln_pre", width)
    _resblocks(gen, sd, "visual.transformer", width, layers)
    gen.ln(sd, "visual.ln_post", width)


def _conv(gen: _Gen, sd: dict, key: str, out_c: int, in_c: int, k: int):
    sd[key] = gen.normal(out_c, in_c, k, k, std=(in_c * k * k) ** -0.5)


def _resnet(gen: _Gen, sd: dict, width: int, layers: Sequence[int], image: int, embed_dim: int):
    if image % 32:
        raise ValueError(f"ResNet image_size {image} is not a multiple of 32")
    half = width // 2
    _conv(gen, sd, "visual.conv1.weight", half, 3, 3)
    gen.bn(sd, "visual.bn1", half)
    _conv(gen, sd, "visual.conv2.weight", half, half, 3)
    gen.bn(sd, "visual.bn2", half)
    _conv(gen, sd, "visual.conv3.weight", width, half, 3)
    gen.bn(sd, "visual.bn3", width)
    inplanes = width
    for li, blocks in enumerate(layers):
        planes = width * 2 ** li
        stride = 1 if li == 0 else 2
        for b in range(blocks):
            p = f"visual.layer{li + 1}.{b}"
            _conv(gen, sd, f"{p}.conv1.weight", planes, inplanes, 1)
            gen.bn(sd, f"{p}.bn1", planes)
            _conv(gen, sd, f"{p}.conv2.weight", planes, planes, 3)
            gen.bn(sd, f"{p}.bn2", planes)
            _conv(gen, sd, f"{p}.conv3.weight", planes * 4, planes, 1)
            gen.bn(sd, f"{p}.bn3", planes * 4)
            if b == 0 and (stride > 1 or inplanes != planes * 4):
                _conv(gen, sd, f"{p}.downsample.0.weight", planes * 4, inplanes, 1)
                gen.bn(sd, f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    dim = width * 32
    sd["visual.attnpool.positional_embedding"] = gen.normal((image // 32) ** 2 + 1, dim, std=dim ** -0.5)
    for name in ("k_proj", "q_proj", "v_proj"):
        gen.linear(sd, f"visual.attnpool.{name}", dim, dim, dim ** -0.5)
    gen.linear(sd, "visual.attnpool.c_proj", embed_dim, dim, dim ** -0.5)
    _calibrate_batchnorm(gen, sd, width, layers, image, embed_dim)


def _calibrate_batchnorm(gen: _Gen, sd: dict, width: int, layers: Sequence[int], image: int, embed_dim: int):
    """Set BN running statistics to the batch statistics of random images, so that activations stay
    standardised through the stages (random running stats let per-channel offsets swamp the signal)."""
    from open_clip.modified_resnet import ModifiedResNet

    net = ModifiedResNet(tuple(layers), output_dim=embed_dim, heads=width * 32 // 64, image_size=image, width=width)
    net.load_state_dict({k[len("visual."):]: v for k, v in sd.items() if k.startswith("visual.")})
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly its statistics
    net.train()
    with torch.no_grad():
        x = gen.normal(4, 3, image, image)
        x = net.stem(x)
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = stage(x)
    for k, v in net.state_dict().items():
        if ".running_" in k or k.endswith("num_batches_tracked"):
            sd[f"visual.{k}"] = v.detach().clone() if v.is_floating_point() else torch.tensor(0, dtype=torch.long)


def tiny_openai_state_dict(seed: int = 0, embed_dim: int = 32, vision_width: int = 64,
                           vision_layers: Union[int, Tuple[int, int, int, int]] = 2, patch_size: int = 8,
                           image_size: int = 32, text_width: int = 64, text_layers: int = 2,
                           context_length: int = 77, vocab_size: int = 49408,
                           dtype: torch.dtype = torch.float32, meta: bool = True) -> Dict[str, torch.Tensor]:
    """Random OpenAI-format CLIP state dict.

    A ViT when ``vision_layers`` is an int (``vision_width`` a multiple of 64; heads = width // 64), a
    ModifiedResNet when it is a 4-tuple (``vision_width`` even, ``image_size`` a multiple of 32; ``patch_size``
    ignored). ``text_width`` must be a multiple of 64. Floating tensors are cast to ``dtype`` (OpenAI ships
    fp16). ``meta`` adds the int entries ``input_resolution`` / ``context_length`` / ``vocab_size`` that
    OpenAI's JIT archives carry.
    """
    resnet = isinstance(vision_layers, (tuple, list))
    if text_width % 64 or (not resnet and vision_width % 64) or (resnet and vision_width % 2):
        raise ValueError("widths must be multiples of 64 (heads = width // 64); a ResNet width must be even")
    gen = _Gen(seed)
    sd: Dict[str, torch.Tensor] = {}
    if resnet:
        if len(vision_layers) != 4:
            raise ValueError("a ResNet needs 4 stage depths")
        _resnet(gen, sd, vision_width, vision_layers, image_size, embed_dim)
    else:
        _vit(gen, sd, vision_width, vision_layers, patch_size, image_size, embed_dim)
    sd["positional_embedding"] = gen.normal(context_length, text_width, std=0.01)
    sd["text_projection"] = gen.normal(text_width, embed_dim, std=text_width ** -0.5)
    sd["logit_scale"] = torch.tensor(math.log(100.0))
    sd["token_embedding.weight"] = gen.normal(vocab_size, text_width, std=0.02)
    _resblocks(gen, sd, "transformer", text_width, text_layers)
    gen.ln(sd, "ln_final", text_width)
    sd = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in sd.items()}
    if meta:
        sd["input_resolution"] = torch.tensor(image_size)
        sd["context_length"] = torch.tensor(context_length)
        sd["vocab_size"] = torch.tensor(vocab_size)
    return sd


class _Holder(nn.Module):
    """Parameter/buffer container mirroring a dotted key layout; scriptable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _module_tree(sd: Dict[str, torch.Tensor]) -> nn.Module:
    root = _Holder()
    for key, value in sd.items():
        *path, leaf = key.split(".")
        mod = root
        for part in path:
            child = mod._modules.get(part)
            if child is None:
                child = _Holder()
                mod.add_module(part, child)
            mod = child
        if value.is_floating_point():
            mod.register_parameter(leaf, nn.Parameter(value.detach().clone(), requires_grad=False))
        else:
            mod.register_buffer(leaf, value.detach().clone())
    return root


def save_tiny_checkpoint(path: Union[str, os.PathLike], jit: bool = False, **kw) -> Dict[str, torch.Tensor]:
    """Write ``tiny_openai_state_dict(**kw)`` to ``path`` and return it.

    ``jit=False``: a plain ``torch.save`` state dict. ``jit=True``: a TorchScript archive like OpenAI's JIT files
    (``torch.jit.load(path).state_dict()`` has the OpenAI key names).
    """
    sd = tiny_openai_state_dict(**kw)
    if jit:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch
            torch.jit.save(torch.jit.script(_module_tree(sd)), str(path))
    else:
        torch.save(sd, str(path))
    return sd


def random_openai_state_dict(name: str = "ViT-B/16", seed: int = 0, dtype: torch.dtype = torch.float32):
    """Random state dict with the real shapes of an OpenAI backbone (read from open_clip's model config)."""
    import open_clip
    from .pretrained import BACKBONES, canonical_backbone

    cfg = open_clip.get_model_config(BACKBONES[canonical_backbone(name)].open_clip_name)
    v, t = cfg["vision_cfg"], cfg["text_cfg"]
    layers = v["layers"]
    return tiny_openai_state_dict(
        seed=seed, embed_dim=cfg["embed_dim"], vision_width=v["width"],
        vision_layers=tuple(layers) if isinstance(layers, (list, tuple)) else layers,
        patch_size=v.get("patch_size") or 0, image_size=v["image_size"], text_width=t["width"],
        text_layers=t["layers"], context_length=t["context_length"], vocab_size=t["vocab_size"], dtype=dtype)


def vit_b16_state_dict(seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random OpenAI-format ViT-B/16 state dict (real shapes, ~150M parameters)."""
    return random_openai_state_dict("ViT-B/16", seed=seed)


def build_random_clip(name: str = "ViT-B/16", seed: int = 0):
    """fp32 open_clip CLIP with the real shapes of ``name`` and random weights (parameter counts, benchmarks)."""
    from .model import build_clip_from_state_dict
    return build_clip_from_state_dict(random_openai_state_dict(name, seed=seed))
