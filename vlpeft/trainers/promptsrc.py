"""PromptSRC: self-regulating prompts (Khattak et al., ICCV 2023).
Choices: docs/decisions/baselines.md#promptsrc-teacher and the promptsrc-* entries after it.

IVLP prompts (4 + 4, depth 9) trained with ``L = CE + L_SCL`` (§3.2, Eq. 1-4):

* ``L_SCL_text = TEXT_LOSS_WEIGHT * mean |g_p - g_zs|_1`` between the normalised prompted text features of every
  class and the frozen teacher's: the mean over the 60 ImageNet templates of plain CLIP's (unnormalised) text
  features, normalised after averaging (textual diversity, §3.2.1);
* ``L_SCL_image = IMAGE_LOSS_WEIGHT * mean |f_p - f_zs|_1`` on normalised image features;
* ``L_SCL_logits = KL(p_zs || p)``, summed and divided by the number of logits (as the official code).

The teacher is the same frozen CLIP with every surgery edit disabled, so no second copy of CLIP is held.
Gaussian prompt aggregation (§3.2.2, Eq. 5): after epoch t the prompts are added to a running sum with weight
``w_t ∝ N(t; GPA_MEAN, GPA_STD)`` (normalised over the epochs); after the last epoch the prompts are replaced by the
sum, so the last-epoch checkpoint and the evaluation hold the aggregate. Only trainable tensors are aggregated
(the official code scales and sums the whole state dict, frozen weights included, which with weights summing to 1
only adds rounding). A run cannot resume in the middle of the aggregation.
"""
import math

import torch
import torch.nn.functional as F

from vlpeft.clip import tokenize
from vlpeft.config import trainer_config
from vlpeft.engine import register_trainer

from .base import compute_accuracy, teacher_kl
from .ivlp import IVLP, VLPromptLearner
from .templates import IMAGENET_TEMPLATES
from .text_prompts import clean_classnames

trainer_config("PROMPTSRC", N_CTX_VISION=4, N_CTX_TEXT=4, CTX_INIT="a photo of a", PREC="fp16",
               PROMPT_DEPTH_VISION=9, PROMPT_DEPTH_TEXT=9, TEXT_LOSS_WEIGHT=25, IMAGE_LOSS_WEIGHT=10,
               GPA_MEAN=15, GPA_STD=1)


def gpa_weights(epochs, mean, std):
    """``w_t`` for t = 1..epochs: the N(mean, std) density at t, normalised to sum to 1 (Eq. 5)."""
    density = [math.exp(-0.5 * ((t - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi)) for t in range(1, epochs + 1)]
    total = sum(density)
    if total == 0:
        raise ValueError(f"GPA weights underflow: N({mean}, {std}) is zero at every epoch 1..{epochs}")
    return [d / total for d in density]


class GaussianPromptAggregation:
    """Running ``sum_t w_t * prompts_t`` over the epochs for the tensors of ``module.state_dict()``."""

    def __init__(self, weights):
        self.weights = list(weights)
        self.sum = None

    def add(self, module, epoch):
        """Add the prompts after ``epoch`` (0-based) with weight ``w_{epoch + 1}``."""
        w = self.weights[epoch]
        current = {k: v.detach().double() * w for k, v in module.state_dict().items()}
        self.sum = current if self.sum is None else {k: self.sum[k] + current[k] for k in current}

    def load_into(self, module):
        state = module.state_dict()
        module.load_state_dict({k: self.sum[k].to(state[k].dtype) for k in state})


class ZeroShotTeacher:
    """Plain frozen CLIP (the prompted model's surgery disabled): normalised image features, and text features
    averaged over ``templates`` (unnormalised mean, then normalised) computed once per class set."""

    def __init__(self, prompted_clip, classnames, templates=IMAGENET_TEMPLATES):
        self.model = prompted_clip
        self.classnames = clean_classnames(classnames)
        self.templates = list(templates)
        self._text = None

    @torch.no_grad()
    def text_features(self):
        if self._text is None:
            table = self.model.surgery.model.token_embedding  # stays where CLIP was loaded (not in the model)
            device = self.model.logit_scale.device
            total = 0
            with self.model.surgery.disabled():
                for template in self.templates:
                    tokens = tokenize([template.format(name) for name in self.classnames])
                    embeddings = table(tokens.to(table.weight.device)).to(device)
                    total = total + self.model.text_encoder(embeddings, tokens.to(device)).float()
            mean = total / len(self.templates)
            self._text = mean / mean.norm(dim=-1, keepdim=True)
        return self._text

    def image_features(self, image):
        return self.model.plain_image_features(image)


def self_regulating_losses(logits, text_features, image_features, teacher_logits, teacher_text, teacher_image,
                           text_weight, image_weight):
    """(L_SCL_text, L_SCL_image, L_SCL_logits) of PromptSRC (Eq. 2-4), on normalised features."""
    l_text = F.l1_loss(text_features.float(), teacher_text.float()) * text_weight
    l_image = F.l1_loss(image_features.float(), teacher_image.float()) * image_weight
    return l_text, l_image, teacher_kl(logits, teacher_logits)


@register_trainer
class PromptSRC(IVLP):
    """IVLP prompts + self-regulating losses + Gaussian prompt aggregation; learner ``prompt_learner``."""

    CONFIG_NODE = "PROMPTSRC"

    def build_model(self):
        super().build_model()
        c = self.trainer_cfg
        self.teacher = ZeroShotTeacher(self.model, self.dm.dataset.classnames)
        self.gpa = GaussianPromptAggregation(gpa_weights(self.cfg.OPTIM.MAX_EPOCH, c.GPA_MEAN, c.GPA_STD))

    def before_train(self):
        super().before_train()
        if self.gpa is not None and 0 < self.start_epoch < self.max_epoch:
            raise RuntimeError(
                f"{type(self).__name__} aggregates the prompts of every epoch (GPA) and cannot resume at epoch "
                f"{self.start_epoch + 1}: remove {self.output_dir} (or use a new --output-dir) and train again")

    def regularised_loss(self, image, label):
        """(loss, logits, summary) of Eq. 1: CE + the self-regulating terms."""
        c = self.trainer_cfg
        model = self.model
        text_features = model.text_features()
        image_features = model.image_features(image)
        logits = model.logits(image_features, text_features)
        loss_ce = F.cross_entropy(logits, label)
        teacher_text = self.teacher.text_features()
        teacher_image = self.teacher.image_features(image)
        teacher_logits = model.logits(teacher_image, teacher_text)
        l_text, l_image, l_logits = self_regulating_losses(logits, text_features, image_features, teacher_logits,
                                                           teacher_text, teacher_image, c.TEXT_LOSS_WEIGHT,
                                                           c.IMAGE_LOSS_WEIGHT)
        loss = loss_ce + l_text + l_image + l_logits
        summary = {"loss": loss.item(), "loss_ce": loss_ce.item(), "loss_text": l_text.item(),
                   "loss_image": l_image.item(), "loss_kl": l_logits.item(),
                   "acc": compute_accuracy(logits, label)[0].item()}
        return loss, summary

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            loss, summary = self.regularised_loss(image, label)
        self.backward_and_update(loss)
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
            self.aggregate_prompts()
        return summary

    def aggregate_prompts(self):
        """End of an epoch: add the prompts to the GPA sum; after the last epoch, replace them by it."""
        learner = self._models["prompt_learner"]
        self.gpa.add(learner, self.epoch)
        if self.epoch + 1 == self.max_epoch:
            print("Using GPA model for final inference...")
            self.gpa.load_into(learner)
