"""DPD-LoRA: dynamic prompt-driven low-rank adaptation on MaPLe (paper: "DPD-LoRA: Dynamic Prompt-Driven Low-Rank
Adaptation for Improved Generalization", §3.2-3.5, Eq. 4-10, Algorithm 1). No official code exists; every choice the
paper leaves open is a ``TRAINER.DPDLORA`` key, listed with its default in docs/decisions/dpdlora.md.

* **LoRSS** (Eq. 4): each adapted attention weight gets ``dW = sum_i s_i B_i A_i`` (``N_SUB`` = 3 sub-LoRAs of rank
  ``RANK`` = 4, A Kaiming-uniform, B = 0, learnable ``s_i`` = 1) on q, k, v (``LORA_MATS``; ``qkvo`` adds the output
  projection) of every block of both towers (``LORA_LAYERS``; ``prompted``: the first ``PROMPT_DEPTH`` blocks). The
  prompt tokens go through ``W + dW`` like every other token.
* **Hierarchical interaction** (Eq. 5-6): with ``INTERACTION``, block l >= 1 uses ``ALPHA * LoRSS_l + (1 - ALPHA) *
  LoRSS_{l-1}`` and the prompts ``ALPHA * P_l + (1 - ALPHA) * P_{l-1}`` (text) and ``ALPHA * F_l(P_l) + (1 - ALPHA) *
  F_{l-1}(P_{l-1})`` (the generated vision prompts; ``VISION_MIX prompt``: ``F_l`` of the mixed text prompt). Both
  mixings use the previous block's own tensors (not its mixed ones); block 0 is unmixed.
* **PCGM** (Eq. 7): with ``GATE``, one gate per tower shared by its blocks, ``G(P) = sigmoid(w . mean_tokens(P) + b)``
  of the block's (mixed) prompt, multiplies the block's update; blocks without a prompt use 1. It depends on the
  prompts only, so ``W + G dW`` is a fixed matrix once training ends.
* **Two stages in one run** (Algorithm 1): stage 1 trains a *teacher*, CLIP with the text "a photo of a {class}." and
  its own LoRSS (no prompts, no gate), for ``EARLY_STOP`` epochs with ``CE + TEACHER_ORTH_WEIGHT * L_orth +
  TEXT_LOSS_WEIGHT * L_text``; it is then frozen and merged. Stage 2 trains fresh MaPLe prompts, fresh LoRSS and the
  gates with ``CE + KL_WEIGHT * KL(p_teacher || p) + ORTH_WEIGHT * L_orth + TEXT_LOSS_WEIGHT * L_text`` (Eq. 8-10).
  ``L_orth`` averages ``||A_i A_i^T - I||_F`` and ``||B_i^T B_i - I||_F`` over the factors (Eq. 8); ``L_text`` is
  PromptSRC's L1 to plain CLIP's 60-template text features. Without a KL term (``KL_WEIGHT 0``, the cross-dataset
  recipe) no teacher is trained. ``TEACHER_DIR`` reads the teacher of an earlier run instead.
* Checkpoints: the student (``prompt_learner/``, stage-2 epochs) and the teacher (``teacher/``, stage-1 epochs, with
  its optimizer and random-number states), so an interrupted run resumes in the stage it was in; evaluation needs
  only the student. Evaluation runs on merged weights (the LoRSS, their mixing and the gates folded into ``in_proj``).
* Learning rates: ``LR_LORA`` (LoRSS and s_i; also the teacher's), ``LR_PROMPT`` (prompts and MaPLe's couplings) and
  ``LR_GATE``, each times ``LR_SCALE`` (10 gives the paper's Table 4a values).
* Computation: a tower's LoRSS factors are stacked tensors; at the start of each forward of the tower the updates of
  all its blocks (Eq. 4, 6, 7) are formed in one batched product, and each block adds its q/k/v update to
  ``in_proj_weight`` (one projection GEMM, as the unmodified attention; measured in docs/SPEED.md).
"""
import os.path as osp

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlpeft.config import trainer_config
from vlpeft.engine import build_lr_scheduler, build_optimizer, register_trainer
from vlpeft.engine.checkpoint import load_checkpoint, save_checkpoint, saved_epochs
from vlpeft.engine.utils import capture_rng_state, restore_rng_state

from .base import PromptCLIP, check_choices, compute_accuracy, teacher_kl
from .maple import MaPLe, MultiModalPromptLearner
from .ivlp import PromptedCLIP
from .promptsrc import ZeroShotTeacher
from .text_prompts import ClassPromptEmbeddings

