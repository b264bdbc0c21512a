"""DPC: dual-prompt collaboration (Li et al., "DPC: Dual-Prompt Collaboration for Tuning Vision-Language Models",
CVPR 2025). Choices: docs/decisions/dpc.md.

A second stage on top of a tuned backbone prompt learner (``TRAINER.DPC.BASE``: CoOp, MaPLe, PromptSRC, IVLP, KgCoOp
or ProGrad), read from the backbone's run folder (``BACKBONE_DIR`` / ``BACKBONE_EPOCH``). Every learnable tensor
``P`` of the backbone gets a parallel copy ``P'`` (Eq. 5), started at ``P``, and the model sees

* in training and on the trained classes: ``P'``;
* on any other class set (new classes, cross-dataset and domain-generalisation targets):
  ``w_n P' + (1 - w_n) P`` (Eq. 13), which is the backbone for ``w_n`` 0 or 1e-6;
* in the negative sampler: ``P`` (the frozen tuned prompt).

How ``w_b`` acts in training (``WEIGHTING``, docs/decisions/dpc.md#dpc-weighting-decoupling): ``released`` (default)
computes what the released code computes: its mixed prompt (Eq. 12) and its copy of ``P`` share memory, so the
decoding returns the stored tensor itself and ``P'`` is trained directly with its gradient scaled by ``1 / w_b``;
``reparametrised`` keeps ``P`` frozen and trains ``theta = w_b P' + (1 - w_b) P`` with ``P' = (theta - (1 - w_b) P) /
w_b`` (Eq. 12-13 read with a frozen ``P``: SGD on ``P'`` at ``lr / w_b^2``). With ``DECODE first`` only the
first-layer text context is weighted; deeper prompts and couplings are trained as they are (``w_b`` 1). The frozen
``P`` is a buffer of the learner, so a DPC checkpoint evaluates on its own.

Training replaces the backbone's loss by the Dynamic Hard Negative Optimizer (§3.3): the frozen backbone scores each
batch image against the base classes, the top-K classes other than its label that are not already in the batch
become its negatives (two random unused classes if fewer than two remain, the official fallback), one training image
per negative class is drawn from the negative pool and transformed with the training transform, and the enlarged
batch of L image-class pairs is trained with the symmetric contrastive loss ``1/2 [CE(S, I) + CE(S^T, I)]`` over its
L x L similarity matrix (Eq. 9-11, with the official ½). Negative images load in background threads while the
previous step runs (:class:`vlpeft.engine.image_pool.ImagePool`).
"""
import contextlib
import os
import os.path as osp
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize

from vlpeft.config import trainer_config
from vlpeft.datasets.base import cfg_value
from vlpeft.engine import build_transform, register_trainer
from vlpeft.engine.checkpoint import load_checkpoint, saved_epochs
from vlpeft.engine.image_pool import ImagePool, SeededTrainTransform

from .base import CLASS_DEPENDENT_BUFFERS, PlugInTrainer, VersionedCache, check_choices
from .coop import CoOp
from .ivlp import IVLP
from .kgcoop import KgCoOp
from .maple import MaPLe
from .prograd import ProGrad
from .promptsrc import PromptSRC

trainer_config("DPC", BASE="CoOp", BACKBONE_DIR="", BACKBONE_EPOCH=-1, OMEGA_BASE=0.2, OMEGA_NEW=1e-6,
               WEIGHTING="released", DECODE="first", INIT="clone", TOPK=8, MIN_NEGATIVES=2, POOL="split_train", DEDUP="none",
               EVAL="auto", WORKERS=4, CACHE_MB=1024)

BASES = {"CoOp": CoOp, "MaPLe": MaPLe, "PromptSRC": PromptSRC, "IVLP": IVLP, "KgCoOp": KgCoOp, "ProGrad": ProGrad}
CHOICES = {"WEIGHTING": ("released", "reparametrised"), "DECODE": ("first", "all"), "INIT": ("clone", "random"), "POOL": ("split_train", "fewshot"),
           "DEDUP": ("none", "mask"), "EVAL": ("auto", "base", "new", "backbone")}
