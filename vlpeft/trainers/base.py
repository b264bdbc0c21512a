"""What every vlpeft CLIP trainer shares, on top of the engine's ``TrainerX`` (Dassl's or vlpeft's).

* precision: ``PREC`` fp16 / bf16 run the frozen CLIP in half precision, ``amp`` runs it in fp32 under autocast with a
  GradScaler, fp32 is plain; trainable tensors always stay fp32. Without a GPU, half precision falls back to fp32
  with a logged warning.
* trainable set: everything frozen but the registered learner; the parameter counts are printed at build time.
* checkpoints: the registered learners keep only trainable tensors persistent, and load strictly. Checkpoints of the
  official CoOp and CoCoOp code load too (their class-dependent ``token_prefix`` / ``token_suffix`` buffers are
  dropped). Each checkpoint also holds the random-number states, so a resumed run repeats the uninterrupted one.
* NaN/inf losses raise ``FloatingPointError`` through ``model_backward_and_update``.
* inference on merged weights: in eval mode the model's weight edits (adapters, low-rank deltas; see
  :class:`vlpeft.clip.surgery.ClipSurgery`) are folded into the frozen weights, re-folded from the current tensors
  at every switch to eval mode, and restored exactly on the switch back to training.
"""
import functools
import os.path as osp

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlpeft import clip as vclip
from vlpeft.clip.surgery import ClipSurgery
from vlpeft.engine import TrainerX, build_lr_scheduler, build_optimizer, count_num_param
from vlpeft.engine.checkpoint import load_checkpoint, save_checkpoint, saved_epochs
from vlpeft.engine.utils import capture_rng_state, restore_rng_state

PRECISIONS = ("fp16", "bf16", "fp32", "amp")
PREC_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "amp": torch.float32}
CLASS_DEPENDENT_BUFFERS = ("token_prefix", "token_suffix")


def compute_accuracy(output, target, topk=(1,)):
    """Top-k accuracy in percent (Dassl's ``compute_accuracy``)."""
    maxk = max(topk)
    batch_size = target.size(0)
    if isinstance(output, (tuple, list)):
        output = output[0]
    _, pred = output.topk(maxk, 1, True, True)
    correct = pred.t().eq(target.view(1, -1).expand_as(pred.t()))
    return [correct[:k].reshape(-1).float().sum(0) * (100.0 / batch_size) for k in topk]


def resolve_precision(prec, device):
    if prec not in PRECISIONS:
        raise ValueError(f'PREC must be one of {list(PRECISIONS)}, got "{prec}"')
    if device.type != "cuda" and prec != "fp32":
        print(f"Warning: PREC {prec} needs a GPU; running the frozen model in fp32 on {device.type}")
        return "fp32"
    return prec


def teacher_kl(logits, teacher_logits, norm="numel"):
    """``KL(p_teacher || p)`` over the rows of the logits, summed and divided by the number of logits (``numel``: the
    official PromptSRC reduction; also DPL+KD's distillation term) or by the number of rows (``batchmean``: C times
    stronger)."""
    if norm not in ("numel", "batchmean"):
        raise ValueError(f'KL normalisation must be "numel" or "batchmean", got {norm!r}')
    total = F.kl_div(F.log_softmax(logits.float(), dim=1), F.log_softmax(teacher_logits.float(), dim=1),
                     reduction="sum", log_target=True)
    return total / (logits.numel() if norm == "numel" else logits.shape[0])


def check_choices(cfg, node, choices):
    """Each key of ``choices`` ({key: allowed values}) of ``cfg.TRAINER.<node>`` holds one of its allowed values."""
    c = cfg.TRAINER[node]
    for key, allowed in choices.items():
        if c[key] not in allowed:
            raise ValueError(f'TRAINER.{node}.{key} must be one of {list(allowed)}, got "{c[key]}"')


def check_input_size(cfg, clip_model):
    """The images must have the resolution the CLIP checkpoint was trained at (its position embeddings are fixed)."""
    size = getattr(clip_model.visual, "image_size", None)
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if size[0] is not None and tuple(cfg.INPUT.SIZE) != size:
        raise ValueError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the CLIP checkpoint of MODEL.BACKBONE "
            f'"{cfg.MODEL.BACKBONE.NAME}" takes {size[0]}x{size[1]} images. Use a config made for this backbone '
            f"(or set INPUT.SIZE ({size[0]}, {size[1]})); the testbed configs (64 px) go with the vlpeft-testbed "
            "CLIP only.")