trainer_config(
    "DPDLORA", N_CTX=2, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9, SHARED_COUPLING=False,
    RANK=4, N_SUB=3, LEARN_SCALES=True, LORA_MATS="qkv", LORA_LAYERS="all",
    INTERACTION=True, ALPHA=0.9, VISION_MIX="coupled", GATE=True, GATE_BIAS_INIT=0.0,
    LR_LORA=0.0035, LR_PROMPT=0.005, LR_GATE=0.005, LR_SCALE=1.0,
    EARLY_STOP=5, TEACHER_SCHEDULE="truncated", TEACHER_DIR="", TEACHER_ORTH_WEIGHT=1.0, STUDENT_INIT="fresh",
    KL_WEIGHT=0.1, KL_NORM="numel", ORTH_WEIGHT=0.1, ORTH_ON="AB", TEXT_LOSS_WEIGHT=25.0,
)

LORA_MATS = {"qkv": ("q", "k", "v"), "qkvo": ("q", "k", "v", "out")}
CHOICES = {"LORA_MATS": tuple(LORA_MATS), "LORA_LAYERS": ("all", "prompted"), "VISION_MIX": ("coupled", "prompt"),
           "TEACHER_SCHEDULE": ("truncated", "short"), "STUDENT_INIT": ("fresh", "teacher"),
           "KL_NORM": ("numel", "batchmean"), "ORTH_ON": ("AB", "A")}
TEACHER_TEXT = "a photo of a"
#: the OPTIM keys of the teacher's training (a teacher read from another run must have been trained with them)
STAGE1_OPTIM_KEYS = ("NAME", "LR_SCHEDULER", "MAX_EPOCH", "WARMUP_EPOCH", "WARMUP_TYPE", "WARMUP_CONS_LR",
                     "WEIGHT_DECAY", "MOMENTUM")
#: the keys a teacher read from another run (TEACHER_DIR) must share with this run
TEACHER_KEYS = ("RANK", "N_SUB", "LEARN_SCALES", "LORA_MATS", "LORA_LAYERS", "PROMPT_DEPTH", "INTERACTION", "ALPHA",
                "EARLY_STOP")


class LoRSS(nn.Module):
    """Expanded lower-rank subspaces (Eq. 4) of the adapted weights of one tower, stacked: for block l and weight j
    (q, k, v and, with ``n_mats`` 4, out), ``dW_lj = sum_i s_lji B_lji A_lji`` with ``A`` [L, n_mats, m, r, in]
    (Kaiming-uniform per sub-LoRA, as LoRA), ``B`` [L, n_mats, m, out, r] (zeros) and ``s`` [L, n_mats, m] (ones; a
    fixed buffer with ``learn_scales=False``, which makes each update a rank-m*r LoRA)."""

    def __init__(self, width, layers, n_mats=3, rank=4, n_sub=3, learn_scales=True):
        super().__init__()
        self.A = nn.Parameter(torch.empty(layers, n_mats, n_sub, rank, width))
        self.B = nn.Parameter(torch.zeros(layers, n_mats, n_sub, width, rank))
        with torch.no_grad():
            for a in self.A.view(-1, rank, width):
                nn.init.kaiming_uniform_(a, a=5 ** 0.5)
        if learn_scales:
            self.s = nn.Parameter(torch.ones(layers, n_mats, n_sub))
        else:
            self.register_buffer("s", torch.ones(layers, n_mats, n_sub), persistent=False)

    def weights(self):
        """``dW`` of every block and weight, ``[L, n_mats, out, in]`` (one batched product)."""
        layers, n_mats, n_sub, rank, d_in = self.A.shape
        b = (self.B * self.s[..., None, None]).permute(0, 1, 3, 2, 4).reshape(layers * n_mats, -1, n_sub * rank)
        return torch.bmm(b, self.A.reshape(layers * n_mats, n_sub * rank, d_in)).view(layers, n_mats, -1, d_in)


def interact(weights, alpha):
    """Eq. 6: ``alpha dW_l + (1 - alpha) dW_{l-1}`` for l >= 1 (the previous block's own update), block 0 unmixed."""
    if alpha is None or weights.shape[0] < 2:
        return weights
    return torch.cat([weights[:1], alpha * weights[1:] + (1 - alpha) * weights[:-1]])


class BlockDelta:
    """A surgery delta: block ``layer``'s share of its bank's updates, ``qkv`` (``[3 * out, in]``, as
    ``in_proj_weight``) or ``out``. It owns no parameters."""

    def __init__(self, bank, tower, layer, which):
        self.bank, self.tower, self.layer, self.which = bank, tower, layer, which

    def weight(self):
        w = self.bank.effective(self.tower)[self.layer]
        return w[:3].reshape(-1, w.shape[-1]) if self.which == "qkv" else w[3]

    def __call__(self, x):
        return F.linear(x, self.weight().to(x.dtype))


