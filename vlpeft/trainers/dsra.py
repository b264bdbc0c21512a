"""DsRA: dual-shared low-rank adapters on PromptSRC (AAAI 2025, Eq. 12-17). Choices: docs/decisions/dsra.md.

In every block of both encoders a linear adapter ``A(z) = z + z M R_l M^T`` acts on the input of the attention (after
``ln_1``) and of the MLP (after ``ln_2``). ``M`` [d, RANK] is shared by all layers of one encoder at one position
(tied down / up projection); ``R_l = diag(r_l)`` is per layer and shared between the text and the vision encoder
(inter-modal sharing). Choices where the paper is silent (docs/decisions/dsra.md#dsra-r-shared, #dsra-init): ``r_l``
is also shared by the two positions (``SHARE_POSITIONS``; 174,680 trainable parameters with ViT-B/16 including
PromptSRC's 46,080 prompts, as the paper's 0.17M), ``M`` has nn.Linear's default init (uniform, bound 1/sqrt(d)) and
``R = 0``, so training starts exactly at PromptSRC. The prompts pass through the adapters; PromptSRC's frozen teacher
does not (the surgery layer is disabled for it). The adapters are linear, so ``merge()`` folds them into ``in_proj``
and ``c_fc``; the trainer evaluates on the merged weights (:meth:`ClipTrainer.set_model_mode`). GPA aggregates the
adapters with the prompts. Plug-in variants (Table 5): ``TRAINER.DSRA.BASE`` KgCoOp / ProGrad adds the same adapters
to those methods (their prompts, losses, schedules; their zero-shot teachers stay plain CLIP).
"""
import math

import torch
import torch.nn as nn

from vlpeft.config import trainer_config
from vlpeft.engine import register_trainer

from .base import PlugInTrainer
from .kgcoop import KgCoOp
from .prograd import ProGrad
from .promptsrc import PromptSRC

trainer_config("DSRA", BASE="PromptSRC", N_CTX_VISION=4, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16",
               PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9, TEXT_LOSS_WEIGHT=25, IMAGE_LOSS_WEIGHT=10,
               GPA_MEAN=15, GPA_STD=1, RANK=50, POSITIONS="both", SHARE_MODALITY=True, SHARE_POSITIONS=True)

POSITIONS = {"both": ("attn", "mlp"), "attn": ("attn",), "mlp": ("mlp",)}


def adapter_gains(m, r):
    """``||M diag(r_l) M^T||_2`` for each layer l (rows of ``r``): the largest relative change the adapter of layer l
    makes to its input (0 at initialisation; Eq. 12-14)."""
    m, r = m.detach().float(), r.detach().float()
    return torch.stack([torch.linalg.matrix_norm((m * r_l) @ m.t(), ord=2) for r_l in r])


def checkpoint_gains(state_dict):
    """:func:`adapter_gains` of every ``M`` in a DsRA learner's checkpoint (its ``state_dict``, or a path to it):
    ``{"<tower>_<position>": [layers]}``, whatever sharing the run used."""
    if not isinstance(state_dict, dict):
        state_dict = torch.load(state_dict, map_location="cpu", weights_only=False)["state_dict"]
    gains = {}
    for key, m in state_dict.items():
        if key.startswith("adapters.M."):
            tower, position = key.rsplit(".", 1)[1].split("_")
            r_keys = [f"adapters.R.{t}_{p}" for t in (tower, "shared") for p in (position, "all")]
            gains[f"{tower}_{position}"] = adapter_gains(m, next(state_dict[k] for k in r_keys if k in state_dict))
    if not gains:
        raise ValueError("not a DsRA checkpoint: it holds no adapters.M.* tensor")
    return gains


class DualSharedAdapters(nn.Module):
    """``M[tower_position]`` [d, rank] and the diagonals ``R[key]`` [layers, rank] (Eq. 12-17)."""

    def __init__(self, clip_model, rank=50, positions="both", share_modality=True, share_positions=True):
        super().__init__()
        if positions not in POSITIONS:
            raise ValueError(f'TRAINER.DSRA.POSITIONS must be one of {sorted(POSITIONS)}, got "{positions}"')
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

    def gains(self):
        """:func:`adapter_gains` of every adapter: ``{"<tower>_<position>": [layers]}``."""
        return {key: adapter_gains(m, self.R[self.r_key(*key.split("_"))]) for key, m in self.M.items()}

    def attach(self, surgery):
        for tower, layers in self.layers.items():
            for layer in range(layers):
                for position in self.positions:
                    surgery.add_input_adapter(tower, layer, position, self.adapter(tower, layer, position))


class DsRALearner(nn.Module):
    """The base method's prompt learner (``prompts``) + the dual-shared adapters (``adapters``), trained together
    and checkpointed as one learner; it stands in for the prompt learner (``forward``, ``tokenized_prompts``)."""

    def __init__(self, prompts, adapters):
        super().__init__()
        self.prompts = prompts
        self.adapters = adapters

    @property
    def tokenized_prompts(self):
        return self.prompts.tokenized_prompts

    def forward(self):
        return self.prompts()


def add_dual_shared_adapters(model, adapters):
    """Attach ``adapters`` to a :class:`PromptCLIP`'s surgery and make ``model.prompt_learner`` the joint learner."""
    adapters.attach(model.surgery)
    model.prompt_learner = DsRALearner(model.prompt_learner, adapters)
    return model.prompt_learner


BASES = {"PromptSRC": PromptSRC, "KgCoOp": KgCoOp, "ProGrad": ProGrad}


@register_trainer
class DsRA(PlugInTrainer):
    """Dual-shared adapters on the base method ``TRAINER.DSRA.BASE`` (PromptSRC by default; KgCoOp or ProGrad for
    the paper's Table 5). An instance is of the class composed over that base (``DsRA`` first in its MRO), so the
    base's model, losses and schedule run unchanged; the base's learner ``prompt_learner`` holds the adapters too.
    With PromptSRC the prompt and loss keys come from ``TRAINER.DSRA``; with KgCoOp / ProGrad from the base's own
    keys (``TRAINER.COOP``, ``LOSS``), and the adapter keys from ``TRAINER.DSRA``."""

    CONFIG_NODE = "DSRA"
    BASES = BASES

    @classmethod
    def base_config_node(cls, base_cls):
        return "DSRA" if base_cls is PromptSRC else base_cls.CONFIG_NODE

    def register_learner(self, name, learner, model=None):
        c = self.cfg.TRAINER.DSRA
        adapters = DualSharedAdapters(model.surgery.model, c.RANK, c.POSITIONS, c.SHARE_MODALITY, c.SHARE_POSITIONS)
        n = sum(p.numel() for p in adapters.parameters())
        print(f"DsRA on {c.BASE}: rank {c.RANK}, positions {c.POSITIONS}, modal-shared R {c.SHARE_MODALITY}, "
              f"position-shared R {c.SHARE_POSITIONS}: {n:,} adapter parameters")
        return super().register_learner(name, add_dual_shared_adapters(model, adapters), model)

    def after_train(self):
        """Log how far the adapters moved from the identity before the final test: per tower and position, the gain
        (:func:`adapter_gains`) of each layer's adapter."""
        gains = self._models["prompt_learner"].adapters.gains()
        print("DsRA adapter gain ||M R_l M^T|| per layer: " + "; ".join(
            f"{key.replace('_', ' ')} " + " ".join(f"{g:.4f}" for g in values.tolist()) for key, values in gains.items()))
        super().after_train()
