"""DsRA: dual-shared low-rank adapters on PromptSRC (AAAI 2025, §3, Eq. 12-17). METHODS.md §8.5, D21-D23.

In every block of both encoders a linear adapter ``A(z) = z + z M R_l M^T`` acts on the input of the attention
(after ``ln_1``) and of the MLP (after ``ln_2``). ``M`` [d, RANK] is shared by all layers of one encoder at one
position (tied down / up projection); ``R_l = diag(r_l)`` is per layer and shared between the text and the vision
encoder (inter-modal sharing). Choices where the paper is silent (METHODS.md D21-D22): ``r_l`` is also shared by the
two positions (``SHARE_POSITIONS``; 174,680 trainable parameters with ViT-B/16 including PromptSRC's 46,080
prompts, as the paper's 0.17M), ``M`` has nn.Linear's default init (uniform, bound 1/sqrt(d)) and ``R = 0``, so
training starts exactly at PromptSRC. The prompts pass through the adapters; PromptSRC's frozen teacher does not
(the surgery layer is disabled for it). The adapters are linear, so ``merge()`` folds them into ``in_proj`` and
``c_fc``. GPA aggregates the adapters with the prompts.
"""
import math

import torch
import torch.nn as nn

from vlpeft.config import trainer_config
from vlpeft.engine import register_trainer

from .promptsrc import PromptSRC

trainer_config("DSRA", N_CTX_VISION=4, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16",
               PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9, TEXT_LOSS_WEIGHT=25, IMAGE_LOSS_WEIGHT=10,
               GPA_MEAN=15, GPA_STD=1, RANK=50, POSITIONS="both", SHARE_MODALITY=True, SHARE_POSITIONS=True)

POSITIONS = {"both": ("attn", "mlp"), "attn": ("attn",), "mlp": ("mlp",)}


class DualSharedAdapters(nn.Module):
    """``M[tower_position]`` [d, rank] and the diagonals ``R[key]`` [layers, rank] (Eq. 12-17)."""

    def __init__(self, clip_model, rank=50, positions="both", share_modality=True, share_positions=True):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f'DSRA POSITIONS must be one of {sorted(POSITIONS)}, got "{positions}"')
        widths = {"text": clip_model.ln_final.weight.shape[0], "vision": clip_model.visual.conv1.weight.shape[0]}
        self.layers = {"text": len(clip_model.transformer.resblocks),
                       "vision": len(clip_model.visual.transformer.resblocks)}
        if share_modality and self.layers["text"] != self.layers["vision"]:
            raise ValueError(f"modal-shared R needs towers of equal depth, got {self.layers}")
        self.positions = POSITIONS[positions]
        self.share_modality, self.share_positions = share_modality, share_positions
        self.M = nn.ParameterDict()
        for tower, width in widths.items():
            for position in self.positions:
                bound = 1 / math.sqrt(width)
                self.M[f"{tower}_{position}"] = nn.Parameter(torch.empty(width, rank).uniform_(-bound, bound))
        self.R = nn.ParameterDict()
        for key in self._r_keys():
            tower = key.split("_")[0]
            self.R[key] = nn.Parameter(torch.zeros(self.layers["text" if tower == "shared" else tower], rank))

    def _r_keys(self):
        towers = ["shared"] if self.share_modality else ["text", "vision"]
        positions = ["all"] if self.share_positions else list(self.positions)
        return [f"{t}_{p}" for t in towers for p in positions]

    def r_key(self, tower, position):
        return f"{'shared' if self.share_modality else tower}_{'all' if self.share_positions else position}"

    def adapter(self, tower, layer, position):
        m, r = self.M[f"{tower}_{position}"], self.R[self.r_key(tower, position)]

        def adapt(z):
            mz = m.to(z.dtype)
            return z + ((z @ mz) * r[layer].to(z.dtype)) @ mz.t()

        return adapt

    def attach(self, surgery):
        for tower, layers in self.layers.items():
            for layer in range(layers):
                for position in self.positions:
                    surgery.add_input_adapter(tower, layer, position, self.adapter(tower, layer, position))


class DsRALearner(nn.Module):
    """PromptSRC's prompts (``prompts``) + the dual-shared adapters (``adapters``), trained together."""

    def __init__(self, prompts, adapters):
        super().__init__()
        self.prompts = prompts
        self.adapters = adapters

    @property
    def tokenized_prompts(self):
        return self.prompts.tokenized_prompts

    def attach(self, surgery):
        self.prompts.attach(surgery)
        self.adapters.attach(surgery)

    def forward(self):
        return self.prompts()


@register_trainer
class DsRA(PromptSRC):
    """PromptSRC + dual-shared low-rank adapters; learner ``prompt_learner``."""

    CONFIG_NODE = "DSRA"

    def build_prompt_learner(self, clip_model, classnames):
        c = self.trainer_cfg
        prompts = super().build_prompt_learner(clip_model, classnames)
        adapters = DualSharedAdapters(clip_model, c.RANK, c.POSITIONS, c.SHARE_MODALITY, c.SHARE_POSITIONS)
        n = sum(p.numel() for p in adapters.parameters())
        print(f"DsRA adapters: rank {c.RANK}, positions {c.POSITIONS}, modal-shared R {c.SHARE_MODALITY}, "
              f"position-shared R {c.SHARE_POSITIONS}: {n:,} parameters")
        return DsRALearner(prompts, adapters)