class LoRSSBank(nn.Module):
    """The LoRSS of one model (``text`` and ``vision``: :class:`LoRSS` over the first ``layers`` blocks) and the
    update each block receives, ``G_l (alpha LoRSS_l + (1 - alpha) LoRSS_{l-1})`` (Eq. 6-7; ``alpha`` None: no
    interaction; ``gates(tower)`` -> [L] or None: no gate). The updates of a tower are computed at the start of each
    forward of that tower (and at merging), for all its blocks at once."""

    def __init__(self, clip_model, rank, n_sub, mats, layers, learn_scales=True):
        super().__init__()
        if tuple(mats) not in (("q", "k", "v"), ("q", "k", "v", "out")):
            raise ValueError(f"LoRSS go on q, k, v (and out), got {mats}")
        widths = {"text": clip_model.ln_final.weight.shape[0], "vision": clip_model.visual.conv1.weight.shape[0]}
        self.layers, self.n_mats = layers, len(mats)
        for tower, width in widths.items():
            setattr(self, tower, LoRSS(width, layers, self.n_mats, rank, n_sub, learn_scales))
        self.alpha, self.gates = None, None
        self._effective = {}

    def towers(self):
        return {"text": self.text, "vision": self.vision}

    def compute(self, tower):
        """Compute ``[L, n_mats, out, in]``, the update of every block of ``tower``, and keep it for its blocks."""
        w = interact(self.towers()[tower].weights(), self.alpha)
        if self.gates is not None:
            w = w * self.gates(tower)[:, None, None, None].to(w.dtype)
        self._effective[tower] = w

    def effective(self, tower):
        """The updates computed at the start of the tower's current forward (or at merging)."""
        if tower not in self._effective:
            self.compute(tower)
        return self._effective[tower]

    def attach(self, surgery, alpha=None, gates=None):
        self.alpha, self.gates = alpha, gates
        for tower in self.towers():
            surgery.before_tower(tower, lambda t=tower: self.compute(t))
            for layer in range(self.layers):
                surgery.add_attention_delta(tower, layer, "qkv", BlockDelta(self, tower, layer, "qkv"))
                if self.n_mats == 4:
                    surgery.add_attention_delta(tower, layer, "out", BlockDelta(self, tower, layer, "out"))


def orthogonality_loss(bank, on="AB"):
    """Eq. 8: the mean over the factor matrices of ``||A_i A_i^T - I||_F`` (A_i [r, in]) and, with ``on="AB"``, of
    ``||B_i^T B_i - I||_F`` (B_i [out, r]); both Gram matrices are r x r."""
    norms = []
    for lorss in bank.towers().values():
        rank = lorss.A.shape[3]
        a = lorss.A.reshape(-1, rank, lorss.A.shape[-1])
        eye = torch.eye(rank, device=a.device, dtype=a.dtype)
        norms.append(torch.linalg.matrix_norm(a @ a.transpose(1, 2) - eye))
        if on == "AB":
            b = lorss.B.reshape(-1, lorss.B.shape[-2], rank)
            norms.append(torch.linalg.matrix_norm(b.transpose(1, 2) @ b - eye))
    return torch.cat(norms).mean()


class PromptGate(nn.Module):
    """PCGM's gate of one tower (Eq. 7): ``sigmoid(w . mean_tokens(P) + b)``, w ~ N(0, 0.02^2), b = ``bias``."""

    def __init__(self, width, bias=0.0):
        super().__init__()
        self.linear = nn.Linear(width, 1)
        nn.init.normal_(self.linear.weight, std=0.02)
        nn.init.constant_(self.linear.bias, bias)

    def forward(self, prompt):
        """``prompt`` [..., tokens, width] -> gate [...]."""
        return torch.sigmoid(self.linear(prompt.float().mean(dim=-2))).squeeze(-1)


