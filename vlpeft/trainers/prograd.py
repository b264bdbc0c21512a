"""ProGrad: prompt-aligned gradient (Zhu et al., ICCV 2023, §3.2, Eq. 4-6).
Choices: docs/decisions/baselines.md#prograd-template-init and the prograd-* entries after it.

CoOp's context (16 vectors) trained on cross-entropy whose gradient is projected whenever it conflicts with the
gradient of a distillation loss towards zero-shot CLIP (``KD = -sum p_zs log p * T^2``, teacher = the frozen CLIP with
the dataset's hand-crafted template): per parameter tensor, if ``g_ce . g_kd < 0`` then
``g <- g_ce - LAMBDA (g_ce . g_kd_hat) g_kd_hat``, else ``g <- g_ce`` (Eq. 6). The projection is done here, in the
trainer's update, not in a Dassl fork, so it runs on either engine.

Config keys as the official code: ``TRAINER.COOP.*`` and ``LOSS.NAME`` ("prograd"; "kd" = plain distillation
``(1 - ALPHA) CE + ALPHA KD``), ``LOSS.T``, ``LOSS.LAMBDA``, ``LOSS.ALPHA``. With ``CTX_INIT`` set (any non-empty
string: vlpeft's ``TRAINER.COOP.CTX_INIT`` is CoOp's string key, where ProGrad's own train.py made it a bool and its
configs write ``True``), the template's
prefix (the template without " {}.") is embedded into the last context slots and the slots before it are zeros; the
prefix length is counted in words, as the official code (so with "a type of pet, a photo of a {}." part of the
template stays as fixed words after the 16 slots). ProGrad's templates differ from CoOp's for five datasets.
"""
import torch
import torch.nn.functional as F

from vlpeft.clip import tokenize
from vlpeft.config import common_config
from vlpeft.engine import register_trainer

from .base import compute_accuracy
from .coop import CoOp, CustomCLIP
from .kgcoop import template_text_features
from .templates import CUSTOM_TEMPLATES, DEFAULT_TEMPLATE

common_config(**{"LOSS.NAME": "prograd", "LOSS.T": 1.0, "LOSS.LAMBDA": 1.0, "LOSS.ALPHA": 0.0})

PROGRAD_TEMPLATES = dict(CUSTOM_TEMPLATES, **{
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
})


def prograd_template(dataset_name):
    return PROGRAD_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


@torch.no_grad()
def template_context(clip_model, template, n_ctx):
    """(context [n_ctx, D] fp32: zeros, then the template prefix's token embeddings in the last slots; prefix)."""
    words = template.replace(" {}.", "").replace("_", " ")
    n_words = len(words.split(" "))
    if n_ctx < n_words:
        raise ValueError(f"TRAINER.COOP.N_CTX ({n_ctx}) must be >= the number of words of the template prefix "
                         f'"{words}" ({n_words})')
    embedding = clip_model.token_embedding(tokenize(words))
    ctx = torch.zeros(n_ctx, embedding.shape[-1])
    ctx[n_ctx - n_words:] = embedding[0, 1:1 + n_words].float()
    return ctx, " ".join(["X"] * (n_ctx - n_words) + [words])


def project_conflicting_gradient(g_ce, g_kd, lambda_=1.0):
    """Eq. 6 for one tensor: ``g_ce`` minus ``lambda_`` times its projection on ``g_kd`` when they conflict."""
    g_kd_hat = g_kd / torch.linalg.norm(g_kd)
    dot = torch.dot(g_ce.flatten(), g_kd_hat.flatten())
    if dot < 0:
        return g_ce - lambda_ * dot * g_kd_hat
    return g_ce


def distillation_loss(logits, teacher_logits, temperature):
    """``-sum_c p_zs log p * T^2``, averaged over the batch."""
    teacher = F.softmax(teacher_logits.float() / temperature, dim=-1)
    return -(teacher * F.log_softmax(logits.float() / temperature, dim=-1)).sum(1).mean() * temperature ** 2


@register_trainer
class ProGrad(CoOp):
    """CoOp + prompt-aligned gradient; learner ``prompt_learner``."""

    CONFIG_NODE = "COOP"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        if cfg.LOSS.NAME not in ("prograd", "kd"):
            raise ValueError(f'LOSS.NAME must be "prograd" or "kd" for ProGrad, got "{cfg.LOSS.NAME}"')
        if cfg.TRAINER.COOP.PREC == "amp" and cfg.LOSS.NAME == "prograd":
            raise ValueError("ProGrad's gradient projection runs with PREC fp16, bf16 or fp32, not amp")

    def build_model(self):
        cfg = self.cfg
        classnames = self.dm.dataset.classnames
        clip_model = self.load_frozen_clip()
        template = prograd_template(cfg.DATASET.NAME)
        print(f'Zero-shot teacher: "{template}"')
        self.teacher_text_features = template_text_features(clip_model, classnames, template)
        print("Building custom CLIP")
        init = None
        if cfg.TRAINER.COOP.CTX_INIT:
            if cfg.TRAINER.COOP.CSC:
                raise ValueError("TRAINER.COOP.CSC with CTX_INIT is not supported")
            init = template_context(clip_model, template, cfg.TRAINER.COOP.N_CTX)
        self.model = CustomCLIP(cfg, classnames, clip_model, init)
        self.register_learner("prompt_learner", self.model.prompt_learner, model=self.model)
        self.teacher_text_features = self.teacher_text_features.to(self.device)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        loss_cfg = self.cfg.LOSS
        with self.autocast():
            image_features = self.model.image_features(image)  # the frozen encoder serves student and teacher
            logits = self.model.logits(image_features, self.model.text_features())
            loss_ce = F.cross_entropy(logits, label)
            teacher_logits = self.model.logits(self.zero_shot_image_features(image, image_features),
                                               self.teacher_text_features)
            loss_kd = distillation_loss(logits, teacher_logits, loss_cfg.T)
        if loss_cfg.NAME == "kd":
            self.backward_and_update((1 - loss_cfg.ALPHA) * loss_ce + loss_cfg.ALPHA * loss_kd)
        else:
            self.prograd_update(loss_ce, loss_kd, loss_cfg.LAMBDA)
        self.step_lr_at_epoch_end()
        return {"xe_loss": loss_ce.item(), "kl_loss": loss_kd.item(), "acc": compute_accuracy(logits, label)[0].item()}

    def zero_shot_image_features(self, image, image_features):
        """The frozen CLIP's image features: the student's own, unless edits in the vision tower (DsRA's plug-in
        adapters) make them differ from plain CLIP's."""
        if "vision" not in self.model.surgery.edited_towers:
            return image_features.detach().float()
        return self.model.plain_image_features(image).float()

    def prograd_update(self, loss_ce, loss_kd, lambda_):
        """Backward both losses, project the CE gradient per tensor (Eq. 6), step the optimizer."""
        self.detect_anomaly(loss_kd)
        self.detect_anomaly(loss_ce)
        params = [p for name in self.get_model_names() for p in self._models[name].parameters() if p.requires_grad]
        kd_grads = torch.autograd.grad(loss_kd, params, retain_graph=True, allow_unused=True)
        self.model_zero_grad()
        loss_ce.backward()
        for p, g_kd in zip(params, kd_grads):
            if p.grad is not None and g_kd is not None:
                p.grad = project_conflicting_gradient(p.grad, g_kd, lambda_)
        self.model_update()
