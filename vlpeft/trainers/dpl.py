"""DPL: differentiable prompt learning (Huang et al., IJCAI 2025, §3.1-3.2, Eq. 3-9): the prompt modules.

Every residual block l of both encoders takes K/V-only prompt tokens ``E_l`` [c_l, d] that its attention attends to
(through the block's ``ln_1``, as the official block normalises them); the sequence length never changes and no
input tokens are learned. The search stage (supernet) holds, per block and per option c of ``OPTIONS`` (the paper's
{0, 2, 4, 6}; the official code's {0, ..., 6}), one prompt ``E_{l,c}`` and a row of architecture weights ``alpha_l``;
the block's attention output is ``sum_c softmax(alpha_l)_c Attn(ln_1 x, ln_1 [x; E_{l,c}])`` (Eq. 6-7,
:meth:`vlpeft.clip.surgery.ClipSurgery.add_kv_mixture`). The found configuration is ``c_l = OPTIONS[argmax_c
alpha_l]`` per block and tower (first maximum on ties), trained from scratch by the subnet (``c_l`` tokens per block,
N(0, 0.02^2)). Choices: docs/decisions/dpl.md.
"""
import json
import os
import os.path as osp
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlpeft.clip import tokenize
from vlpeft.config import trainer_config
from vlpeft.engine import build_data_loader, build_transform, register_trainer
from vlpeft.engine.utils import atomic_write_text

from .base import ClipTrainer, PromptCLIP, VersionedCache, check_choices, compute_accuracy, teacher_kl
from .templates import IMAGENET_TEMPLATES, dataset_template
from .text_prompts import clean_classnames

TOWERS = ("text", "vision")
PAPER_OPTIONS = (0, 2, 4, 6)
CODE_OPTIONS = (0, 1, 2, 3, 4, 5, 6)


def tower_shapes(clip_model):
    """{tower: (number of blocks, width)}."""
    return {"text": (len(clip_model.transformer.resblocks), clip_model.ln_final.weight.shape[0]),
            "vision": (len(clip_model.visual.transformer.resblocks), clip_model.visual.conv1.weight.shape[0])}


def check_options(options):
    options = tuple(int(c) for c in options)
    if not options or len(set(options)) != len(options) or min(options) < 0:
        raise ValueError(f"DPL options must be distinct prompt lengths >= 0, got {list(options)}")
    return options


class ArchitectureWeights(nn.Module):
    """``alpha`` [blocks, len(options)] per tower (the official init: 1e-3 N(0, 1)); ``softmax`` per block."""

    def __init__(self, blocks, options, std=1e-3):
        super().__init__()
        self.options = check_options(options)
        self.alpha = nn.ParameterDict({t: nn.Parameter(torch.randn(blocks[t], len(self.options)) * std)
                                       for t in TOWERS})

    def weights(self, tower, layer):
        return torch.softmax(self.alpha[tower][layer].float(), dim=0)

    def lengths(self):
        """{tower: [c_l]}: the option of largest alpha per block (the first on ties)."""
        return lengths_from_alpha({t: a.detach() for t, a in self.alpha.items()}, self.options)


def lengths_from_alpha(alpha, options):
    """{tower: [options[argmax_c alpha[tower][l, c]] for each block l]}; ``alpha``: {tower: [blocks, T] array}."""
    options = check_options(options)
    out = {}
    for tower, a in alpha.items():
        a = torch.as_tensor(a)
        if a.dim() != 2 or a.shape[1] != len(options):
            raise ValueError(f"{tower} alpha has shape {tuple(a.shape)}; expected [blocks, {len(options)}] for "
                             f"options {list(options)}")
        out[tower] = [options[i] for i in torch.softmax(a.double(), dim=1).argmax(dim=1).tolist()]
    return out


class SupernetPrompts(nn.Module):
    """``prompts[tower][l][j]`` = ``E_{l, c_j}`` [c_j, d] for every option ``c_j > 0`` (official init: text U[0, 1),
    vision N(0, 1)); :meth:`attach` installs one K/V mixture per block weighted by ``weights``
    (:class:`ArchitectureWeights`)."""

    def __init__(self, clip_model, options):
        super().__init__()
        self.options = check_options(options)
        shapes = tower_shapes(clip_model)
        init = {"text": lambda c, d: torch.rand(c, d), "vision": lambda c, d: torch.randn(c, d)}
        self.prompts = nn.ModuleDict({
            tower: nn.ModuleList([
                nn.ParameterList([nn.Parameter(init[tower](c, width)) for c in self.options if c > 0])
                for _ in range(blocks)])
            for tower, (blocks, width) in shapes.items()})

    def attach(self, surgery, weights):
        for tower in TOWERS:
            for layer, prompts in enumerate(self.prompts[tower]):
                fns, j = [], 0
                for c in self.options:
                    if c == 0:
                        fns.append(None)
                    else:
                        fns.append(lambda t=tower, l=layer, i=j: self.prompts[t][l][i])
                        j += 1
                surgery.add_kv_mixture(tower, layer, fns, lambda t=tower, l=layer: weights.weights(t, l))


