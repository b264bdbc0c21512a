"""MaPLe: multi-modal prompt learning (Khattak et al., CVPR 2023, §3.2-3.3, Eq. 5-8).
Choices: docs/decisions/baselines.md#maple-couplings.

Text prompts ``P_0`` (``ctx``, first ``N_CTX`` tokens of CTX_INIT, as IVLP) and ``P_l`` (blocks 1 .. J-1, overwriting
positions 1..N_CTX); the vision prompts are *generated* by the coupling functions: ``V_0 = F_0(P_0)`` appended at
the vision input and ``V_l = F_l(P_l)`` overwriting the last N_CTX tokens of vision block l (Eq. 7-8). Each ``F`` is
a Linear(text width -> vision width) with bias. Init as the official code: ``F_0`` default Linear init, the deep
prompts N(0, 0.02^2), and the deep couplings ``F_1 .. F_{J-1}`` deep copies of one default-initialised Linear
(identical at step 0). Loss: cross-entropy.
"""
import copy

import torch.nn as nn

from vlpeft.clip.surgery import ClipSurgery
from vlpeft.config import trainer_config
from vlpeft.engine import register_trainer

from .base import ClipTrainer
from .ivlp import PromptedCLIP, first_layer_context
from .text_prompts import ClassPromptEmbeddings, random_context

trainer_config("MAPLE", N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9)


class MultiModalPromptLearner(nn.Module):
    """``ctx`` [N, D_t], ``proj`` (F_0), ``compound_prompts_text[l-1]`` (P_l) and
    ``compound_prompt_projections[l-1]`` (F_l), named as in the official code. Subclasses change what a prompt and a
    coupling are (:meth:`make_prompt`, :meth:`make_coupling`; e.g. DIP's low-rank prompts) and keep the wiring."""

    def __init__(self, clip_model, classnames, n_ctx, depth, ctx_init):
        super().__init__()
        if depth < 1:
            raise ValueError("MaPLe needs PROMPT_DEPTH >= 1 (1 = shallow MaPLe)")
        blocks = min(len(clip_model.transformer.resblocks), len(clip_model.visual.transformer.resblocks))
        if depth > blocks:
            raise ValueError(f"PROMPT_DEPTH is {depth} but the towers have {blocks} blocks")
        text_dim = clip_model.ln_final.weight.shape[0]
        vision_dim = clip_model.visual.conv1.weight.shape[0]
        self.proj = self.make_coupling(text_dim, vision_dim)
        ctx, prefix = first_layer_context(clip_model, ctx_init, n_ctx)
        print("MaPLe design: Multi-modal Prompt Learning")
        print(f'Initial context: "{prefix}"')
        print(f"Number of MaPLe context words (tokens): {n_ctx}")
        self.ctx = self.make_prompt(ctx)
        deep = [self.make_prompt(random_context(n_ctx, text_dim)) for _ in range(depth - 1)]
        self.compound_prompts_text = nn.ModuleList(deep) if deep and isinstance(deep[0], nn.Module) \
            else nn.ParameterList(deep)
        coupling = self.make_coupling(text_dim, vision_dim)
        self.compound_prompt_projections = nn.ModuleList([copy.deepcopy(coupling) for _ in range(depth - 1)])
        self.classes = ClassPromptEmbeddings(clip_model, classnames, prefix, n_ctx)
        self.n_ctx = n_ctx

    def make_prompt(self, init):
        """A text prompt: a parameter [N_CTX, D_t] (or a module returning one) initialised to ``init``."""
        return nn.Parameter(init)

    def make_coupling(self, text_dim, vision_dim):
        """A coupling function F: text width -> vision width."""
        return nn.Linear(text_dim, vision_dim)

    @property
    def tokenized_prompts(self):
        return self.classes.tokenized_prompts

    def text_prompt(self, layer):
        """``P_l`` [N_CTX, D_t]."""
        prompt = self.ctx if layer == 0 else self.compound_prompts_text[layer - 1]
        return prompt() if isinstance(prompt, nn.Module) else prompt

    def coupling(self, layer):
        """``F_l``: the coupling function generating the vision prompts of block ``layer``."""
        return self.proj if layer == 0 else self.compound_prompt_projections[layer - 1]

    def vision_prompts(self, layer):
        """``V_l = F_l(P_l)`` [N_CTX, D_v] (Eq. 7-8)."""
        return self.coupling(layer)(self.text_prompt(layer))

    def attach(self, surgery: ClipSurgery):
        surgery.append("vision", lambda: self.vision_prompts(0))
        for layer in range(1, len(self.compound_prompts_text) + 1):
            surgery.write("text", layer, 1, lambda l=layer: self.text_prompt(l))
            surgery.write("vision", layer, -self.n_ctx, lambda l=layer: self.vision_prompts(l))

    def forward(self):
        return self.classes.assemble(self.text_prompt(0).unsqueeze(0).expand(self.classes.n_cls, -1, -1))


@register_trainer
class MaPLe(ClipTrainer):
    """Multi-modal prompt learning; registered learner ``prompt_learner``; loss: cross-entropy."""

    CONFIG_NODE = "MAPLE"

    def build_model(self):
        c = self.trainer_cfg
        clip_model = self.load_frozen_clip()
        print("Building custom CLIP")
        learner = MultiModalPromptLearner(clip_model, self.dm.dataset.classnames, c.N_CTX, c.PROMPT_DEPTH,
                                          c.CTX_INIT)
        self.model = PromptedCLIP(learner, clip_model)
        self.register_learner("prompt_learner", learner, model=self.model)
