"""DIP: dense information prompts (Hao et al., arXiv 2312.10813, §3.2, §4.1, App. B, F).
Choices: docs/decisions/dip.md.

A prompt matrix ``P`` [n, d] becomes ``P = P_init + Dropout_p(P_A P_B)`` (§4.1.3) with trainable ``P_A`` [n, r] and
``P_B`` [r, d] drawn from N(0, INIT_STD^2) (the paper's "sigma -> 0"; 0.02, docs/decisions/dip.md#dip-init-std) and a
frozen full-rank branch ``P_init`` (§4.1.2): the word embeddings of CTX_INIT for the first text prompt, no branch
(zeros) without CTX_INIT (the ablation "decomposition only", Table 5), and a frozen N(0, 0.02^2) sample for deeper
prompts (the base method's own init). ``P_init`` is a persistent buffer: the paper loads it with ``P_A`` and ``P_B``
for inference (§4.2), and the information-density command reads it from the checkpoint. Dropout acts on the product
only, once per model forward (the text prompt and, in DIPMaPLe, the vision prompt coupled from it share one sample);
at evaluation the equivalent ``P = P_init + P_A P_B`` is computed once and reused while the factors are unchanged.

* ``DIP`` (on CoOp): the 4 context vectors of "a photo of a", rank 1: 4 + 512 = 516 trainable parameters
  (ViT-B/16); ``PROMPT_DEPTH`` > 1 adds low-rank deep text prompts at blocks 1 .. depth - 1 (App. F, Table 12: 516
  per layer). ``ALGORITHM`` selects the alternatives of Table 1 on CoOp's full-rank context: ``id_objective``
  (Alg. 1: ``L = CE - LAMBDA * ID_k``) and ``sv_penalty`` (Alg. 2: ``L = CE + LAMBDA * sum_{i=n-k+1}^{n} i sigma_i``,
  read literally: the k smallest singular values weighted by their order), k = ``ID_K``; ``lowrank`` is Alg. 3,
  DIP itself.
* ``DIPMaPLe``: MaPLe with low-rank text prompts in all ``PROMPT_DEPTH`` layers (n = 4, r = 1) and every coupling
  replaced by a bias-free rank-``PROJ_RANK`` product (512 -> 64 -> 768): 9 x (516 + 512*64 + 64*768) = 741,924
  (App. B; n = 4 and no bias are what that count implies, docs/decisions/dip.md#dipmaple-prompts-and-couplings).
* Both log ID_1 and ID_2 of the learned prompts after every epoch (``vlpeft.density``).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from vlpeft.config import trainer_config
from vlpeft.density import density_report, format_report, information_density
from vlpeft.engine import register_trainer

from .base import ClipTrainer, VersionedCache, compute_accuracy
from .ivlp import PromptedCLIP
from .maple import MultiModalPromptLearner
from .text_prompts import ClassPromptEmbeddings, context_from_words, random_context

ALGORITHMS = ("lowrank", "id_objective", "sv_penalty")

trainer_config("DIP", N_CTX=4, CTX_INIT="a photo of a", PREC="fp16", RANK=1, DROPOUT=0.25, INIT_STD=0.02,
               PROMPT_DEPTH=1, ALGORITHM="lowrank", ID_K=1, LAMBDA=1.0)
trainer_config("DIPMAPLE", N_CTX=4, CTX_INIT="a photo of a", PREC="fp16", PROMPT_DEPTH=9, RANK=1, PROJ_RANK=64,
               DROPOUT=0.25, INIT_STD=0.02)


class LowRankPrompt(nn.Module):
    """``P = init + Dropout_p(A B)`` [n, d] (§4.1.3); ``A`` [n, r], ``B`` [r, d] trainable, ``init`` frozen."""

    def __init__(self, init, rank=1, dropout=0.0, std=0.02):
        super().__init__()
        n, d = init.shape
        self.register_buffer("init", init.detach().float().clone())
        self.A = nn.Parameter(torch.randn(n, rank) * std)
        self.B = nn.Parameter(torch.randn(rank, d) * std)
        self.dropout = nn.Dropout(dropout)
        self._sample = None
        self._equivalent = VersionedCache()

    def equivalent(self):
        """``init + A B`` (dropout is the identity at evaluation); cached without autograd."""
        return self._equivalent.get([self.A, self.B, self.init], lambda: self.init + self.A @ self.B)

    def resample(self):
        """Start a new forward: draw the dropout sample that every use in this forward shares. It is drawn here,
        before the towers run, so that activation checkpointing, which re-runs a block in the backward pass, sees the
        same tensor again instead of drawing inside the re-run."""
        self._sample = self.init + self.dropout(self.A @ self.B) if self.training and self.dropout.p > 0 else None

    def forward(self):
        if not self.training or self.dropout.p == 0:
            return self.equivalent()
        if self._sample is None:
            self.resample()
        return self._sample


class FullRankPrompt(nn.Module):
    """CoOp's trainable context as a module (``weight`` [n, d]): the prompt of Alg. 1 / 2 (Table 1)."""

    def __init__(self, init):
        super().__init__()
        self.weight = nn.Parameter(init.detach().float().clone())

    def forward(self):
        return self.weight