class SubnetPrompts(nn.Module):
    """``prompts[tower][l]`` [c_l, d] ~ N(0, 0.02^2) for the found lengths (blocks with c_l = 0 get none)."""

    def __init__(self, clip_model, lengths, std=0.02):
        super().__init__()
        shapes = tower_shapes(clip_model)
        self.lengths = {}
        self.prompts = nn.ModuleDict()
        for tower, (blocks, width) in shapes.items():
            found = [int(c) for c in lengths[tower]]
            if len(found) != blocks or min(found, default=0) < 0:
                raise ValueError(f"{tower} lengths {found}: expected {blocks} lengths >= 0 (one per block)")
            self.lengths[tower] = found
            self.prompts[tower] = nn.ParameterList([nn.Parameter(torch.randn(c, width) * std) for c in found if c])

    def attach(self, surgery):
        for tower in TOWERS:
            index = 0
            for layer, c in enumerate(self.lengths[tower]):
                if c:
                    surgery.add_kv_tokens(tower, layer, lambda t=tower, i=index: self.prompts[t][i],
                                          through_ln_1=True)
                    index += 1


def save_lengths(path, lengths, options, epoch=None, source=""):
    """Write the found per-block lengths (and the option list they were chosen from) as JSON, atomically."""
    record = {"text": list(map(int, lengths["text"])), "vision": list(map(int, lengths["vision"])),
              "options": list(map(int, options)), "epoch": epoch, "source": source}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def load_lengths(path):
    """{tower: [c_l]} from a lengths JSON (:func:`save_lengths`)."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'no DPL lengths file "{path}" (written by the search stage)')
    with open(path) as f:
        record = json.load(f)
    missing = [t for t in TOWERS if t not in record]
    if missing:
        raise ValueError(f'"{path}" has no {missing} lengths; it is not a DPL lengths file')
    return {t: [int(c) for c in record[t]] for t in TOWERS}


def save_alpha(folder, epoch, weights):
    """Write ``<folder>/epoch_<E>.json``: α of both towers with the option list (E 0: before training)."""
    record = {"epoch": int(epoch), "options": list(weights.options),
              **{t: weights.alpha[t].detach().float().cpu().tolist() for t in TOWERS}}
    atomic_write_text(osp.join(folder, f"epoch_{int(epoch)}.json"), json.dumps(record) + "\n")
    return record


def alpha_epochs(folder):
    """Epochs with a saved α in ``folder`` (vlpeft's ``epoch_<E>.json`` or the official ``alpha_e<E>_*.npy``)."""
    found = set()
    for name in os.listdir(folder) if osp.isdir(folder) else []:
        match = re.fullmatch(r"epoch_(\d+)\.json|alpha_e(\d+)_(?:txt|img)\.npy", name)
        if match:
            found.add(int(match.group(1) or match.group(2)))
    return sorted(found)


def read_alpha(folder, epoch=-1):
    """``({"text": [L, T], "vision": [L, T]} tensors, options, epoch)`` saved in ``folder`` at ``epoch`` (-1: the
    last). Reads vlpeft's files and the official code's, whose names are swapped (``alpha_e<E>_txt.npy`` holds the
    *image* α, ``alpha_e<E>_img.npy`` the text α) and whose options are 0..N (the column index is the length)."""
    epochs = alpha_epochs(folder)
    if not epochs:
        raise FileNotFoundError(f'no saved α in "{folder}" (epoch_<E>.json, or the official alpha_e<E>_txt/img.npy)')
    epoch = epochs[-1] if epoch < 0 else epoch
    if epoch not in epochs:
        raise FileNotFoundError(f'no α of epoch {epoch} in "{folder}"; saved epochs: {epochs}')
    path = osp.join(folder, f"epoch_{epoch}.json")
    if osp.isfile(path):
        with open(path) as f:
            record = json.load(f)
        return {t: torch.tensor(record[t]) for t in TOWERS}, tuple(record["options"]), epoch
    import numpy as np

    alpha = {"vision": torch.from_numpy(np.load(osp.join(folder, f"alpha_e{epoch}_txt.npy"))).float(),
             "text": torch.from_numpy(np.load(osp.join(folder, f"alpha_e{epoch}_img.npy"))).float()}
    return alpha, tuple(range(alpha["text"].shape[1])), epoch


# ---------------------------------------------------------------------------------------------------------- trainers
trainer_config("DPL", PREC="fp32", OPTIONS=list(PAPER_OPTIONS), ALPHA_LR=0.0035, ALPHA_BETA1=0.5, ALPHA_BETA2=0.999,
               ALPHA_WEIGHT_DECAY=0.0, VAL_SAMPLER="fixed_first", VAL_BATCH_SIZE=16, ALPHA_EPOCH=-1,
               SEARCH_TEXT="default", SEARCH_DIR="", LENGTHS_TEXT=[], LENGTHS_VISION=[], CTX_INIT="ensemble",
               KD_WEIGHT=0.0)
TEXT_INPUTS = ("ensemble", "default", "custom")
VAL_SAMPLERS = ("fixed_first", "cycle")


# DPL's own per-dataset templates where they differ from CoOp's (the official training stage's `custom` input)
DPL_CUSTOM_TEMPLATES = {
    "OxfordPets": "a type of pet, a photo of a {}.",
    "OxfordFlowers": "a type of flower, a photo of a {}.",
    "FGVCAircraft": "a type of aircraft, a photo of a {}.",
    "DescribableTextures": "a texture of {}.",
    "Food101": "a type of food, a photo of {}.",
}
ENSEMBLE_LAST = "itap of the {}."  # the official list's last template: its end-of-text position is the one used


def text_templates(text_input, dataset_name):
    """``ensemble``: the 60 ImageNet templates, "itap of the {}." last (as the official list); ``default``: "a photo
    of a {}."; ``custom``: DPL's per-dataset template (CoOp's where DPL has none)."""
    if text_input == "ensemble":
        return [t for t in IMAGENET_TEMPLATES if t != ENSEMBLE_LAST] + [ENSEMBLE_LAST]
    if text_input == "default":
        return ["a photo of a {}."]
    if text_input == "custom":
        return [DPL_CUSTOM_TEMPLATES.get(dataset_name, dataset_template(dataset_name))]
    raise ValueError(f"DPL text input must be one of {list(TEXT_INPUTS)}, got {text_input!r}")


class FixedTextLearner(nn.Module):
    """DPL's learner: the K/V prompts (``prompts``) and the fixed class-prompt embeddings the text tower reads (no
    learnable input token). Several templates are averaged position-wise over their token embeddings, and the EOT
    position is the last template's, as the official ``ensemble`` input."""

    def __init__(self, clip_model, classnames, templates, prompts):
        super().__init__()
        names = clean_classnames(classnames)
        with torch.no_grad():
            total = 0
            for template in templates:
                tokens = tokenize([template.format(n) for n in names])
                total = total + clip_model.token_embedding(tokens).float()
        self.register_buffer("embeddings", total / len(templates), persistent=False)
        self.register_buffer("tokenized_prompts", tokens, persistent=False)
        self.prompts = prompts

    def forward(self):
        return self.embeddings


class DPLBase(ClipTrainer):
    CONFIG_NODE = "DPL"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_choices(cfg, "DPL", {"SEARCH_TEXT": TEXT_INPUTS, "CTX_INIT": TEXT_INPUTS, "VAL_SAMPLER": VAL_SAMPLERS})

    def build_text_learner(self, clip_model, text_input, prompts):
        templates = text_templates(text_input, self.cfg.DATASET.NAME)
        print(f"DPL text input: {text_input} ({len(templates)} template{'s' * (len(templates) > 1)}), no learnable "
              "input tokens")
        return FixedTextLearner(clip_model, self.dm.dataset.classnames, templates, prompts)


@register_trainer
class DPLSearch(DPLBase):
    """DPL's searching stage (§3.1, Algorithm 1): the supernet's prompts trained by SGD on the training batches and
    the architecture weights α by Adam on validation batches, one α step then one prompt step per batch (the
    official first-order order); α is checkpointed (model ``alpha``), saved after every epoch to
    ``<output>/alpha/epoch_<E>.json``, and the lengths of ``ALPHA_EPOCH`` (-1: the last) are written to
    ``<output>/lengths.json``."""

    def build_model(self):
        c = self.trainer_cfg
        clip_model = self.load_frozen_clip()
        options = check_options(c.OPTIONS)
        supernet = SupernetPrompts(clip_model, options)
        learner = self.build_text_learner(clip_model, c.SEARCH_TEXT, supernet)
        self.model = PromptCLIP(learner, clip_model)
        blocks = {t: b for t, (b, _) in tower_shapes(clip_model).items()}
        self.alpha = ArchitectureWeights(blocks, options)
        supernet.attach(self.model.surgery, self.alpha)
        print(f"DPL search over prompt lengths {list(options)} in every block of both towers")
        self.register_learner("prompt_learner", learner, model=self.model)
        self.alpha.to(self.device)
        for p in self.alpha.parameters():
            p.requires_grad_(True)
        adam = torch.optim.Adam(self.alpha.parameters(), lr=c.ALPHA_LR, betas=(c.ALPHA_BETA1, c.ALPHA_BETA2),
                                weight_decay=c.ALPHA_WEIGHT_DECAY)
        self.register_model("alpha", self.alpha, adam, None)
        print(f"architecture weights α: {sum(p.numel() for p in self.alpha.parameters()):,} (Adam, lr {c.ALPHA_LR}, "
              f"betas ({c.ALPHA_BETA1}, {c.ALPHA_BETA2}), constant)")

    # ---------------------------------------------------------------- validation batches for α
    def search_val_items(self):
        """The images α is fitted on: the dataset's few-shot val split, or, where that split is the test set
        (ImageNet in the CoOp layout), ``min(K, 4)`` training images per class outside the few-shot set."""
        dataset = self.dm.dataset
        if dataset.val and dataset.val is not dataset.test:
            return dataset.val
        full = getattr(dataset, "train_full", None)
        if not full:
            raise ValueError(f"{type(dataset).__name__}'s val split is its test set and it has no train_full to hold "
                             "out search images from")
        used = {item.impath for item in dataset.train_x}
        per_class = min(self.cfg.DATASET.NUM_SHOTS, 4) if self.cfg.DATASET.NUM_SHOTS > 0 else 4
        held, counts = [], {}
        for item in full:
            if item.impath not in used and counts.get(item.label, 0) < per_class:
                held.append(item)
                counts[item.label] = counts.get(item.label, 0) + 1
        print(f"DPL search: the val split is the test set, so α is fitted on {len(held):,} training images held out "
              f"of the few-shot set ({per_class} per class), never on test images")
        return held

    def build_data_loader(self):
        super().build_data_loader()
        c = self.cfg.TRAINER.DPL
        sampler = "SequentialSampler" if c.VAL_SAMPLER == "fixed_first" else "RandomSampler"
        self.search_val_loader = build_data_loader(self.cfg, sampler_type=sampler,
                                                   data_source=self.search_val_items(),
                                                   batch_size=c.VAL_BATCH_SIZE,
                                                   tfm=build_transform(self.cfg, is_train=False), is_train=False)
        self.val_batches = self._val_batches()

    def _val_batches(self):
        if self.cfg.TRAINER.DPL.VAL_SAMPLER == "fixed_first":  # the official: the first val batch at every step
            batch = next(iter(self.search_val_loader))
            while True:
                yield batch
        while True:
            yield from self.search_val_loader

    # ---------------------------------------------------------------- bilevel step
    def optimisation_step(self, loss, name):
        """Zero the gradients of model ``name``, backpropagate ``loss``, step that model's optimizer only."""
        self.detect_anomaly(loss)
        self.model_zero_grad(name)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self._optims[name])
            self.scaler.update()
        else:
            loss.backward()
            self.model_update(name)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        val_batches = getattr(self, "val_batches", None)  # none in the speed benchmark: α steps on the batch itself
        if val_batches is not None:
            val = next(val_batches)
            val_image, val_label = val["img"].to(self.device), val["label"].to(self.device)
        else:
            val_image, val_label = image, label
        with self.autocast():
            loss_val = F.cross_entropy(self.model(val_image), val_label)
        self.optimisation_step(loss_val, "alpha")  # the prompts' gradients from it are cleared by the next step
        with self.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output, label)
        self.optimisation_step(loss, "prompt_learner")
        self.step_lr_at_epoch_end()
        return {"loss": loss.item(), "loss_val": loss_val.item(), "acc": compute_accuracy(output, label)[0].item()}

    def set_model_mode(self, mode="train", names=None):
        super().set_model_mode(mode, names)
        VersionedCache.invalidate_all()  # the text features depend on α, which the text cache does not key on

    # ---------------------------------------------------------------- α records
    @property
    def alpha_dir(self):
        return osp.join(self.output_dir, "alpha")

    def before_train(self):
        super().before_train()
        if self.start_epoch == 0:
            save_alpha(self.alpha_dir, 0, self.alpha)

    def after_epoch(self):
        save_alpha(self.alpha_dir, self.epoch + 1, self.alpha)
        super().after_epoch()

    def after_train(self):
        c = self.trainer_cfg
        alpha, options, epoch = read_alpha(self.alpha_dir, c.ALPHA_EPOCH)
        lengths = lengths_from_alpha(alpha, options)
        save_lengths(osp.join(self.output_dir, "lengths.json"), lengths, options, epoch, f"alpha/epoch_{epoch}.json")
        print(f"DPL found prompt lengths (α of epoch {epoch}): text {lengths['text']}, vision {lengths['vision']}")
        super().after_train()