def set_activation_checkpointing(clip_model, switches):
    """``MODEL.ACTIVATION_CHECKPOINTING.TEXT / .VISION``: open_clip's per-block activation checkpointing of that tower
    (non-reentrant, random states preserved: the gradients are those of the plain forward)."""
    towers = {"TEXT": clip_model.transformer, "VISION": getattr(clip_model.visual, "transformer", None)}
    for name, transformer in towers.items():
        if hasattr(transformer, "grad_checkpointing"):
            transformer.grad_checkpointing = bool(switches[name])
        elif switches[name]:
            raise ValueError(f"MODEL.ACTIVATION_CHECKPOINTING.{name}: this backbone's tower has no transformer blocks "
                             "to checkpoint (a ResNet image tower)")


class VersionedCache:
    """Reuses a computed value (text features, an equivalent prompt) while nothing it depends on has changed
    (inference only).

    The key is the identity and in-place version counter of every tensor the text side reads, so an optimizer step
    or a ``load_state_dict`` invalidates the cache without any bookkeeping. A change the tensors cannot show (e.g.
    DPC switching the prompts its parametrisations return) calls :meth:`invalidate_all`.
    """

    _generation = 0

    def __init__(self):
        self._key = None
        self._value = None

    @classmethod
    def invalidate_all(cls):
        """Make every cache recompute on its next use."""
        cls._generation += 1

    def get(self, tensors, compute, state=None):
        """``compute()``, or its cached value if ``tensors`` (and the hashable ``state``) are unchanged."""
        if torch.is_grad_enabled():
            self._key = self._value = None
            return compute()
        key = (state, VersionedCache._generation) + tuple((id(t), t._version) for t in tensors)
        if key != self._key:
            self._value = compute()
            self._key = key
        return self._value


class PromptCLIP(nn.Module):
    """A frozen CLIP classifying with a prompt learner's class prompts: logits = exp(logit_scale) * cos(image, text).

    ``prompt_learner()`` returns the first-layer prompt embeddings and has ``tokenized_prompts``; the text features
    are cached at inference (:class:`VersionedCache`). ``surgery`` is the :class:`ClipSurgery` of the frozen model
    (empty unless a method attaches edits; ``with model.surgery.disabled():`` runs plain CLIP)."""

    def __init__(self, prompt_learner, clip_model):
        super().__init__()
        self.prompt_learner = prompt_learner
        self.image_encoder = vclip.ImageEncoder(clip_model)
        self.text_encoder = vclip.TextEncoder(clip_model)
        self.logit_scale = clip_model.logit_scale
        self.surgery = ClipSurgery(clip_model)
        self._text_cache = VersionedCache()

    def text_features(self):
        def compute():
            features = self.text_encoder(self.prompt_learner(), self.prompt_learner.tokenized_prompts)
            return features / features.norm(dim=-1, keepdim=True)

        return self._text_cache.get(list(self.prompt_learner.parameters()), compute,
                                    state=(self.surgery.merged, self.surgery.enabled))

    def image_features(self, image):
        features = self.image_encoder(image)
        return features / features.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def plain_image_features(self, image):
        """Normalised image features of the plain frozen CLIP (every surgery edit disabled): a zero-shot teacher's."""
        with self.surgery.disabled():
            return self.image_features(image)

    def logits(self, image_features, text_features):
        return self.logit_scale.exp() * image_features @ text_features.t().to(image_features.dtype)

    def forward(self, image):
        return self.logits(self.image_features(image), self.text_features())


