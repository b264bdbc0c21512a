"""DPL: differentiable prompt learning (Huang et al., IJCAI 2025, §3.1-3.2, Eq. 3-9): the prompt modules.

Every residual block l of both encoders takes K/V-only prompt tokens ``E_l`` [c_l, d] that its attention attends to
(through the block's ``ln_1``, as the official block normalises them); the sequence length never changes and no
input tokens are learned. The search stage (supernet) holds, per block and per option c of ``OPTIONS`` (the paper's
{0, 2, 4, 6}; the official code's {0, ..., 6}), one prompt ``E_{l,c}`` and a row of architecture weights ``alpha_l``;
the block's attention output is ``sum_c softmax(alpha_l)_c Attn(ln_1 x, ln_1 [x; E_{l,c}])`` (Eq. 6-7,
:meth:`vlpeft.clip.surgery.ClipSurgery.add_kv_mixture`). The found configuration is ``c_l = OPTIONS[argmax_c
alpha_l]`` per block and tower (first maximum on ties), trained from scratch by the subnet (``c_l`` tokens per block,
N(0, 0.02^2)). Choices: docs/decisions/dpl.md.
"""
import json
import os.path as osp

import torch
import torch.nn as nn

from vlpeft.engine.utils import atomic_write_text

TOWERS = ("text", "vision")
PAPER_OPTIONS = (0, 2, 4, 6)
CODE_OPTIONS = (0, 1, 2, 3, 4, 5, 6)


def tower_shapes(clip_model):
    """{tower: (number of blocks, width)}."""
    return {"text": (len(clip_model.transformer.resblocks), clip_model.ln_final.weight.shape[0]),
            "vision": (len(clip_model.visual.transformer.resblocks), clip_model.visual.conv1.weight.shape[0])}


def check_options(options):
    options = tuple(int(c) for c in options)
    if not options or len(set(options)) != len(options) or min(options) < 0:
        raise ValueError(f"DPL options must be distinct prompt lengths >= 0, got {list(options)}")
    return options


class ArchitectureWeights(nn.Module):
    """``alpha`` [blocks, len(options)] per tower (the official init: 1e-3 N(0, 1)); ``softmax`` per block."""

    def __init__(self, blocks, options, std=1e-3):
        super().__init__()
        self.options = check_options(options)
        self.alpha = nn.ParameterDict({t: nn.Parameter(torch.randn(blocks[t], len(self.options)) * std)
                                       for t in TOWERS})

    def weights(self, tower, layer):
        return torch.softmax(self.alpha[tower][layer].float(), dim=0)

    def lengths(self):
        """{tower: [c_l]}: the option of largest alpha per block (the first on ties)."""
        return lengths_from_alpha({t: a.detach() for t, a in self.alpha.items()}, self.options)


def lengths_from_alpha(alpha, options):
    """{tower: [options[argmax_c alpha[tower][l, c]] for each block l]}; ``alpha``: {tower: [blocks, T] array}."""
    options = check_options(options)
    out = {}
    for tower, a in alpha.items():
        a = torch.as_tensor(a)
        if a.dim() != 2 or a.shape[1] != len(options):
            raise ValueError(f"{tower} alpha has shape {tuple(a.shape)}; expected [blocks, {len(options)}] for "
                             f"options {list(options)}")
        out[tower] = [options[i] for i in torch.softmax(a.double(), dim=1).argmax(dim=1).tolist()]
    return out


class SupernetPrompts(nn.Module):
    """``prompts[tower][l][j]`` = ``E_{l, c_j}`` [c_j, d] for every option ``c_j > 0`` (official init: text U[0, 1),
    vision N(0, 1)); :meth:`attach` installs one K/V mixture per block weighted by ``weights``
    (:class:`ArchitectureWeights`)."""

    def __init__(self, clip_model, options):
        super().__init__()
        self.options = check_options(options)
        shapes = tower_shapes(clip_model)
        init = {"text": lambda c, d: torch.rand(c, d), "vision": lambda c, d: torch.randn(c, d)}
        self.prompts = nn.ModuleDict({
            tower: nn.ModuleList([
                nn.ParameterList([nn.Parameter(init[tower](c, width)) for c in self.options if c > 0])
                for _ in range(blocks)])
            for tower, (blocks, width) in shapes.items()})

    def attach(self, surgery, weights):
        for tower in TOWERS:
            for layer, prompts in enumerate(self.prompts[tower]):
                fns, j = [], 0
                for c in self.options:
                    if c == 0:
                        fns.append(None)
                    else:
                        fns.append(lambda t=tower, l=layer, i=j: self.prompts[t][l][i])
                        j += 1
                surgery.add_kv_mixture(tower, layer, fns, lambda t=tower, l=layer: weights.weights(t, l))


class SubnetPrompts(nn.Module):
    """``prompts[tower][l]`` [c_l, d] ~ N(0, 0.02^2) for the found lengths (blocks with c_l = 0 get none)."""

    def __init__(self, clip_model, lengths, std=0.02):
        super().__init__()
        shapes = tower_shapes(clip_model)
        self.lengths = {}
        self.prompts = nn.ModuleDict()
        for tower, (blocks, width) in shapes.items():
            found = [int(c) for c in lengths[tower]]
            if len(found) != blocks or min(found, default=0) < 0:
                raise ValueError(f"{tower} lengths {found}: expected {blocks} lengths >= 0 (one per block)")
            self.lengths[tower] = found
            self.prompts[tower] = nn.ParameterList([nn.Parameter(torch.randn(c, width) * std) for c in found if c])

    def attach(self, surgery):
        for tower in TOWERS:
            index = 0
            for layer, c in enumerate(self.lengths[tower]):
                if c:
                    surgery.add_kv_tokens(tower, layer, lambda t=tower, i=index: self.prompts[t][i],
                                          through_ln_1=True)
                    index += 1


def save_lengths(path, lengths, options, epoch=None, source=""):
    """Write the found per-block lengths (and the option list they were chosen from) as JSON, atomically."""
    record = {"text": list(map(int, lengths["text"])), "vision": list(map(int, lengths["vision"])),
              "options": list(map(int, options)), "epoch": epoch, "source": source}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def load_lengths(path):
    """{tower: [c_l]} from a lengths JSON (:func:`save_lengths`)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'no DPL lengths file "{path}" (written by the search stage)')
    with open(path) as f:
        record = json.load(f)
    missing = [t for t in TOWERS if t not in record]
    if missing:
        raise ValueError(f'"{path}" has no {missing} lengths; it is not a DPL lengths file')
    return {t: [int(c) for c in record[t]] for t in TOWERS}