class HierarchicalPrompts(MultiModalPromptLearner):
    """MaPLe's prompts with the hierarchical interaction of Eq. 5 (``alpha`` None: plain MaPLe) and, with
    ``shared_coupling``, one coupling function for every block (DPD-LoRA-dagger of Table 4b)."""

    def __init__(self, clip_model, classnames, n_ctx, depth, ctx_init, alpha=None, vision_mix="coupled",
                 shared_coupling=False):
        super().__init__(clip_model, classnames, n_ctx, depth, ctx_init)
        self.alpha, self.vision_mix, self.shared_coupling = alpha, vision_mix, shared_coupling
        if shared_coupling:
            self.compound_prompt_projections = nn.ModuleList()
        self.depth = depth
        self._current = {}

    def coupling(self, layer):
        return self.proj if self.shared_coupling else super().coupling(layer)

    def own_text_prompt(self, layer):
        """``P_l`` itself, before mixing."""
        return super().text_prompt(layer)

    def text_prompt(self, layer):
        """``alpha P_l + (1 - alpha) P_{l-1}`` for l >= 1 (Eq. 5): row ``layer`` of :meth:`all_text_prompts`."""
        return self.all_text_prompts()[layer]

    def vision_prompts(self, layer):
        """``alpha F_l(P_l) + (1 - alpha) F_{l-1}(P_{l-1})`` for l >= 1 (``vision_mix="prompt"``: ``F_l`` of the
        mixed text prompt): row ``layer`` of :meth:`all_vision_prompts`."""
        return self.all_vision_prompts()[layer]

    def all_text_prompts(self):
        """``[depth, N_CTX, D_t]``: the text prompt of every prompted block, in a few batched operations."""
        return interact(torch.stack([self.own_text_prompt(l) for l in range(self.depth)]), self.alpha)

    def all_vision_prompts(self):
        """``[depth, N_CTX, D_v]``: the generated vision prompt of every prompted block (the couplings as one batched
        product)."""
        mix_first = self.alpha is not None and self.vision_mix == "prompt"
        text = self.all_text_prompts() if mix_first else torch.stack(
            [self.own_text_prompt(l) for l in range(self.depth)])
        if self.shared_coupling:
            vision = F.linear(text, self.proj.weight, self.proj.bias)
        else:
            couplings = [self.coupling(l) for l in range(self.depth)]
            weight = torch.stack([c.weight for c in couplings]).transpose(1, 2)
            bias = torch.stack([c.bias for c in couplings]).unsqueeze(1)
            vision = torch.baddbmm(bias, text, weight)
        return vision if mix_first else interact(vision, self.alpha)

    def refresh(self, tower):
        """Compute the prompts of every block of ``tower`` (at the start of its forward) for its blocks and gates."""
        self._current[tower] = self.all_text_prompts() if tower == "text" else self.all_vision_prompts()

    def current(self, tower):
        """``[depth, N_CTX, D]``: the prompts of ``tower`` computed at the start of its current forward."""
        if tower not in self._current:
            self.refresh(tower)
        return self._current[tower]

    def attach(self, surgery):
        """MaPLe's token edits, each block reading its prompt from the tower's prompts computed once per forward."""
        for tower in ("text", "vision"):
            surgery.before_tower(tower, lambda t=tower: self.refresh(t), merged_too=True)
        surgery.append("vision", lambda: self._current["vision"][0])
        for layer in range(1, self.depth):
            surgery.write("text", layer, 1, lambda l=layer: self._current["text"][l])
            surgery.write("vision", layer, -self.n_ctx, lambda l=layer: self._current["vision"][l])


class DPDLoRALearner(nn.Module):
    """The student: ``prompts`` (:class:`HierarchicalPrompts`), ``lorss`` (:class:`LoRSSBank`) and ``gates``
    (:class:`PromptGate` per tower, or None), trained and checkpointed together; it stands in for the prompt
    learner (``forward``, ``tokenized_prompts``, ``attach``)."""

    def __init__(self, prompts, lorss, gates=None, alpha=None):
        super().__init__()
        self.prompts, self.lorss, self.gates = prompts, lorss, gates
        self.alpha = alpha
        self.depth = len(prompts.compound_prompts_text) + 1

    @property
    def tokenized_prompts(self):
        return self.prompts.tokenized_prompts

    def gate_vector(self, tower):
        """``[L]``: ``G(P~_l)`` of every LoRSS block of ``tower`` (Eq. 7): the tower's gate of the block's mixed prompt
        (those of the tower's current forward), 1 for blocks without a prompt."""
        depth = min(self.depth, self.lorss.layers)
        gates = self.gates[tower](self.prompts.current(tower)[:depth])
        return torch.cat([gates, gates.new_ones(self.lorss.layers - depth)])

    def gate_values(self):
        with torch.no_grad():
            values = {}
            for tower in ("text", "vision"):
                self.prompts.refresh(tower)
                values[tower] = [float(g) for g in self.gate_vector(tower)[:self.depth]]
            return values

    def attach(self, surgery):
        self.prompts.attach(surgery)
        self.lorss.attach(surgery, self.alpha, self.gate_vector if self.gates is not None else None)

    def param_groups(self, lr_lora, lr_prompt, lr_gate):
        groups = [{"params": list(self.prompts.parameters()), "lr": lr_prompt, "name": "prompt"},
                  {"params": list(self.lorss.parameters()), "lr": lr_lora, "name": "lora"}]
        if self.gates is not None:
            groups.append({"params": list(self.gates.parameters()), "lr": lr_gate, "name": "gate"})
        return groups

    def forward(self):
        return self.prompts()