# keys of a base's config node that do not change the shape or meaning of its prompts
NON_STRUCTURAL_KEYS = ("PREC", "W", "TEXT_LOSS_WEIGHT", "IMAGE_LOSS_WEIGHT", "GPA_MEAN", "GPA_STD")
# run settings the backbone must share with the DPC stage (same classes, same few-shot images)
SHARED_RUN_KEYS = ("DATASET.NAME", "DATASET.SUBSAMPLE_CLASSES", "DATASET.NUM_SHOTS", "SEED", "MODEL.BACKBONE.NAME")


class WeightingDecoupling(nn.Module):
    """Parametrisation of one learnable tensor (the stored tensor ``theta``): the model sees ``P'`` (mode ``base``),
    ``w_n P' + (1 - w_n) P`` (mode ``new``) or ``P`` (mode ``backbone``); ``P`` is a persistent buffer.

    ``weighting``: ``released`` (what the released code computes): ``theta`` is ``P'`` itself, started at ``P``,
    and its gradient is scaled by ``1 / w_b``; ``reparametrised`` (Eq. 12 with a frozen ``P``): ``theta`` is the mixed
    prompt ``w_b P' + (1 - w_b) P`` and ``P' = (theta - (1 - w_b) P) / w_b``. Without ``decode`` (``w_b`` 1 for this
    tensor) ``P' = theta`` in both."""

    MODES = ("base", "new", "backbone")
    WEIGHTINGS = ("released", "reparametrised")

    def __init__(self, backbone, omega_base, omega_new, decode=True, weighting="released"):
        super().__init__()
        if weighting not in self.WEIGHTINGS:
            raise ValueError(f"weighting must be one of {self.WEIGHTINGS}, got {weighting!r}")
        self.register_buffer("backbone", backbone.detach().float().clone())
        self.omega_base, self.omega_new, self.decode = float(omega_base), float(omega_new), bool(decode)
        self.weighting = weighting
        self.mode = "base"

    def parallel(self, theta):
        """``P'``. Released: ``theta`` with its gradient times ``1 / w_b``. Reparametrised: ``(theta - (1 - w_b) P) /
        w_b``, computed as ``P + (theta - P) / w_b`` (the same value, exactly ``P`` while ``theta`` is ``P``)."""
        if not self.decode:
            return theta
        if self.weighting == "released":
            frozen = theta.detach()
            return frozen + (theta - frozen) * (1 / self.omega_base)
        return self.backbone + (theta - self.backbone) * (1 / self.omega_base)

    def forward(self, theta):
        if self.mode == "backbone":
            return self.backbone
        parallel = self.parallel(theta)
        if self.mode == "new":  # Eq. 13: w_n P' + (1 - w_n) P, exactly P for w_n = 0
            return self.backbone + self.omega_new * (parallel - self.backbone)
        return parallel


def couplings(learner):
    """The :class:`WeightingDecoupling` modules of ``learner``."""
    return [m for m in learner.modules() if isinstance(m, WeightingDecoupling)]


def set_prompt_mode(learner, mode):
    """Make every parametrised tensor of ``learner`` return its ``mode`` value (see :class:`WeightingDecoupling`)."""
    if mode not in WeightingDecoupling.MODES:
        raise ValueError(f"prompt mode must be one of {WeightingDecoupling.MODES}, got {mode!r}")
    for m in couplings(learner):
        m.mode = mode
    VersionedCache.invalidate_all()


@contextlib.contextmanager
def prompt_mode(learner, mode):
    previous = [m.mode for m in couplings(learner)]
    set_prompt_mode(learner, mode)
    try:
        yield
    finally:
        for m, p in zip(couplings(learner), previous):
            m.mode = p
        VersionedCache.invalidate_all()