class ClipTrainer(TrainerX):
    """Base of the vlpeft trainers. Subclasses set ``CONFIG_NODE`` (their ``cfg.TRAINER`` node) and implement
    ``build_model`` using :meth:`load_frozen_clip` and :meth:`register_learner`."""

    CONFIG_NODE = None
    clip_loader = staticmethod(vclip.load_clip)  # (name, path) -> fp32 CLIP; the benchmark swaps in random weights

    @property
    def trainer_cfg(self):
        return self.cfg.TRAINER[self.CONFIG_NODE]

    def check_cfg(self, cfg):
        prec = cfg.TRAINER[self.CONFIG_NODE].PREC
        if prec not in PRECISIONS:
            raise ValueError(f'TRAINER.{self.CONFIG_NODE}.PREC must be one of {list(PRECISIONS)}, got "{prec}"')

    def load_frozen_clip(self):
        """Load CLIP (``MODEL.BACKBONE``), resolve ``self.prec`` for this device and cast the frozen weights."""
        backbone = self.cfg.MODEL.BACKBONE
        print(f"Loading CLIP (backbone: {backbone.NAME})")
        clip_model = self.clip_loader(backbone.NAME, backbone.PATH)
        check_input_size(self.cfg, clip_model)
        self.prec = resolve_precision(self.trainer_cfg.PREC, self.device)
        clip_model = vclip.cast_clip(clip_model, PREC_DTYPES[self.prec])
        for p in clip_model.parameters():
            p.requires_grad_(False)
        set_activation_checkpointing(clip_model, self.cfg.MODEL.ACTIVATION_CHECKPOINTING)
        return clip_model

    def register_learner(self, name, learner, model=None, param_groups=None):
        """Freeze everything in ``model`` but ``learner``, build its optimizer and schedule, register it.

        ``param_groups``: optional list of optimizer groups (dicts with ``params`` and e.g. their own ``lr``) covering
        the learner's parameters; by default one group at ``OPTIM.LR``."""
        model = learner if model is None else model
        for p in model.parameters():
            p.requires_grad_(False)
        for p in learner.parameters():
            p.requires_grad_(True)
            if p.is_floating_point():
                p.data = p.data.float()
        if self.cfg.MODEL.INIT_WEIGHTS:
            from vlpeft.engine import load_pretrained_weights

            load_pretrained_weights(learner, self.cfg.MODEL.INIT_WEIGHTS)
        model.to(self.device)
        trainable = [p for p in learner.parameters() if p.requires_grad]
        if param_groups is not None:
            grouped = {id(p) for group in param_groups for p in group["params"]}
            if grouped != {id(p) for p in trainable}:
                raise ValueError(f"the optimizer groups of {name} must cover exactly its trainable parameters")
        optim = build_optimizer(trainable, self.cfg.OPTIM, param_groups=param_groups)
        sched = build_lr_scheduler(optim, self.cfg.OPTIM)
        self.register_model(name, learner, optim, sched)
        self.scaler = torch.amp.GradScaler("cuda") if self.prec == "amp" else None
        n_total = count_num_param(model)
        n_trainable = sum(p.numel() for p in trainable)
        print(f"# params: {n_total:,} (trainable: {n_trainable:,}, {100.0 * n_trainable / max(n_total, 1):.4f}%)")
        return optim, sched

    def set_model_mode(self, mode="train", names=None):
        """Dassl's mode switch; eval mode also runs the model on merged weights (re-merged from the current
        tensors: a step, a checkpoint load or prompt aggregation since the last merge is picked up)."""
        super().set_model_mode(mode, names)
        surgery = getattr(getattr(self, "model", None), "surgery", None)
        if surgery is None or not surgery.has_weight_edits:
            return
        surgery.unmerge()
        if mode != "train":
            surgery.merge()

    def autocast(self):
        """Autocast context for PREC amp (a no-op otherwise)."""
        return torch.autocast(device_type=self.device.type, enabled=self.prec == "amp")

    def backward_and_update(self, loss):
        """One optimisation step on ``loss``: GradScaler for amp, otherwise Dassl's NaN-checked update."""
        if self.scaler is not None:
            self.detect_anomaly(loss)
            self.model_zero_grad()
            self.scaler.scale(loss).backward()
            for name in self.get_model_names():
                self.scaler.step(self._optims[name])
            self.scaler.update()
        else:
            self.model_backward_and_update(loss)

    def step_lr_at_epoch_end(self):
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()

    def parse_batch_train(self, batch):
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def forward_backward(self, batch):
        """Cross-entropy on the model's logits (CoOp's step); trainers with other losses override this."""
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            output = self.model(image)
            loss = F.cross_entropy(output, label)
        self.backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        self.step_lr_at_epoch_end()
        return summary

    def model_inference(self, input):
        with self.autocast():
            return self.model(input).float()

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        """Dassl's checkpoint, plus the random-number states (``rng_state``), so that a resumed run continues
        exactly as the uninterrupted one would have."""
        rng_state = capture_rng_state()
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint({
                "state_dict": self._models[name].state_dict(),
                "epoch": epoch + 1,
                "optimizer": optim.state_dict() if optim is not None else None,
                "scheduler": sched.state_dict() if sched is not None else None,
                "val_result": val_result,
                "rng_state": rng_state,
                **self.checkpoint_extras(),
            }, osp.join(directory, name), is_best=is_best, model_name=model_name)

    def checkpoint_extras(self):
        """Entries a method adds to its checkpoints (e.g. DPC: the classes it was trained on)."""
        return {}

    def after_load_checkpoint(self, checkpoint):
        """Called by :meth:`load_model` after a checkpoint's weights are loaded."""

    def resume_model_if_exist(self, directory):
        """Dassl's resume (weights, optimizer, scheduler of the latest checkpoint), plus the random-number states;
        ``self.resumed_from_epoch`` records the epoch it continued from (``None``: a fresh start)."""
        start_epoch = super().resume_model_if_exist(directory)
        self.resumed_from_epoch = start_epoch or None
        if start_epoch:
            folder = osp.join(directory, self.get_model_names()[0])
            with open(osp.join(folder, "checkpoint")) as f:
                rng_state = load_checkpoint(osp.join(folder, f.readline().strip())).get("rng_state")
            if rng_state is not None:
                restore_rng_state(rng_state)
                print("Restored the random-number states")
            else:
                print("Note: the checkpoint has no random-number states (written by another tool): the resumed run "
                      "will not repeat the uninterrupted one exactly")
        return start_epoch

    def load_model(self, directory, epoch=None):
        """Load ``<directory>/<name>/model.pth.tar-<epoch>`` (``model-best.pth.tar`` without an epoch) strictly."""
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        model_file = "model-best.pth.tar" if epoch is None else f"model.pth.tar-{epoch}"
        for name in self.get_model_names():
            model_path = osp.join(directory, name, model_file)
            if not osp.exists(model_path):
                epochs = saved_epochs(osp.join(directory, name))
                found = f"epochs saved there: {epochs}" if epochs else "no checkpoint is saved there"
                best = " (model-best.pth.tar is written only with TEST.FINAL_MODEL best_val)" if epoch is None else ""
                raise FileNotFoundError(f'Model not found at "{model_path}"{best}; {found}. Pass --load-epoch N.')
            checkpoint = load_checkpoint(model_path)
            state_dict = {k: v for k, v in checkpoint["state_dict"].items()
                          if k.split(".")[-1] not in CLASS_DEPENDENT_BUFFERS}
            print(f'Loading weights to {name} from "{model_path}" (epoch = {checkpoint["epoch"]})')
            self._models[name].load_state_dict(state_dict, strict=True)
            self.after_load_checkpoint(checkpoint)