@register_trainer
class DPL(DPLBase):
    """DPL's training stage (§3.2): the found lengths' K/V prompts (N(0, 0.02^2)) trained from scratch with CE, plus
    ``KD_WEIGHT`` x KL(zero-shot || model) (the paper's DPL+KD, Eq. 12-13; the teacher is the frozen CLIP with the
    same text input). Lengths: ``LENGTHS_TEXT`` / ``LENGTHS_VISION`` (one per block, or one for every block), or
    ``SEARCH_DIR`` (its ``lengths.json``, or its α of ``ALPHA_EPOCH`` when set or when the folder holds the official
    code's α files)."""

    def found_lengths(self):
        c = self.trainer_cfg
        if c.LENGTHS_TEXT or c.LENGTHS_VISION:
            if c.SEARCH_DIR:
                raise ValueError("set either TRAINER.DPL.LENGTHS_TEXT / LENGTHS_VISION or SEARCH_DIR, not both")
            return {"text": list(c.LENGTHS_TEXT), "vision": list(c.LENGTHS_VISION)}, "TRAINER.DPL.LENGTHS_*"
        if not c.SEARCH_DIR:
            raise ValueError("DPL needs the prompt lengths: TRAINER.DPL.SEARCH_DIR (the DPLSearch run folder) or "
                             "TRAINER.DPL.LENGTHS_TEXT and LENGTHS_VISION")
        lengths_file = osp.join(c.SEARCH_DIR, "lengths.json")
        if c.ALPHA_EPOCH < 0 and osp.isfile(lengths_file):
            return load_lengths(lengths_file), lengths_file
        folder = osp.join(c.SEARCH_DIR, "alpha") if osp.isdir(osp.join(c.SEARCH_DIR, "alpha")) else c.SEARCH_DIR
        alpha, options, epoch = read_alpha(folder, c.ALPHA_EPOCH)
        return lengths_from_alpha(alpha, options), f'α of epoch {epoch} in "{folder}" (options {list(options)})'

    def build_model(self):
        c = self.trainer_cfg
        lengths, source = self.found_lengths()
        clip_model = self.load_frozen_clip()
        for tower, (blocks, _) in tower_shapes(clip_model).items():
            if len(lengths[tower]) == 1:  # one length: every block
                lengths[tower] = lengths[tower] * blocks
        subnet = SubnetPrompts(clip_model, lengths)
        print(f"DPL prompt lengths from {source}: text {subnet.lengths['text']}, vision {subnet.lengths['vision']}")
        learner = self.build_text_learner(clip_model, c.CTX_INIT, subnet)
        self.model = PromptCLIP(learner, clip_model)
        subnet.attach(self.model.surgery)
        self.register_learner("prompt_learner", learner, model=self.model)
        self._teacher_text = None

    @torch.no_grad()
    def teacher_logits(self, image):
        """The frozen CLIP (no prompts) with the same text input."""
        with self.model.surgery.disabled():
            if self._teacher_text is None:
                self._teacher_text = self.model.text_features().detach()
            return self.model.logits(self.model.image_features(image), self._teacher_text)

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        weight = self.trainer_cfg.KD_WEIGHT
        with self.autocast():
            output = self.model(image)
            loss_ce = F.cross_entropy(output, label)
            loss = loss_ce
            if weight:
                loss_kd = teacher_kl(output, self.teacher_logits(image))
                loss = loss_ce + weight * loss_kd
        self.backward_and_update(loss)
        self.step_lr_at_epoch_end()
        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if weight:
            summary.update(loss_ce=loss_ce.item(), loss_kd=loss_kd.item())
        return summary