def add_parallel_prompts(learner, omega_base, omega_new, decode="first", init=None, weighting="released"):
    """Replace every parameter of ``learner`` (holding the tuned backbone ``P``) by its parametrised parallel prompt
    (:class:`WeightingDecoupling`); returns the names. ``decode``: ``first`` weights the first-layer text context
    (``ctx``) only, ``all`` every tensor. ``init``: optional {name: tensor} of ``P'`` at step 0 (reparametrised only;
    default ``P' = P``)."""
    names = [name for name, _ in learner.named_parameters()]
    for name in names:
        module_name, _, attr = name.rpartition(".")
        module = learner.get_submodule(module_name) if module_name else learner
        value = getattr(module, attr).detach()
        decoded = decode == "all" or name.split(".")[0] == "ctx"
        coupling = WeightingDecoupling(value, omega_base, omega_new, decoded, weighting)
        parametrize.register_parametrization(module, attr, coupling, unsafe=True)
        if init is not None and name in init:
            w = coupling.omega_base if decoded else 1.0
            with torch.no_grad():
                module.parametrizations[attr].original.copy_(w * init[name] + (1 - w) * value)
    return names


def choose_negatives(probs, labels, k, n_classes, rng=random, min_negatives=2):
    """Hard-negative classes per batch image (§3.3, as the official sampler): the top-``k`` classes of ``probs``
    [b, n_classes] other than the image's label, minus every class already in the batch (all labels, and the
    negatives of earlier images); if fewer than ``min_negatives`` remain, up to ``n_classes - 2`` draws of
    ``rng.randint(1, n_classes - 2)`` add unused classes until there are ``min_negatives``."""
    labels = [int(y) for y in labels]
    in_batch = list(labels)
    negatives = []
    for i, label in enumerate(labels):
        top = torch.as_tensor(probs[i]).topk(k).indices.tolist()
        chosen = []
        for c in top:
            if c != label and c not in in_batch:
                chosen.append(c)
                in_batch.append(c)
        if len(chosen) < min_negatives:
            for _ in range(n_classes - 2):
                if len(chosen) >= min_negatives:
                    break
                c = rng.randint(1, n_classes - 2)
                if c not in in_batch:
                    chosen.append(c)
                    in_batch.append(c)
        negatives.append(chosen)
    return negatives


def contrastive_loss(logits, labels=None, mask_duplicates=False):
    """``L_CL = 1/2 [CE(S, arange L) + CE(S^T, arange L)]`` on the L x L logits (Eq. 9-11 with the official ½).
    ``mask_duplicates``: pairs of different images with the same label are excluded from both softmaxes."""
    if mask_duplicates:
        same = labels[:, None] == labels[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class LookaheadLoader:
    """Iterates ``loader`` one batch ahead: while batch t is in use, ``upcoming`` is batch t+1 (None after the last),
    so its negatives can load in the background during step t."""

    def __init__(self, loader):
        self.loader = loader
        self.upcoming = None

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self):
        iterator = iter(self.loader)
        current = next(iterator, None)
        while current is not None:
            self.upcoming = next(iterator, None)
            yield current
            current = self.upcoming
        self.upcoming = None


class BackboneError(ValueError):
    """``TRAINER.DPC.BACKBONE_DIR`` does not hold a usable backbone for this run."""


def _train_hint(base):
    return (f"train the {base} backbone first (python train.py --trainer {base} ... --output-dir DIR, same dataset, "
            "classes, shots and seed), then pass TRAINER.DPC.BACKBONE_DIR DIR")