@functools.lru_cache(maxsize=None)
def _composed(trainer_cls, base_cls, config_node):
    return type(trainer_cls.__name__, (trainer_cls, base_cls), {
        "CONFIG_NODE": config_node, "__module__": trainer_cls.__module__, "__qualname__": trainer_cls.__qualname__})


class PlugInTrainer(ClipTrainer):
    """A method applied on top of another trainer, chosen by ``cfg.TRAINER.<CONFIG_NODE>.BASE`` among ``BASES``.

    An instance is of the class composed over that base (the plug-in first in its MRO, named as the plug-in), so the
    base builds its model and runs its schedule, and the plug-in overrides what it changes (e.g. hooking
    ``register_learner``). The composed class reads the base's config node (:meth:`base_config_node`)."""

    BASES = {}

    @classmethod
    def base_config_node(cls, base_cls):
        return base_cls.CONFIG_NODE

    def __new__(cls, cfg, *args, **kwargs):
        base = cfg.TRAINER[cls.CONFIG_NODE].BASE
        if base not in cls.BASES:
            raise ValueError(f'TRAINER.{cls.CONFIG_NODE}.BASE must be one of {sorted(cls.BASES)}, got "{base}"')
        base_cls = cls.BASES[base]
        if not issubclass(cls, base_cls):
            cls = _composed(cls, base_cls, cls.base_config_node(base_cls))
        return super().__new__(cls)


def freeze(module: nn.Module):
    for p in module.parameters():
        p.requires_grad_(False)
    return module
