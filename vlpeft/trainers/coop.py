"""CoOp: learnable context vectors in front of the class name (Zhou et al., "Learning to Prompt for Vision-Language
Models", IJCV 2022, §3.2). Unified or class-specific context (CSC); class token at the end, middle or front; context
initialised from words (``CTX_INIT``) or N(0, 0.02^2). Loss: cross-entropy (Eq. 2)."""
import torch
import torch.nn as nn

from vlpeft.config import trainer_config
from vlpeft.engine import register_trainer

from .base import ClipTrainer, PromptCLIP
from .text_prompts import ClassPromptEmbeddings, context_from_words, random_context

trainer_config("COOP", N_CTX=16, CSC=False, CTX_INIT="", PREC="fp16", CLASS_TOKEN_POSITION="end")


class PromptLearner(nn.Module):
    """``ctx`` ([n_ctx, D], or [n_cls, n_ctx, D] with CSC) is the only trainable (and only persistent) tensor.

    ``init``: (context vectors, prompt prefix) chosen by a derived method (e.g. ProGrad's template init)."""

    def __init__(self, cfg, classnames, clip_model, init=None):
        super().__init__()
        coop = cfg.TRAINER.COOP
        ctx_dim = clip_model.ln_final.weight.shape[0]
        if init is not None:
            ctx_vectors, prompt_prefix = init
        elif coop.CTX_INIT:
            if coop.CSC:
                raise ValueError("TRAINER.COOP.CSC with CTX_INIT is not supported (CoOp initialises CSC randomly)")
            ctx_vectors, prompt_prefix = context_from_words(clip_model, coop.CTX_INIT)
        else:
            n_cls = len(classnames) if coop.CSC else None
            print("Initializing class-specific contexts" if coop.CSC else "Initializing a generic context")
            ctx_vectors = random_context(coop.N_CTX, ctx_dim, n_cls=n_cls)
            prompt_prefix = " ".join(["X"] * coop.N_CTX)
        n_ctx = ctx_vectors.shape[-2]
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx_vectors)
        self.classes = ClassPromptEmbeddings(clip_model, classnames, prompt_prefix, n_ctx)
        self.class_token_position = coop.CLASS_TOKEN_POSITION
        self.n_cls, self.n_ctx = len(classnames), n_ctx

    @property
    def tokenized_prompts(self):
        return self.classes.tokenized_prompts

    def forward(self):
        ctx = self.ctx
        if ctx.dim() == 2:
            ctx = ctx.unsqueeze(0).expand(self.n_cls, -1, -1)
        return self.classes.assemble(ctx, self.class_token_position)


class CustomCLIP(PromptCLIP):
    """logits = exp(logit_scale) * cos(image feature, text feature of each class prompt)."""

    def __init__(self, cfg, classnames, clip_model, init=None):
        super().__init__(PromptLearner(cfg, classnames, clip_model, init), clip_model)


@register_trainer
class CoOp(ClipTrainer):
    """Context Optimization; registered learner ``prompt_learner`` (as in the official code)."""

    CONFIG_NODE = "COOP"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        position = cfg.TRAINER.COOP.CLASS_TOKEN_POSITION
        if position not in ("end", "middle", "front"):
            raise ValueError(f'TRAINER.COOP.CLASS_TOKEN_POSITION must be end, middle or front, got "{position}"')

    def build_model(self):
        classnames = self.dm.dataset.classnames
        clip_model = self.load_frozen_clip()
        print("Building custom CLIP")
        self.model = CustomCLIP(self.cfg, classnames, clip_model)
        self.register_learner("prompt_learner", self.model.prompt_learner, model=self.model)