def read_backbone(cfg, base, shapes, classes=None):
    """The backbone's learnable tensors ``{name: fp32 tensor}`` from ``<BACKBONE_DIR>/prompt_learner/
    model.pth.tar-<BACKBONE_EPOCH>`` (-1: the last saved), checked against this run (``shapes``: {name: shape} of
    the learner's tensors; ``classes``: its :class:`ClassPromptEmbeddings`, to check an official checkpoint's class
    embeddings); and a description."""
    c = cfg.TRAINER.DPC
    directory = c.BACKBONE_DIR
    train_hint = _train_hint(base)
    if not directory:
        raise BackboneError(f"TRAINER.DPC.BACKBONE_DIR is not set: DPC trains on top of a tuned backbone; "
                            f"{train_hint}")
    if not osp.isdir(directory):
        raise BackboneError(f'TRAINER.DPC.BACKBONE_DIR "{directory}" does not exist: {train_hint}')
    folder = osp.join(directory, "prompt_learner")
    if not osp.isdir(folder):
        found = sorted(os.listdir(directory))
        raise BackboneError(f'TRAINER.DPC.BACKBONE_DIR "{directory}" holds no prompt_learner/ checkpoint folder '
                            f"(found: {found}); point it at the backbone's run folder (--output-dir of its training)")
    epochs = saved_epochs(folder)
    if not epochs:
        raise BackboneError(f'"{folder}" holds no checkpoint (model.pth.tar-N); did the backbone training finish?')
    epoch = max(epochs) if c.BACKBONE_EPOCH < 0 else c.BACKBONE_EPOCH
    if epoch not in epochs:
        raise BackboneError(f'TRAINER.DPC.BACKBONE_EPOCH {epoch}: "{folder}" has epochs {epochs}')
    path = osp.join(folder, f"model.pth.tar-{epoch}")

    saved_cfg = osp.join(directory, "config.yaml")
    if osp.isfile(saved_cfg):
        import yaml

        with open(saved_cfg) as f:
            backbone_cfg = yaml.safe_load(f)
        trained = cfg_value(backbone_cfg, "TRAINER.NAME")
        if trained != base:
            raise BackboneError(f'"{directory}" is a {trained} run, but TRAINER.DPC.BASE is {base}: set '
                                f"TRAINER.DPC.BASE {trained} (and its config) or point to a {base} run")
        for key in SHARED_RUN_KEYS:
            ours, theirs = cfg_value(cfg, key), cfg_value(backbone_cfg, key)
            if theirs is not None and str(ours) != str(theirs):
                raise BackboneError(f'the backbone in "{directory}" was trained with {key} {theirs}, this run has '
                                    f"{ours}: DPC must use the backbone's classes, shots and seed")
        node = BASES[base].CONFIG_NODE
        theirs_node = cfg_value(backbone_cfg, f"TRAINER.{node}") or {}
        for key, ours in cfg.TRAINER[node].items():
            if key in NON_STRUCTURAL_KEYS or key not in theirs_node:
                continue
            if str(ours) != str(theirs_node[key]):
                raise BackboneError(f'the backbone in "{directory}" was trained with TRAINER.{node}.{key} '
                                    f"{theirs_node[key]!r}, this run has {ours!r}: use the backbone's config file for "
                                    "the prompt settings")
        checked = "its config.yaml matches this run"
    else:
        checked = ("no config.yaml there (a run of another code base): its class count and class-name embeddings are "
                   "checked when it has them; its seed and shots cannot be, make sure they are this run's")

    state = load_checkpoint(path)["state_dict"]
    suffix = state.get("token_suffix")
    if suffix is not None and classes is not None:
        ours = classes.token_suffix
        if suffix.shape[0] != ours.shape[0]:
            raise BackboneError(f'the backbone "{path}" was trained on {suffix.shape[0]} classes, this run has '
                                f"{ours.shape[0]}: DPC must use the backbone's classes (DATASET.SUBSAMPLE_CLASSES)")
        if suffix.shape == ours.shape and not torch.allclose(suffix.float().cpu(), ours.float().cpu(), atol=1e-3):
            raise BackboneError(f'the backbone "{path}" was trained on other class names (or another CLIP) than this '
                                "run: its class-name embeddings differ")
    state = {k: v for k, v in state.items() if k.split(".")[-1] not in CLASS_DEPENDENT_BUFFERS}
    missing, unexpected = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
    if missing or unexpected:
        raise BackboneError(f'"{path}" does not hold {base} prompts: missing {missing[:6]}, unexpected '
                            f"{unexpected[:6]} (another trainer's checkpoint?)")
    for key, shape in shapes.items():
        if tuple(state[key].shape) != tuple(shape):
            raise BackboneError(f'"{path}": {key} has shape {tuple(state[key].shape)}, this run builds '
                                f"{tuple(shape)}: the backbone was trained with other prompt settings (N_CTX, "
                                "depth, CTX_INIT); use its config file")
    return {k: v.detach().float() for k, v in state.items()}, f'"{path}" (epoch {epoch}; {checked})'


