"""Reading CLIP checkpoints and building open_clip models from them.

The architecture is read from the checkpoint's shapes, like OpenAI's ``build_model``; models use QuickGELU and
``LayerNormFp32`` (LayerNorm computed in fp32, as in OpenAI's CLIP) and are returned in fp32, eval mode, on CPU.
"""
from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Dict, Union

import torch
from torch import nn

from .pretrained import resolve_clip_weights

__all__ = ["load_state_dict_any", "infer_architecture", "build_clip_from_state_dict", "load_clip", "META_KEYS"]

# Non-weight entries found in OpenAI's JIT archives; OpenAI's build_model drops them too.
META_KEYS = ("input_resolution", "context_length", "vocab_size")

PathLike = Union[str, os.PathLike]


def _is_safetensors(path: Path) -> bool:
    if path.suffix == ".safetensors":
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(10)
    except OSError:
        return False
    return len(head) == 10 and head[8:10] == b'{"'  # 8-byte little-endian header size, then JSON


def _unwrap(obj) -> Dict[str, torch.Tensor]:
    if isinstance(obj, (nn.Module, torch.jit.ScriptModule)):
        obj = obj.state_dict()
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise ValueError(f"checkpoint holds a {type(obj).__name__}, not a state dict")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise ValueError("checkpoint holds no tensors")
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def load_state_dict_any(path: PathLike) -> Dict[str, torch.Tensor]:
    """Read a state dict from an OpenAI JIT archive, a ``torch.save`` file (optionally nested under
    ``"state_dict"`` and/or ``module.``-prefixed) or a ``.safetensors`` file. Tensors end up on CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if _is_safetensors(path):
        from safetensors.torch import load_file
        return _unwrap(load_file(str(path), device="cpu"))
    try:  # OpenAI's release format; same order as OpenAI's loader
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in recent torch
            return _unwrap(torch.jit.load(str(path), map_location="cpu").state_dict())
    except (RuntimeError, ValueError):
        pass
    unreadable = f"{path} is neither a TorchScript archive, a torch.save checkpoint nor a safetensors file"
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # e.g. a pickled object outside the weights_only allow-list
        warnings.warn(f"{path}: not loadable with weights_only=True ({err!s:.120}); falling back to a full "
                      "unpickle. Only do this with checkpoints you trust.", stacklevel=2)
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as err2:
            raise ValueError(f"{unreadable} ({type(err2).__name__}: {err2})") from err2
    except Exception as err:
        raise ValueError(f"{unreadable} ({type(err).__name__}: {err})") from err
    return _unwrap(obj)


def _count(prefix_keys, depth: int) -> int:
    return len({k.split(".")[depth] for k in prefix_keys})


def infer_architecture(state_dict: Mapping) -> dict:
    """Architecture hyper-parameters of an OpenAI-format CLIP state dict, read from key names and shapes."""
    required = ("positional_embedding", "text_projection", "token_embedding.weight", "ln_final.weight")
    missing = [k for k in required if k not in state_dict]
    if missing or not any(k.startswith("visual.") for k in state_dict):
        raise ValueError(f"not an OpenAI-format CLIP state dict (missing {missing or ['visual.*']})")
    arch = {}
    if "visual.proj" in state_dict:  # ViT
        conv = state_dict["visual.conv1.weight"]
        grid = round((state_dict["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        arch.update(
            vision_type="vit",
            vision_width=conv.shape[0],
            vision_layers=sum(1 for k in state_dict
                              if k.startswith("visual.transformer.resblocks.") and k.endswith(".attn.in_proj_weight")),
            vision_patch_size=conv.shape[-1],
            image_size=conv.shape[-1] * grid,
        )
        arch["vision_heads"] = arch["vision_width"] // 64
    else:  # ModifiedResNet
        layers = tuple(_count([k for k in state_dict if k.startswith(f"visual.layer{b}.")], 2) for b in (1, 2, 3, 4))
        n_pos = state_dict["visual.attnpool.positional_embedding"].shape[0]
        out_w = round((n_pos - 1) ** 0.5)
        if out_w ** 2 + 1 != n_pos:
            raise ValueError(f"visual.attnpool.positional_embedding has {n_pos} rows, not a square grid + 1")
        arch.update(
            vision_type="resnet",
            vision_width=state_dict["visual.layer1.0.conv1.weight"].shape[0],
            vision_layers=layers,
            vision_patch_size=None,
            image_size=out_w * 32,
        )
        arch["vision_heads"] = arch["vision_width"] * 32 // 64
    text_width = state_dict["ln_final.weight"].shape[0]
    arch.update(
        embed_dim=state_dict["text_projection"].shape[1],
        context_length=state_dict["positional_embedding"].shape[0],
        vocab_size=state_dict["token_embedding.weight"].shape[0],
        text_width=text_width,
        text_heads=text_width // 64,
        text_layers=_count([k for k in state_dict if k.startswith("transformer.resblocks.")], 2),
    )
    return arch


def build_clip_from_state_dict(state_dict: Mapping):
    """Build an ``open_clip.model.CLIP`` whose architecture is read from the OpenAI-format ``state_dict``.

    Weights are copied at their full stored precision (no fp16 round-trip); the model is fp32, eval, CPU.
    The input mapping is not modified.
    """
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    arch = infer_architecture(state_dict)
    vision_cfg = CLIPVisionCfg(
        layers=arch["vision_layers"],
        width=arch["vision_width"],
        patch_size=arch["vision_patch_size"],
        image_size=arch["image_size"],
    )
    text_cfg = CLIPTextCfg(
        context_length=arch["context_length"],
        vocab_size=arch["vocab_size"],
        width=arch["text_width"],
        heads=arch["text_heads"],
        layers=arch["text_layers"],
    )
    sd = {k: v for k, v in state_dict.items() if k not in META_KEYS}

    def construct():
        # cast_dtype=fp16 only selects LayerNormFp32 (OpenAI's fp32 LayerNorm); nothing is converted here.
        return CLIP(arch["embed_dim"], vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=True,
                    cast_dtype=torch.float16)

    # Fast path: skip the random init by constructing on the meta device and assigning fp32 copies.
    with torch.device("meta"):
        model = construct()
    own = {k: (v.detach().to(torch.float32, copy=True) if v.is_floating_point() else v.detach().clone())
           for k, v in sd.items()}
    model.load_state_dict(own, strict=True, assign=True)
    if not _materialize_masks(model):  # an unknown non-persistent buffer: take the plain (slow) route
        model = construct()
        model.load_state_dict(sd, strict=True)
    return use_sequence_first_layout(model.float().eval())


def use_sequence_first_layout(model: nn.Module) -> nn.Module:
    """Run both transformers in OpenAI's ``[L, N, D]`` layout instead of open_clip's default ``[N, L, D]``.

    Same outputs (the towers still take and return ``[N, L, D]``; the transformer transposes once, contiguously).
    The point is speed: with batch-first blocks, ``nn.MultiheadAttention`` transposes its input to a non-contiguous
    ``[L, N, D]`` view, and a linear map on such a view that needs a gradient runs as a batched matmul against a
    weight expanded L times (``aten::bmm``, about 3x slower on the CPU than the ``addmm`` the contiguous layout gets).
    Must run before surgery attaches (it records each attention's layout)."""
    for transformer in (getattr(model, "transformer", None), getattr(getattr(model, "visual", None), "transformer",
                                                                      None)):
        if transformer is None or not hasattr(transformer, "batch_first"):
            continue
        transformer.batch_first = False
        for block in transformer.resblocks:
            attn = getattr(block, "attn", None)
            if isinstance(attn, nn.MultiheadAttention):
                attn.batch_first = False
    return model


def _materialize_masks(model: nn.Module) -> bool:
    """Rebuild the causal ``attn_mask`` buffers left on the meta device; False if other meta tensors remain."""
    for mod in model.modules():
        for name, buf in list(mod._buffers.items()):
            if buf is not None and buf.is_meta and name == "attn_mask" and buf.ndim == 2:
                n = buf.shape[0]
                mod._buffers[name] = torch.full((n, n), float("-inf")).triu_(1)
    return not any(t.is_meta for t in (*model.parameters(), *model.buffers()))


def _describe(model) -> str:
    v = model.visual
    if hasattr(v, "conv1") and hasattr(v, "transformer"):
        vis = (f"ViT width {v.conv1.weight.shape[0]}, {len(v.transformer.resblocks)} layers, "
               f"patch {v.conv1.weight.shape[-1]}, {v.image_size[0]}px")
    else:
        vis = f"ResNet {getattr(v, 'image_size', '?')}px"
    return (f"{vis}; text width {model.ln_final.weight.shape[0]}, {len(model.transformer.resblocks)} layers; "
            f"embed {model.text_projection.shape[1]}")


def load_clip(name: str, path: str = ""):
    """Resolve the weights of backbone ``name`` (or use ``path``), load them and build the fp32 CPU model."""
    file = resolve_clip_weights(name, path)
    try:
        sd = load_state_dict_any(file)
        model = build_clip_from_state_dict(sd)
    except Exception as err:
        raise RuntimeError(f"failed to build CLIP {name!r} from {file}: {err}") from err
    print(f'Loaded CLIP backbone {name} from "{file}" ({_describe(model)})')
    return model
