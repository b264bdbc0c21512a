"""Zero-shot CLIP (Radford et al., 2021) as the CoOp repository evaluates it: ``ZeroshotCLIP`` uses the dataset's
hand-crafted template, ``ZeroshotCLIP2`` averages the normalised text features of the 7 selected ImageNet templates
(plus the dataset's own template for datasets other than ImageNet)."""
import torch
import torch.nn as nn

from vlpeft.clip import ImageEncoder, tokenize
from vlpeft.engine import register_trainer

from .base import ClipTrainer
from .templates import IMAGENET_TEMPLATES_SELECT, dataset_template
from .text_prompts import clean_classnames


@torch.no_grad()
def zeroshot_text_features(clip_model, classnames, templates, device):
    """Normalised text features ``[n_cls, E]``, averaged over ``templates`` (then normalised again) when several."""
    classnames = clean_classnames(classnames)
    per_template = []
    for template in templates:
        tokens = tokenize([template.format(name) for name in classnames]).to(device)
        features = clip_model.encode_text(tokens).float()
        per_template.append(features / features.norm(dim=-1, keepdim=True))
    features = torch.stack(per_template).mean(dim=0)
    return features / features.norm(dim=-1, keepdim=True)


class ZeroshotClassifier(nn.Module):
    def __init__(self, clip_model, text_features):
        super().__init__()
        self.image_encoder = ImageEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.register_buffer("text_features", text_features, persistent=False)

    def forward(self, image):
        image_features = self.image_encoder(image).float()
        image_features = image_features / image_features.norm(dim=-1, keepdim=True)
        return self.logit_scale.exp().float() * image_features @ self.text_features.t()


@register_trainer
class ZeroshotCLIP(ClipTrainer):
    """Nothing is trained; ``train.py`` evaluates (use ``--eval-only`` as CoOp's scripts do)."""

    CONFIG_NODE = "COOP"

    def templates(self):
        return [dataset_template(self.cfg.DATASET.NAME)]

    def build_model(self):
        classnames = self.dm.dataset.classnames
        clip_model = self.load_frozen_clip().to(self.device)
        templates = self.templates()
        print(f"Prompt templates: {templates}")
        text_features = zeroshot_text_features(clip_model, classnames, templates, self.device)
        self.model = ZeroshotClassifier(clip_model, text_features).to(self.device)
        self.scaler = None

    def set_model_mode(self, mode="train", names=None):
        self.model.train(mode == "train")

    def train(self):
        print(f"{type(self).__name__} has no trainable parameters: evaluating only")
        self.test()


@register_trainer
class ZeroshotCLIP2(ZeroshotCLIP):
    """Prompt ensembling over ``IMAGENET_TEMPLATES_SELECT`` (+ the dataset's template outside ImageNet)."""

    def templates(self):
        templates = list(IMAGENET_TEMPLATES_SELECT)
        if self.cfg.DATASET.NAME != "ImageNet":
            templates.append(dataset_template(self.cfg.DATASET.NAME))
        return templates