def resample_prompts(module):
    """Start a new model forward: every :class:`LowRankPrompt` in ``module`` draws a new dropout sample."""
    for m in module.modules():
        if isinstance(m, LowRankPrompt):
            m.resample()


class DIPPromptLearner(nn.Module):
    """Text prompts of DIP + CoOp: ``ctx`` (first layer, positions 1..n) and ``deep[l-1]`` (block l)."""

    def __init__(self, clip_model, classnames, n_ctx, ctx_init, rank, dropout, std, depth=1, algorithm="lowrank"):
        super().__init__()
        if algorithm not in ALGORITHMS:
            raise ValueError(f'TRAINER.DIP.ALGORITHM must be one of {list(ALGORITHMS)}, got "{algorithm}"')
        blocks = len(clip_model.transformer.resblocks)
        if not 1 <= depth <= blocks:
            raise ValueError(f"TRAINER.DIP.PROMPT_DEPTH must be in 1..{blocks}, got {depth}")
        dim = clip_model.ln_final.weight.shape[0]
        if ctx_init:
            init, prefix = context_from_words(clip_model, ctx_init)
        else:
            init, prefix = torch.zeros(n_ctx, dim), " ".join(["X"] * n_ctx)
        n_ctx = init.shape[0]
        print(f'Initial context: "{prefix}" ({"frozen full-rank branch" if ctx_init else "no full-rank branch"})')
        print(f"Number of context words (tokens): {n_ctx}; {algorithm} prompts, rank {rank}, dropout {dropout}")

        def prompt(p_init):
            if algorithm == "lowrank":
                return LowRankPrompt(p_init, rank, dropout, std)
            return FullRankPrompt(p_init if ctx_init else random_context(n_ctx, dim))

        self.ctx = prompt(init)
        self.deep = nn.ModuleList([prompt(random_context(n_ctx, dim)) for _ in range(depth - 1)])
        self.classes = ClassPromptEmbeddings(clip_model, classnames, prefix, n_ctx)
        self.n_ctx = n_ctx

    @property
    def tokenized_prompts(self):
        return self.classes.tokenized_prompts

    def prompts(self):
        """Every prompt matrix, first layer first (for the Alg. 1 / 2 losses)."""
        return [self.ctx()] + [p() for p in self.deep]

    def attach(self, surgery):
        for layer, prompt in enumerate(self.deep, start=1):
            surgery.write("text", layer, 1, prompt)

    def forward(self):
        return self.classes.assemble(self.ctx().unsqueeze(0).expand(self.classes.n_cls, -1, -1))


class DIPMaPLePromptLearner(MultiModalPromptLearner):
    """MaPLe's learner with low-rank text prompts and rank-``proj_rank`` couplings (names as MaPLe's)."""

    def __init__(self, clip_model, classnames, n_ctx, depth, ctx_init, rank, proj_rank, dropout, std):
        self._dip = dict(rank=rank, proj_rank=proj_rank, dropout=dropout, std=std)
        super().__init__(clip_model, classnames, n_ctx, depth, ctx_init)
        print(f"DIP prompts: rank {rank}, dropout {dropout}; couplings of rank {proj_rank} without bias")

    def make_prompt(self, init):
        d = self._dip
        return LowRankPrompt(init, d["rank"], d["dropout"], d["std"])

    def make_coupling(self, text_dim, vision_dim):
        rank = self._dip["proj_rank"]
        return nn.Sequential(nn.Linear(text_dim, rank, bias=False), nn.Linear(rank, vision_dim, bias=False))


