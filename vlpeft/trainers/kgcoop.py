"""KgCoOp: knowledge-guided context optimization (Yao et al., CVPR 2023, §3.3, Eq. 5-6).
Choices: docs/decisions/baselines.md#kgcoop-ctx-init.

CoOp's unified context (4 vectors from "a photo of a") trained with
``L = CE + W * (1 - mean_c cos(g_c, g_c^clip))``: the prompted text feature of every class is held near the frozen
CLIP feature of the dataset's hand-crafted template (CoOp's per-dataset templates, e.g. "a centered satellite photo
of {}."; "a photo of a {}." for datasets outside that list). As the official code, the trainer reads CoOp's config
node (``TRAINER.COOP``) plus ``TRAINER.COOP.W`` (lambda, 8.0 in the official scripts), and any ``CTX_INIT`` means
"a photo of a". The official prompt learner also builds a meta-net, an adapter and a bias vector that are never
trained or used; they are left out.
"""
import torch
import torch.nn.functional as F

from vlpeft.clip import tokenize
from vlpeft.config import extend_trainer_config
from vlpeft.engine import register_trainer

from .base import compute_accuracy
from .coop import CoOp, CustomCLIP
from .templates import dataset_template
from .text_prompts import clean_classnames

extend_trainer_config("COOP", W=8.0)
KGCOOP_CTX_INIT = "a photo of a"


@torch.no_grad()
def template_text_features(clip_model, classnames, template):
    """Normalised frozen CLIP text features of ``template.format(class)`` for every class."""
    device = clip_model.logit_scale.device
    tokens = tokenize([template.format(name) for name in clean_classnames(classnames)]).to(device)
    features = clip_model.encode_text(tokens).float()
    return features / features.norm(dim=-1, keepdim=True)


def knowledge_guidance(text_features, teacher_text_features):
    """``1 - mean_c cos(g_c, g_c^clip)`` (Eq. 5) on normalised features."""
    return 1.0 - F.cosine_similarity(text_features.float(), teacher_text_features.float(), dim=-1, eps=1e-7).mean()


@register_trainer
class KgCoOp(CoOp):
    """CoOp + knowledge guidance; learner ``prompt_learner``."""

    CONFIG_NODE = "COOP"

    def build_model(self):
        cfg = self.cfg
        if cfg.TRAINER.COOP.CTX_INIT and cfg.TRAINER.COOP.CTX_INIT.replace("_", " ") != KGCOOP_CTX_INIT:
            print(f'KgCoOp initialises the context from "{KGCOOP_CTX_INIT}" whenever CTX_INIT is set '
                  f'(got "{cfg.TRAINER.COOP.CTX_INIT}"), as the official code')
        if cfg.TRAINER.COOP.CTX_INIT:
            cfg = cfg.clone()
            cfg.defrost()
            cfg.TRAINER.COOP.CTX_INIT = KGCOOP_CTX_INIT
        classnames = self.dm.dataset.classnames
        clip_model = self.load_frozen_clip()
        template = dataset_template(self.cfg.DATASET.NAME)
        print(f'Knowledge guidance: frozen CLIP features of "{template}", weight W = {self.cfg.TRAINER.COOP.W}')
        self.teacher_text_features = template_text_features(clip_model, classnames, template)
        print("Building custom CLIP")
        self.model = CustomCLIP(cfg, classnames, clip_model)
        self.register_learner("prompt_learner", self.model.prompt_learner, model=self.model)
        self.teacher_text_features = self.teacher_text_features.to(self.device)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            text_features = self.model.text_features()
            logits = self.model.logits(self.model.image_features(image), text_features)
            loss_ce = F.cross_entropy(logits, label)
            score = knowledge_guidance(text_features, self.teacher_text_features)
            loss = loss_ce + self.cfg.TRAINER.COOP.W * score
        self.backward_and_update(loss)
        self.step_lr_at_epoch_end()
        return {"loss": loss.item(), "loss_ce": loss_ce.item(), "score": score.item(),
                "acc": compute_accuracy(logits, label)[0].item()}