@register_trainer
class DPC(PlugInTrainer):
    """Dual-prompt collaboration on the backbone ``TRAINER.DPC.BASE``. An instance is of the class composed over that
    base (``DPC`` first in its MRO): the base builds its model and learner ``prompt_learner`` from its own config node
    (``TRAINER.COOP`` / ``MAPLE`` / ``PROMPTSRC`` / ``IVLP``, which must match the backbone run), DPC then parametrises
    the learner's tensors, loads the backbone into them and trains with the hard-negative contrastive loss."""

    CONFIG_NODE = "DPC"
    BASES = BASES

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_choices(cfg, "DPC", CHOICES)
        c = cfg.TRAINER.DPC
        if not 0 < c.OMEGA_BASE <= 1:
            raise ValueError(f"TRAINER.DPC.OMEGA_BASE must be in (0, 1], got {c.OMEGA_BASE}")
        if not 0 <= c.OMEGA_NEW <= 1:
            raise ValueError(f"TRAINER.DPC.OMEGA_NEW must be in [0, 1], got {c.OMEGA_NEW}")
        if c.TOPK < 1 or c.MIN_NEGATIVES < 0:
            raise ValueError(f"TRAINER.DPC.TOPK must be >= 1 and MIN_NEGATIVES >= 0, got {c.TOPK}, {c.MIN_NEGATIVES}")
        if c.INIT == "random" and c.WEIGHTING == "released":
            raise ValueError("TRAINER.DPC.INIT random is the released code's SPLE_INIT False, whose weighting is the "
                             "reparametrised one: set TRAINER.DPC.WEIGHTING reparametrised")
        if cfg.DATALOADER.K_TRANSFORMS != 1:
            raise ValueError("DPC takes one view per training image (DATALOADER.K_TRANSFORMS 1)")

    # ------------------------------------------------------------------ model
    def register_learner(self, name, learner, model=None):
        """Parametrise the base's learner (:func:`add_parallel_prompts`); ``P`` is the learner's own init until the
        backbone (:meth:`load_backbone`, at the start of training) or a DPC checkpoint is loaded."""
        c = self.cfg.TRAINER.DPC
        self.n_classes = len(self.dm.dataset.classnames)
        self._initial = {k: v.detach().clone().float() for k, v in learner.named_parameters()}
        self._parallel = add_parallel_prompts(learner, c.OMEGA_BASE, c.OMEGA_NEW, c.DECODE, None, c.WEIGHTING)
        decoded = [n for n in self._parallel if c.DECODE == "all" or n.split(".")[0] == "ctx"]
        lr = self.cfg.OPTIM.LR
        if c.WEIGHTING == "released":
            how = f"P' trained directly with its gradient x 1/w_b (effective learning rate {lr / c.OMEGA_BASE:.4g})"
        else:
            how = (f"theta = w_b P' + (1 - w_b) P trained, P frozen (effective learning rate on P' "
                   f"{lr / c.OMEGA_BASE ** 2:.4g} = lr / w_b^2)")
        print(f"DPC on {c.BASE}: {len(self._parallel)} parallel tensors; weighting {c.WEIGHTING}, w_b {c.OMEGA_BASE} "
              f"on {decoded or 'none'}: {how}; the others trained directly; w_n {c.OMEGA_NEW}; P' at step 0: "
              f"{'P' if c.INIT == 'clone' else 'the base init'}")
        self.eval_prompts = "base" if c.EVAL == "auto" else c.EVAL  # a loaded checkpoint decides again
        result = super().register_learner(name, learner, model)
        if hasattr(self, "gpa"):
            self.gpa = None  # the DPC stage trains without the base's prompt aggregation
        k = min(c.TOPK, self.n_classes)
        if k != c.TOPK:
            print(f"DPC: TOPK {c.TOPK} clamped to {k}, the number of training classes")
        self.topk = k
        # a learner that leaves the image tower alone (CoOp, KgCoOp, ProGrad): the sampler's image features of the
        # batch are the step's, so the step encodes only the negative images
        surgery = self.model.surgery
        self.reuse_image_features = "vision" not in surgery.edited_towers and not surgery.has_weight_edits
        self.pool = None  # the negative-image pool, built at the start of training (before_train)
        self._sampler_text = None
        self._pending = None
        self._reset_stats()
        return result

    def _couplings_by_name(self):
        """{tensor name: (its WeightingDecoupling, the stored tensor theta)}."""
        out = {}
        for name in self._parallel:
            module_name, _, attr = name.rpartition(".")
            module = self.learner.get_submodule(module_name) if module_name else self.learner
            out[name] = (module.parametrizations[attr][0], module.parametrizations[attr].original)
        return out

    @torch.no_grad()
    def load_backbone(self):
        """Read ``P`` from ``TRAINER.DPC.BACKBONE_DIR`` (checked against this run, :func:`read_backbone`) into the
        learner, and start ``P'`` at ``P`` (``INIT random``: at the base learner's init)."""
        c = self.cfg.TRAINER.DPC
        tensors = self._couplings_by_name()
        shapes = {name: theta.shape for name, (_, theta) in tensors.items()}
        backbone, where = read_backbone(self.cfg, c.BASE, shapes, getattr(self.learner, "classes", None))
        for name, (coupling, theta) in tensors.items():
            p = backbone[name].to(theta.device)
            coupling.backbone.copy_(p)
            if c.INIT == "random":
                w = coupling.omega_base if coupling.decode else 1.0
                theta.copy_(w * self._initial[name].to(theta.device) + (1 - w) * p)
            else:
                theta.copy_(p)
        VersionedCache.invalidate_all()
        self._sampler_text = None
        print(f"DPC: backbone {c.BASE} prompts P from {where}")

    def _reset_stats(self):
        self._stats = {"steps": 0, "pairs": 0, "max_pairs": 0, "wait": 0.0}

    @property
    def learner(self):
        return self._models["prompt_learner"]

    def set_model_mode(self, mode="train", names=None):
        """Training and in-training evaluation use ``P'``; evaluation uses the prompts chosen for the evaluated
        classes (:meth:`after_load_checkpoint`, ``TRAINER.DPC.EVAL``)."""
        super().set_model_mode(mode, names)
        set_prompt_mode(self.learner, "base" if mode == "train" else self.eval_prompts)

    def checkpoint_extras(self):
        c = self.cfg.TRAINER.DPC
        return {"dpc": {"dataset": self.cfg.DATASET.NAME, "classnames": list(self.dm.dataset.classnames),
                        "base": c.BASE, "omega_base": c.OMEGA_BASE, "decode": c.DECODE,
                        "weighting": c.WEIGHTING}}

    def after_load_checkpoint(self, checkpoint):
        """Choose the evaluation prompts: ``P'`` on the class set the checkpoint was trained on (same dataset, same
        class names in the same order), ``w_n P' + (1 - w_n) P`` on any other; ``TRAINER.DPC.EVAL`` overrides."""
        c = self.cfg.TRAINER.DPC
        if c.BACKBONE_DIR:
            print("DPC: TRAINER.DPC.BACKBONE_DIR is not read when a DPC checkpoint is loaded (it holds P)")
        self._sampler_text = None
        trained = checkpoint.get("dpc")
        for key, ours in (("omega_base", c.OMEGA_BASE), ("decode", c.DECODE), ("weighting", c.WEIGHTING)):
            if trained is not None and trained.get(key, ours) != ours:
                raise ValueError(f"this DPC checkpoint was trained with TRAINER.DPC.{key.upper()} {trained[key]}, this "
                                 f"run has {ours}: evaluate with the training run's config file")
        if c.EVAL != "auto":
            self.eval_prompts = c.EVAL
            reason = "TRAINER.DPC.EVAL"
        elif trained is None:
            raise ValueError("this checkpoint does not say which classes DPC was trained on (not a DPC checkpoint "
                             "of vlpeft?); set TRAINER.DPC.EVAL base or new")
        else:
            same = (trained["dataset"] == self.cfg.DATASET.NAME
                    and list(trained["classnames"]) == list(self.dm.dataset.classnames))
            self.eval_prompts = "base" if same else "new"
            reason = (f"the classes it was trained on ({trained['dataset']})" if same else
                      f"not the classes it was trained on ({trained['dataset']}, {len(trained['classnames'])} classes)")
        what = {"base": "the parallel prompt P'", "backbone": "the backbone prompt P",
                "new": f"w_n P' + (1 - w_n) P with w_n {c.OMEGA_NEW}"}[self.eval_prompts]
        print(f"DPC evaluates with {what}: {reason}")

    # ------------------------------------------------------------------ data
    def build_data_loader(self):
        super().build_data_loader()
        self.train_loader_x = LookaheadLoader(self.train_loader_x)

    def before_train(self):
        super().before_train()
        c = self.cfg.TRAINER.DPC
        if self.start_epoch == 0:
            self.load_backbone()
        else:
            print("DPC: resumed; P comes from the checkpoint")
        dataset = self.dm.dataset
        if c.POOL == "fewshot":
            items = dataset.train_x
        else:
            items = getattr(dataset, "train_full", None)
            if items is None:
                raise ValueError(f"{type(dataset).__name__} does not expose its whole train split (train_full); use "
                                 "TRAINER.DPC.POOL fewshot")
        if SeededTrainTransform.supports(self.cfg):
            transform = SeededTrainTransform(self.cfg)
            where = "in background threads"
        else:
            transform = build_transform(self.cfg, is_train=True)  # the engine's (Dassl's DataManager keeps none)
            where = "decoded in background threads, transformed in the training thread (INPUT.TRANSFORMS outside " \
                    "random_resized_crop / random_flip / normalize)"
        self.pool = ImagePool(items, transform, workers=c.WORKERS, cache_mb=c.CACHE_MB)
        missing = sorted(set(range(self.n_classes)) - set(self.pool.labels()))
        if missing:
            raise ValueError(f"the negative pool ({c.POOL}) has no image of classes {missing[:10]}")
        print(f"DPC negative pool: {c.POOL}, {len(self.pool):,} images of {self.n_classes} classes, loaded {where}; "
              f"top-{self.topk} negatives, duplicates in a batch: {c.DEDUP}")
        self._reset_stats()

    def after_epoch(self):
        s = self._stats
        if s["steps"]:
            cache = self.pool.cache
            total = cache.hits + cache.misses
            print(f"DPC epoch {self.epoch + 1}: {s['pairs'] / s['steps']:.1f} image-class pairs per step (max "
                  f"{s['max_pairs']}), {1000 * s['wait'] / s['steps']:.1f} ms per step waiting for negative images, "
                  f"image cache hits {100 * cache.hits / max(total, 1):.0f}%")
        self._reset_stats()
        super().after_epoch()

    def after_train(self):
        if self.pool is not None:
            self.pool.close()
        super().after_train()

    # ------------------------------------------------------------------ sampler
    @torch.no_grad()
    def sampler_scores(self, images):
        """``softmax(100 cos(f, g))`` [b, C] over the training classes with the frozen backbone prompts ``P``, and
        the normalised image features ``f``."""
        with prompt_mode(self.learner, "backbone"), self.autocast():
            if self._sampler_text is None:
                self._sampler_text = self.model.text_features().detach()
            features = self.model.image_features(images)
        return (100.0 * features.float() @ self._sampler_text.float().t()).softmax(dim=-1), features

    def request_negatives(self, batch):
        """Choose the negatives of ``batch`` and start loading their images: ``(negatives, pending images, image
        features of the batch when the step can reuse them)``."""
        images = batch["img"]
        if isinstance(images, (list, tuple)):
            raise ValueError("DPC takes one view per training image")
        probs, features = self.sampler_scores(images.to(self.device))
        negatives = choose_negatives(probs.cpu(), batch["label"].tolist(), self.topk, self.n_classes, random,
                                     self.cfg.TRAINER.DPC.MIN_NEGATIVES)
        requests = [(random.choice(self.pool.paths[c]), random.getrandbits(62)) for group in negatives for c in group]
        return negatives, self.pool.request(requests), features if self.reuse_image_features else None

    def hard_negative_batch(self, batch):
        """The enlarged batch ``[x_1, negatives of x_1, x_2, ...]``, its labels (§3.3), and ``(rows, features)`` of
        the batch images whose features the sampler already computed (None when the step must encode them)."""
        if self._pending is not None and self._pending[0] is batch:
            negatives, pending, features = self._pending[1]
        else:
            negatives, pending, features = self.request_negatives(batch)
        upcoming = getattr(self.train_loader_x, "upcoming", None)
        self._pending = (upcoming, self.request_negatives(upcoming)) if upcoming is not None else None
        start = time.time()
        loaded = iter(pending.result())
        self._stats["wait"] += time.time() - start
        images, labels, rows = [], [], []
        for image, label, group in zip(batch["img"], batch["label"].tolist(), negatives):
            rows.append(len(labels))
            images.append(image)
            labels.append(label)
            for c in group:
                images.append(next(loaded))
                labels.append(c)
        images = torch.stack(images).to(self.device)
        labels = torch.tensor(labels, device=self.device)
        self._stats["steps"] += 1
        self._stats["pairs"] += len(labels)
        self._stats["max_pairs"] = max(self._stats["max_pairs"], len(labels))
        return images, labels, None if features is None else (rows, features)

    # ------------------------------------------------------------------ loss
    def forward_backward(self, batch):
        loss = self.train_on_pairs(*self.hard_negative_batch(batch))
        self.step_lr_at_epoch_end()
        return {"loss": loss}

    def train_on_pairs(self, images, labels, known=None):
        """One optimisation step of L_CL on the enlarged batch; returns the loss value. ``known``: ``(rows,
        features)`` of images already encoded (their rows of ``images`` are not encoded again)."""
        with self.autocast():
            text_features = self.model.text_features()
            if known is None:
                image_features = self.model.image_features(images)
            else:
                rows, features = known
                todo = torch.ones(len(images), dtype=torch.bool)
                todo[rows] = False
                image_features = features.new_empty(len(images), features.shape[1])
                image_features[rows] = features
                if todo.any():
                    image_features[todo.to(images.device)] = self.model.image_features(
                        images[todo.to(images.device)]).to(features.dtype)
            logits = self.model.logits(image_features, text_features[labels])
            loss = contrastive_loss(logits.float(), labels, self.cfg.TRAINER.DPC.DEDUP == "mask")
        self.backward_and_update(loss)
        return loss.item()