class TemplateLoRSSLearner(nn.Module):
    """The stage-1 teacher's learner: the class prompts "a photo of a {class}." (fixed) and its ``lorss``."""

    def __init__(self, clip_model, classnames, lorss):
        super().__init__()
        self.classes = ClassPromptEmbeddings(clip_model, classnames, TEACHER_TEXT, 0)
        self.lorss = lorss

    @property
    def tokenized_prompts(self):
        return self.classes.tokenized_prompts

    def forward(self):
        prefix = self.classes.token_prefix
        return self.classes.assemble(prefix.new_zeros(prefix.shape[0], 0, prefix.shape[2]))


@register_trainer
class DPDLoRA(MaPLe):
    """DPD-LoRA (Algorithm 1): the student is learner ``prompt_learner`` (prompts + LoRSS + gates); the stage-1
    teacher (``self.teacher``, a second frozen CLIP with its own LoRSS) is trained in :meth:`before_train` unless it
    is read from ``TEACHER_DIR`` or not needed (``KL_WEIGHT 0``)."""

    CONFIG_NODE = "DPDLORA"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_choices(cfg, "DPDLORA", CHOICES)
        c = cfg.TRAINER.DPDLORA
        if not 0.0 <= c.ALPHA <= 1.0:
            raise ValueError(f"TRAINER.DPDLORA.ALPHA must be in [0, 1], got {c.ALPHA}")
        if c.KL_WEIGHT > 0 and not c.TEACHER_DIR and c.EARLY_STOP < 1:
            raise ValueError("TRAINER.DPDLORA.KL_WEIGHT > 0 needs a stage-1 teacher: set EARLY_STOP >= 1 (its epochs) "
                             "or TEACHER_DIR (an earlier DPDLoRA run), or KL_WEIGHT 0")
        if c.EARLY_STOP > cfg.OPTIM.MAX_EPOCH and c.TEACHER_SCHEDULE == "truncated":
            raise ValueError(f"TRAINER.DPDLORA.EARLY_STOP ({c.EARLY_STOP}) stops the teacher within the "
                             f"{cfg.OPTIM.MAX_EPOCH}-epoch schedule (TEACHER_SCHEDULE truncated): it cannot be larger")
        if c.STUDENT_INIT == "teacher" and not self.needs_teacher(cfg):
            raise ValueError("TRAINER.DPDLORA.STUDENT_INIT teacher needs a teacher (KL_WEIGHT > 0 or TEACHER_DIR)")

    @staticmethod
    def needs_teacher(cfg):
        c = cfg.TRAINER.DPDLORA
        return c.KL_WEIGHT > 0 or bool(c.TEACHER_DIR)

    # ------------------------------------------------------------------ model
    def lorss_layers(self, clip_model):
        c = self.trainer_cfg
        return c.PROMPT_DEPTH if c.LORA_LAYERS == "prompted" else len(clip_model.transformer.resblocks)

    def build_lorss(self, clip_model):
        c = self.trainer_cfg
        if len(clip_model.transformer.resblocks) != len(clip_model.visual.transformer.resblocks) \
                and c.LORA_LAYERS == "all":
            raise ValueError("DPD-LoRA with LORA_LAYERS all needs towers of equal depth")
        return LoRSSBank(clip_model, c.RANK, c.N_SUB, LORA_MATS[c.LORA_MATS], self.lorss_layers(clip_model),
                         c.LEARN_SCALES)

    @property
    def alpha(self):
        return self.trainer_cfg.ALPHA if self.trainer_cfg.INTERACTION else None

    def learning_rates(self):
        c = self.trainer_cfg
        return {"lora": c.LR_LORA * c.LR_SCALE, "prompt": c.LR_PROMPT * c.LR_SCALE, "gate": c.LR_GATE * c.LR_SCALE}

    def build_model(self):
        c = self.trainer_cfg
        clip_model = self.load_frozen_clip()
        print("Building custom CLIP")
        prompts = HierarchicalPrompts(clip_model, self.dm.dataset.classnames, c.N_CTX, c.PROMPT_DEPTH, c.CTX_INIT,
                                      self.alpha, c.VISION_MIX, c.SHARED_COUPLING)
        width = {"text": clip_model.ln_final.weight.shape[0], "vision": clip_model.visual.conv1.weight.shape[0]}
        gates = nn.ModuleDict({t: PromptGate(w, c.GATE_BIAS_INIT) for t, w in width.items()}) if c.GATE else None
        learner = DPDLoRALearner(prompts, self.build_lorss(clip_model), gates, self.alpha)
        self.model = PromptedCLIP(learner, clip_model)
        lrs = self.learning_rates()
        n = {k: sum(p.numel() for p in m.parameters()) for k, m in
             (("prompts", prompts), ("lorss", learner.lorss), ("gates", gates or nn.Module()))}
        print(f"DPD-LoRA: LoRSS {c.N_SUB} x rank {c.RANK} on {c.LORA_MATS} of {c.LORA_LAYERS} blocks "
              f"({n['lorss']:,} parameters), interaction {c.INTERACTION} (alpha {c.ALPHA}), gates {c.GATE} "
              f"({n['gates']:,}), MaPLe prompts {n['prompts']:,}")
        print(f"DPD-LoRA learning rates: prompts {lrs['prompt']:g}, LoRSS {lrs['lora']:g}, gates {lrs['gate']:g}")
        self.register_learner("prompt_learner", learner, model=self.model,
                              param_groups=learner.param_groups(lrs["lora"], lrs["prompt"], lrs["gate"]))
        self.text_target = ZeroShotTeacher(self.model, self.dm.dataset.classnames) if c.TEXT_LOSS_WEIGHT else None
        self.teacher = None
        self.stage = 2

    def build_teacher(self):
        """Stage 1's model: a second frozen CLIP with the fixed template text and its own LoRSS, no prompts or gate;
        returns the model and the teacher optimizer / scheduler (LoRSS learning rate)."""
        clip_model = self.load_frozen_clip()
        with torch.random.fork_rng(devices=[]):  # a resumed run draws the same random numbers as an uninterrupted one
            lorss = self.build_lorss(clip_model)
        teacher = PromptCLIP(TemplateLoRSSLearner(clip_model, self.dm.dataset.classnames, lorss), clip_model)
        lorss.attach(teacher.surgery, self.alpha)
        for p in lorss.parameters():
            p.data = p.data.float()
            p.requires_grad_(True)
        teacher.to(self.device)
        optim_cfg = self.cfg.OPTIM.clone()
        if self.trainer_cfg.TEACHER_SCHEDULE == "short":
            optim_cfg.defrost()
            optim_cfg.MAX_EPOCH = self.trainer_cfg.EARLY_STOP
        params = [p for p in lorss.parameters()]
        optim = build_optimizer(params, optim_cfg, param_groups=[{"params": params, "lr": self.learning_rates()["lora"]}])
        return teacher, optim, build_lr_scheduler(optim, optim_cfg)

    # ------------------------------------------------------------------ stage 1
    def teacher_meta(self):
        c, d = self.trainer_cfg, self.cfg.DATASET
        o = self.cfg.OPTIM
        return {"dataset": d.NAME, "subsample_classes": d.SUBSAMPLE_CLASSES, "num_shots": int(d.NUM_SHOTS),
                "seed": int(self.cfg.SEED), "backbone": self.cfg.MODEL.BACKBONE.NAME,
                "classnames": list(self.dm.dataset.classnames),
                "lorss": {k: c[k] for k in TEACHER_KEYS},
                "stage1": {"lr": self.learning_rates()["lora"], "orth_weight": c.TEACHER_ORTH_WEIGHT,
                           "text_weight": c.TEXT_LOSS_WEIGHT, "orth_on": c.ORTH_ON, "schedule": c.TEACHER_SCHEDULE,
                           "prec": c.PREC, "batch_size": self.cfg.DATALOADER.TRAIN_X.BATCH_SIZE,
                           "optim": {k: o[k] for k in STAGE1_OPTIM_KEYS},
                           "transforms": list(self.cfg.INPUT.TRANSFORMS)}}

    def save_teacher(self, epoch, directory, optim, sched):
        save_checkpoint({"state_dict": self.teacher.prompt_learner.lorss.state_dict(), "epoch": epoch + 1,
                         "optimizer": optim.state_dict(), "scheduler": sched.state_dict(),
                         "rng_state": capture_rng_state(), "teacher": self.teacher_meta()},
                        osp.join(directory, "teacher"))

    def read_teacher(self, directory, epoch):
        """The stage-1 checkpoint ``<directory>/teacher/model.pth.tar-<epoch>``, checked against this run."""
        path = osp.join(directory, "teacher", f"model.pth.tar-{epoch}")
        if not osp.exists(path):
            found = saved_epochs(osp.join(directory, "teacher"))
            raise FileNotFoundError(
                f'No DPD-LoRA teacher at "{path}" (teacher epochs saved there: {found or "none"}). TEACHER_DIR must be '
                f"the output folder of a DPDLoRA run whose stage 1 finished (EARLY_STOP {epoch})")
        checkpoint = load_checkpoint(path)
        theirs, ours = checkpoint.get("teacher", {}), self.teacher_meta()
        wrong = [k for k in ours if theirs.get(k) != ours[k]]
        if wrong:
            detail = "; ".join(f"{k}: {theirs.get(k)!r} there, {ours[k]!r} here" for k in wrong if k != "classnames")
            raise ValueError(f'The teacher in "{path}" was trained for another setting ({", ".join(wrong)}'
                             f"{': ' + detail if detail else ''}). Train it in this run (TEACHER_DIR \"\") or point "
                             "TEACHER_DIR at a run of this dataset, seed, shots and classes with the same LoRSS keys "
                             "and stage-1 training (its learning rate, loss weights, schedule and input).")
        return checkpoint

    def before_train(self):
        super().before_train()
        if self.needs_teacher(self.cfg):
            self.prepare_teacher()
        else:
            print("DPD-LoRA: no stage-1 teacher (KL_WEIGHT 0): training the student only")

    def prepare_teacher(self):
        """Read, resume or train the stage-1 teacher, then freeze and merge it (Algorithm 1, stage 1)."""
        c = self.trainer_cfg
        self.teacher, optim, sched = self.build_teacher()
        lorss = self.teacher.prompt_learner.lorss
        if c.TEACHER_DIR:
            checkpoint = self.read_teacher(c.TEACHER_DIR, c.EARLY_STOP)
            lorss.load_state_dict(checkpoint["state_dict"])
            print(f'DPD-LoRA: stage-1 teacher read from "{c.TEACHER_DIR}" (epoch {c.EARLY_STOP})')
        else:
            directory = self.cfg.RESUME or self.output_dir
            done = saved_epochs(osp.join(directory, "teacher"))
            start = max(done) if done else 0
            if self.start_epoch > 0 and start < c.EARLY_STOP:
                raise RuntimeError(f'The student resumes at epoch {self.start_epoch + 1} but "{directory}/teacher" '
                                   f"holds no finished stage-1 teacher (epoch {c.EARLY_STOP}); remove the folder "
                                   "(or use a new --output-dir) and train again")
            if start:
                checkpoint = self.read_teacher(directory, min(start, c.EARLY_STOP))
                lorss.load_state_dict(checkpoint["state_dict"])
                if start < c.EARLY_STOP:
                    optim.load_state_dict(checkpoint["optimizer"])
                    sched.load_state_dict(checkpoint["scheduler"])
                    restore_rng_state(checkpoint["rng_state"])
                    print(f"DPD-LoRA: stage 1 resumes at epoch {start + 1}")
                elif self.start_epoch == 0:  # stage 2 starts where the finished stage 1 left the random states
                    restore_rng_state(checkpoint["rng_state"])
                    print("DPD-LoRA: stage 1 finished earlier; stage 2 starts from its teacher and random states")
            if start < c.EARLY_STOP:
                self.train_teacher(start, optim, sched)
        self.freeze_teacher()
        if c.STUDENT_INIT == "teacher" and self.start_epoch == 0:
            self._models["prompt_learner"].lorss.load_state_dict(lorss.state_dict())
            print("DPD-LoRA: the student's LoRSS start from the teacher's (STUDENT_INIT teacher)")

    def train_teacher(self, start, optim, sched):
        c = self.trainer_cfg
        total = self.cfg.OPTIM.MAX_EPOCH if c.TEACHER_SCHEDULE == "truncated" else c.EARLY_STOP
        print(f"DPD-LoRA stage 1: training the LoRSS-CLIP teacher for {c.EARLY_STOP} epochs "
              f"(of a {total}-epoch schedule)")
        self._teacher_optim, self._teacher_sched = optim, sched
        max_epoch, writer = self.max_epoch, self._writer
        self.max_epoch, self._writer, self.stage = c.EARLY_STOP, None, 1
        self.teacher.train()
        try:
            for self.epoch in range(start, c.EARLY_STOP):
                self.run_epoch()
                self.save_teacher(self.epoch, self.output_dir, optim, sched)
        finally:
            self.max_epoch, self._writer, self.stage = max_epoch, writer, 2
            self.epoch = self.start_epoch
        print("DPD-LoRA stage 2: training the prompts, LoRSS and gates against the frozen teacher")

    def freeze_teacher(self):
        self._teacher_optim = self._teacher_sched = None  # frees its momentum buffers
        for p in self.teacher.parameters():
            p.requires_grad_(False)
            p.grad = None
        self.teacher.eval()
        self.teacher.surgery.merge()  # the frozen teacher runs at plain CLIP's cost

    def get_current_lr(self, names=None):
        if self.stage == 1:
            return self._teacher_optim.param_groups[0]["lr"]
        return super().get_current_lr(names)

    # ------------------------------------------------------------------ steps
    def orth_loss(self, lorss):
        return orthogonality_loss(lorss, self.trainer_cfg.ORTH_ON)

    def text_loss(self, text_features):
        return F.l1_loss(text_features.float(), self.text_target.text_features().float())

    def losses(self, model, image, label, lorss, orth_weight, teacher=None):
        """(loss, logits, summary): ``CE + KL_WEIGHT * KL(p_teacher || p) + orth_weight * L_orth +
        TEXT_LOSS_WEIGHT * L_text`` of ``model`` (Eq. 8-10; the KL only with a ``teacher``, each term only with a
        non-zero weight)."""
        c = self.trainer_cfg
        text_features = model.text_features()
        logits = model.logits(model.image_features(image), text_features)
        loss = loss_ce = F.cross_entropy(logits, label)
        summary = {"loss_ce": loss_ce.item()}
        if teacher is not None and c.KL_WEIGHT:
            with torch.no_grad():
                teacher_logits = teacher(image)
            loss_kl = teacher_kl(logits, teacher_logits, c.KL_NORM)
            loss = loss + c.KL_WEIGHT * loss_kl
            summary["loss_kl"] = loss_kl.item()
        if orth_weight:
            loss_orth = self.orth_loss(lorss)
            loss = loss + orth_weight * loss_orth
            summary["loss_orth"] = loss_orth.item()
        if self.text_target is not None:
            loss_text = self.text_loss(text_features)
            loss = loss + c.TEXT_LOSS_WEIGHT * loss_text
            summary["loss_text"] = loss_text.item()
        return loss, logits, summary

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        if self.stage == 1:
            return self.teacher_step(image, label)
        with self.autocast():
            loss, logits, summary = self.losses(self.model, image, label, self._models["prompt_learner"].lorss,
                                                self.trainer_cfg.ORTH_WEIGHT, self.teacher)
        self.backward_and_update(loss)
        summary = {"loss": loss.item(), **summary, "acc": compute_accuracy(logits, label)[0].item()}
        self.step_lr_at_epoch_end()
        return summary

    def teacher_step(self, image, label):
        """Stage 1: ``CE + TEACHER_ORTH_WEIGHT * L_orth + TEXT_LOSS_WEIGHT * L_text`` on the teacher's LoRSS."""
        teacher = self.teacher
        with self.autocast():
            loss, logits, summary = self.losses(teacher, image, label, teacher.prompt_learner.lorss,
                                                self.trainer_cfg.TEACHER_ORTH_WEIGHT)
        self.detect_anomaly(loss)
        optim = self._teacher_optim
        optim.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(optim)
            self.scaler.update()
        else:
            loss.backward()
            optim.step()
        if (self.batch_idx + 1) == self.num_batches:
            self._teacher_sched.step()
        return {"loss": loss.item(), **summary, "acc": compute_accuracy(logits, label)[0].item()}

    def after_epoch(self):
        learner = self._models["prompt_learner"]
        if learner.gates is not None:
            gates = learner.gate_values()
            print("DPD-LoRA gates: " + "; ".join(
                f"{t} " + " ".join(f"{g:.3f}" for g in values) for t, values in gates.items()))
        with torch.no_grad():
            norm = max(float(s.weights().flatten(2).norm(dim=2).max()) for s in learner.lorss.towers().values())
        print(f"DPD-LoRA: largest ||dW||_F of one weight's LoRSS {norm:.4e}")
        super().after_epoch()

    def bench_setup(self):
        """For ``python -m vlpeft.bench``: an untrained frozen teacher, so that a step costs what stage 2's does."""
        if self.needs_teacher(self.cfg) and self.teacher is None:
            self.teacher = self.build_teacher()[0]
            self.freeze_teacher()
