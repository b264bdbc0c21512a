"""IVLP: independent vision-language deep prompts (Khattak et al., MaPLe, CVPR 2023, §4 baseline "IVLP"; the
architecture of PromptSRC, ICCV 2023, §3.1). Choices: docs/decisions/baselines.md#prompt-depth, #ivlp-first-layer-init.

* text: ``N_CTX_TEXT`` context vectors at positions 1..M of the prompt "<CTX_INIT> <class>." (CoOp-style, layer 0),
  and fresh vectors overwriting those positions at the input of blocks 1 .. PROMPT_DEPTH_TEXT - 1;
* vision: ``N_CTX_VISION`` tokens appended after the positional embedding (before ``ln_pre``) and fresh tokens
  overwriting the last M positions at the input of blocks 1 .. PROMPT_DEPTH_VISION - 1 (depth 0: no vision prompts).

Init as the official code: with ``CTX_INIT`` and ``N_CTX_TEXT <= 4`` the first-layer context is the embedding of
the first ``N_CTX_TEXT`` tokens of CTX_INIT and the tokenised text keeps the whole CTX_INIT (so with 2 tokens
"of a" stays as fixed words); otherwise N(0, 0.02^2) with "X" placeholders. Every deeper prompt is N(0, 0.02^2).
The prompts are attached to the frozen open_clip model through :class:`vlpeft.clip.surgery.ClipSurgery`.
"""
import torch
import torch.nn as nn

from vlpeft.clip import tokenize
from vlpeft.clip.surgery import ClipSurgery
from vlpeft.config import trainer_config
from vlpeft.engine import register_trainer

from .base import ClipTrainer, PromptCLIP
from .text_prompts import ClassPromptEmbeddings, random_context

trainer_config("IVLP", N_CTX_VISION=2, N_CTX_TEXT=2, CTX_INIT="a photo of a", PREC="fp16",
               PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9)


@torch.no_grad()
def first_layer_context(clip_model, ctx_init, n_ctx):
    """(vectors [n_ctx, D] fp32, prompt prefix): the official IVLP / MaPLe / PromptSRC initialisation."""
    if ctx_init and n_ctx <= 4:
        ctx_init = ctx_init.replace("_", " ")
        embedding = clip_model.token_embedding(tokenize(ctx_init))
        return embedding[0, 1:1 + n_ctx].float().clone(), ctx_init
    return random_context(n_ctx, clip_model.ln_final.weight.shape[0]), " ".join(["X"] * n_ctx)


def deep_prompts(depth, n_tokens, dim):
    """``depth - 1`` prompt matrices [n_tokens, dim] ~ N(0, 0.02^2) for blocks 1 .. depth - 1."""
    return nn.ParameterList([nn.Parameter(random_context(n_tokens, dim)) for _ in range(max(depth - 1, 0))])


class VLPromptLearner(nn.Module):
    """All IVLP prompts: ``ctx`` (text, layer 0), ``text_deep[l-1]`` (text block l), ``vision_ctx`` (vision input),
    ``vision_deep[l-1]`` (vision block l). :meth:`attach` wires them into a :class:`ClipSurgery`."""

    def __init__(self, clip_model, classnames, n_ctx_text, n_ctx_vision, depth_text, depth_vision, ctx_init):
        super().__init__()
        if depth_text < 1:
            raise ValueError("IVLP needs a text prompt depth >= 1 (PROMPT_DEPTH_TEXT)")
        text_dim = clip_model.ln_final.weight.shape[0]
        vision_dim = clip_model.visual.conv1.weight.shape[0]
        for name, depth, n_blocks in (("TEXT", depth_text, len(clip_model.transformer.resblocks)),
                                      ("VISION", depth_vision, len(clip_model.visual.transformer.resblocks))):
            if depth > n_blocks:
                raise ValueError(f"PROMPT_DEPTH_{name} is {depth} but the tower has {n_blocks} blocks")
        ctx, prefix = first_layer_context(clip_model, ctx_init, n_ctx_text)
        print("Independent V-L design")
        print(f'Initial text context: "{prefix}"')
        print(f"Number of context words (tokens) for Language prompting: {n_ctx_text}")
        print(f"Number of context words (tokens) for Vision prompting: {n_ctx_vision}")
        self.ctx = nn.Parameter(ctx)
        self.text_deep = deep_prompts(depth_text, n_ctx_text, text_dim)
        self.vision_ctx = nn.Parameter(random_context(n_ctx_vision, vision_dim)) if depth_vision >= 1 else None
        self.vision_deep = deep_prompts(depth_vision, n_ctx_vision, vision_dim)
        self.classes = ClassPromptEmbeddings(clip_model, classnames, prefix, n_ctx_text)
        self.n_ctx_text, self.n_ctx_vision = n_ctx_text, n_ctx_vision

    @property
    def tokenized_prompts(self):
        return self.classes.tokenized_prompts

    def attach(self, surgery: ClipSurgery):
        # the closures read the attributes at call time, so a parametrised prompt (DPC) is seen as it is now
        for layer in range(1, len(self.text_deep) + 1):
            surgery.write("text", layer, 1, lambda i=layer - 1: self.text_deep[i])
        if self.vision_ctx is not None:
            surgery.append("vision", lambda: self.vision_ctx)
        for layer in range(1, len(self.vision_deep) + 1):
            surgery.write("vision", layer, -self.n_ctx_vision, lambda i=layer - 1: self.vision_deep[i])

    def forward(self):
        """Prompt embeddings [n_cls, 77, D] of the first layer."""
        return self.classes.assemble(self.ctx.unsqueeze(0).expand(self.classes.n_cls, -1, -1))


class PromptedCLIP(PromptCLIP):
    """:class:`PromptCLIP` with the learner's edits attached through its surgery layer (``prompt_learner.attach``)."""

    def __init__(self, prompt_learner, clip_model):
        super().__init__(prompt_learner, clip_model)
        prompt_learner.attach(self.surgery)


@register_trainer
class IVLP(ClipTrainer):
    """Independent V-L prompting; registered learner ``prompt_learner``; loss: cross-entropy."""

    CONFIG_NODE = "IVLP"

    def build_prompt_learner(self, clip_model, classnames):
        c = self.trainer_cfg
        return VLPromptLearner(clip_model, classnames, c.N_CTX_TEXT, c.N_CTX_VISION, c.PROMPT_DEPTH_TEXT,
                               c.PROMPT_DEPTH_VISION, c.CTX_INIT)

    def build_model(self):
        clip_model = self.load_frozen_clip()
        print("Building custom CLIP")
        learner = self.build_prompt_learner(clip_model, self.dm.dataset.classnames)
        self.model = PromptedCLIP(learner, clip_model)
        self.register_learner("prompt_learner", learner, model=self.model)
