"""CoCoOp: context vectors shifted by a meta-net of the image feature, pi(x), so every image gets its own prompts
(Zhou et al., "Conditional Prompt Learning for Vision-Language Models", CVPR 2022, §3.2, Eq. 3-4).
Meta-net: Linear(d_vis, d_vis/16) - ReLU - Linear(d_vis/16, D) on the normalised image feature."""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlpeft.clip import ImageEncoder, TextEncoder
from vlpeft.config import trainer_config
from vlpeft.engine import register_trainer

from .base import ClipTrainer
from .text_prompts import ClassPromptEmbeddings, context_from_words, random_context

trainer_config("COCOOP", N_CTX=16, CTX_INIT="", PREC="fp16")


class PromptLearner(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        cocoop = cfg.TRAINER.COCOOP
        ctx_dim = clip_model.ln_final.weight.shape[0]
        vis_dim = clip_model.visual.output_dim
        if cocoop.CTX_INIT:
            ctx_vectors, prompt_prefix = context_from_words(clip_model, cocoop.CTX_INIT)
        else:
            ctx_vectors = random_context(cocoop.N_CTX, ctx_dim)
            prompt_prefix = " ".join(["X"] * cocoop.N_CTX)
        n_ctx = ctx_vectors.shape[0]
        print(f'Initial context: "{prompt_prefix}"')
        print(f"Number of context words (tokens): {n_ctx}")
        self.ctx = nn.Parameter(ctx_vectors)
        self.meta_net = nn.Sequential(OrderedDict([
            ("linear1", nn.Linear(vis_dim, vis_dim // 16)),
            ("relu", nn.ReLU(inplace=True)),
            ("linear2", nn.Linear(vis_dim // 16, ctx_dim)),
        ]))
        self.classes = ClassPromptEmbeddings(clip_model, classnames, prompt_prefix, n_ctx)
        self.n_cls, self.n_ctx = len(classnames), n_ctx

    @property
    def tokenized_prompts(self):
        return self.classes.tokenized_prompts

    def forward(self, image_features):
        """``[B, n_cls, L, D]`` prompts for ``[B, d_vis]`` normalised image features."""
        bias = self.meta_net(image_features.float()).unsqueeze(1)  # [B, 1, D]
        ctx_shifted = self.ctx.unsqueeze(0) + bias  # [B, n_ctx, D]
        ctx = ctx_shifted.unsqueeze(1).expand(-1, self.n_cls, -1, -1)  # [B, n_cls, n_ctx, D]
        batch = ctx.shape[0]
        prefix = self.classes.token_prefix.unsqueeze(0).expand(batch, -1, -1, -1)
        suffix = self.classes.token_suffix.unsqueeze(0).expand(batch, -1, -1, -1)
        return torch.cat([prefix, ctx.to(prefix.dtype), suffix], dim=2)


class CustomCLIP(nn.Module):
    def __init__(self, cfg, classnames, clip_model):
        super().__init__()
        self.prompt_learner = PromptLearner(cfg, classnames, clip_model)
        self.image_encoder = ImageEncoder(clip_model)
        self.text_encoder = TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale

    def forward(self, image):
        image_features = self.image_encoder(image)
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        prompts = self.prompt_learner(image_features)  # [B, n_cls, L, D]
        batch, n_cls = prompts.shape[:2]
        tokenized = self.prompt_learner.tokenized_prompts.repeat(batch, 1)
        text_features = self.text_encoder(prompts.flatten(0, 1), tokenized).view(batch, n_cls, -1)
        text_features = text_features / text_features.norm(dim=-1, keepdim=True)
        logits = torch.einsum("bd,bcd->bc", image_features, text_features.to(image_features.dtype))
        return self.logit_scale.exp() * logits


@register_trainer
class CoCoOp(ClipTrainer):
    """Conditional Context Optimization; registered learner ``prompt_learner``. The text encoder runs once per
    image, so ``DATALOADER.TEST.BATCH_SIZE`` bounds evaluation memory."""

    CONFIG_NODE = "COCOOP"

    def build_model(self):
        classnames = self.dm.dataset.classnames
        clip_model = self.load_frozen_clip()
        print("Building custom CLIP")
        self.model = CustomCLIP(self.cfg, classnames, clip_model)
        self.register_learner("prompt_learner", self.model.prompt_learner, model=self.model)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            loss = F.cross_entropy(self.model(image), label)
        self.backward_and_update(loss)
        self.step_lr_at_epoch_end()
        return {"loss": loss.item()}