class DIPCLIP(PromptedCLIP):
    """:class:`PromptedCLIP` drawing one dropout sample of the low-rank prompts per forward."""

    def forward(self, image):
        resample_prompts(self.prompt_learner)
        return super().forward(image)


class DensityLog:
    """Prints ID_1 / ID_2 of the registered learner's prompt matrices after every epoch (Figure 1's quantity)."""

    def after_epoch(self):
        super().after_epoch()
        report = density_report(self._models["prompt_learner"].state_dict(), (1, 2))
        print(f"information density (epoch {self.epoch + 1}): {format_report(report)}")


@register_trainer
class DIP(DensityLog, ClipTrainer):
    """DIP on CoOp; learner ``prompt_learner``; loss: cross-entropy (+ the Alg. 1 / 2 terms when selected)."""

    CONFIG_NODE = "DIP"

    def check_cfg(self, cfg):
        super().check_cfg(cfg)  # ALGORITHM is checked by DIPPromptLearner
        if cfg.TRAINER.DIP.ID_K < 1:
            raise ValueError(f"TRAINER.DIP.ID_K must be >= 1, got {cfg.TRAINER.DIP.ID_K}")

    def build_model(self):
        c = self.trainer_cfg
        clip_model = self.load_frozen_clip()
        print("Building custom CLIP")
        learner = DIPPromptLearner(clip_model, self.dm.dataset.classnames, c.N_CTX, c.CTX_INIT, c.RANK, c.DROPOUT,
                                   c.INIT_STD, c.PROMPT_DEPTH, c.ALGORITHM)
        self.model = DIPCLIP(learner, clip_model)
        self.register_learner("prompt_learner", learner, model=self.model)

    def density_term(self):
        """The Alg. 1 / 2 term added to the cross-entropy (0 for DIP itself)."""
        c = self.trainer_cfg
        if c.ALGORITHM == "lowrank":
            return None
        terms = []
        for prompt in self.model.prompt_learner.prompts():
            if c.ALGORITHM == "id_objective":
                terms.append(-information_density(prompt, c.ID_K))
            else:
                sigma = torch.linalg.svdvals(prompt.float())
                n = sigma.numel()
                order = torch.arange(1, n + 1, device=sigma.device, dtype=sigma.dtype)
                terms.append((order * sigma)[max(n - c.ID_K, 0):].sum())
        return c.LAMBDA * torch.stack(terms).sum()

    def forward_backward(self, batch):
        image, label = self.parse_batch_train(batch)
        with self.autocast():
            output = self.model(image)
            loss_ce = F.cross_entropy(output, label)
            term = self.density_term()
            loss = loss_ce if term is None else loss_ce + term
        self.backward_and_update(loss)
        summary = {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}
        if term is not None:
            summary["loss_ce"] = loss_ce.item()
            summary["loss_density"] = term.item()
        self.step_lr_at_epoch_end()
        return summary


@register_trainer
class DIPMaPLe(DensityLog, ClipTrainer):
    """DIP on MaPLe; learner ``prompt_learner``; loss: cross-entropy."""

    CONFIG_NODE = "DIPMAPLE"

    def build_model(self):
        c = self.trainer_cfg
        clip_model = self.load_frozen_clip()
        print("Building custom CLIP")
        learner = DIPMaPLePromptLearner(clip_model, self.dm.dataset.classnames, c.N_CTX, c.PROMPT_DEPTH, c.CTX_INIT,
                                        c.RANK, c.PROJ_RANK, c.DROPOUT, c.INIT_STD)
        self.model = DIPCLIP(learner, clip_model)
        self.register_learner("prompt_learner", learner, model=self.model)
