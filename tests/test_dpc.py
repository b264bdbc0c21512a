"""DPC (docs/decisions/dpc.md): the weighting-decoupling parametrisation (step 0 = the backbone, new classes = the
backbone, one SGD step on theta = the analytic step on P'), the hard-negative sampler's rules, the contrastive loss,
the backbone loading and its errors, checkpoints, and a run end to end."""
import json
import os
import os.path as osp
import random

import pytest
import torch
import torch.nn as nn

from conftest import tiny_opts
from vlpeft.trainers.dpc import (
    BackboneError, LookaheadLoader, WeightingDecoupling, add_parallel_prompts, choose_negatives, contrastive_loss,
    couplings, set_prompt_mode,
)

NODES = {"CoOp": "COOP", "MaPLe": "MAPLE", "PromptSRC": "PROMPTSRC", "IVLP": "IVLP", "KgCoOp": "COOP",
         "ProGrad": "COOP"}
PROMPT_OPTS = {
    "CoOp": {"TRAINER.COOP.N_CTX": 4, "TRAINER.COOP.CTX_INIT": ""},
    "MaPLe": {"TRAINER.MAPLE.PROMPT_DEPTH": 2},
    "PromptSRC": {"TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT": 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION": 2},
    "IVLP": {"TRAINER.IVLP.PROMPT_DEPTH_TEXT": 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION": 2},
    "KgCoOp": {"TRAINER.COOP.CTX_INIT": "a photo of a"},
    "ProGrad": {"TRAINER.COOP.N_CTX": 6, "TRAINER.COOP.CTX_INIT": "template"},
}


def _cfg(root, clip_path, trainer, base="CoOp", subsample="base", seed=1, **extra):
    from vlpeft.config import get_cfg

    opts = {"DATASET.NAME": "EuroSAT", "DATASET.ROOT": root, "DATASET.NUM_SHOTS": 2, "SEED": seed,
            "DATASET.SUBSAMPLE_CLASSES": subsample, "TRAINER.NAME": trainer, "TRAINER.DPC.BASE": base,
            f"TRAINER.{NODES[base]}.PREC": "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE": 4, "OUTPUT_DIR": "",
            **PROMPT_OPTS[base], **extra}
    cfg = get_cfg()
    cfg.merge_from_list(tiny_opts(clip_path) + [x for kv in opts.items() for x in (kv[0], str(kv[1]))])
    return cfg


def _build(cfg, seed=1):
    from conftest import build_seeded

    return build_seeded(cfg, seed)


def _backbone(tmp, root, clip_path, base="CoOp", seed=1, write_config=True, **extra):
    """A tuned backbone run folder: the base trainer with prompts moved away from their init, saved at epoch 3."""
    cfg = _cfg(root, clip_path, base, base, seed=seed, **extra)
    trainer = _build(cfg, seed)
    with torch.no_grad():
        for p in trainer._models["prompt_learner"].parameters():
            p.add_(torch.randn_like(p) * 0.3)
    out = osp.join(tmp, f"{base}_seed{seed}")
    trainer.save_model(2, out)
    if write_config:
        with open(osp.join(out, "config.yaml"), "w") as f:
            f.write(cfg.dump())
    return trainer, out


def _dpc(root, clip_path, backbone_dir="", base="CoOp", subsample="base", **extra):
    """A DPC trainer; with ``backbone_dir`` the backbone is loaded as at the start of training."""
    omega = {"TRAINER.DPC.OMEGA_BASE": 1.0} if base == "MaPLe" else {}
    cfg = _cfg(root, clip_path, "DPC", base, subsample, **{"TRAINER.DPC.BACKBONE_DIR": backbone_dir, **omega,
                                                            **extra})
    trainer = _build(cfg)
    if backbone_dir:
        trainer.load_backbone()
    return trainer


def _perturb_theta(trainer, std=0.5):
    with torch.no_grad():
        for p in trainer._models["prompt_learner"].parameters():
            p.add_(torch.randn_like(p) * std)


@pytest.fixture(scope="module")
def images():
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- weighting-decoupling

@pytest.mark.parametrize("base, weighting", [("CoOp", "released"), ("CoOp", "reparametrised"),
                                             ("MaPLe", "released"), ("PromptSRC", "released"),
                                             ("PromptSRC", "reparametrised"), ("IVLP", "released"),
                                             ("KgCoOp", "released"), ("ProGrad", "released")])
def test_step_zero_is_the_backbone(base, weighting, tmp_path, eurosat_root, tiny_clip_path, images):
    backbone, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path, base)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder, base, **{"TRAINER.DPC.WEIGHTING": weighting})
    backbone.set_model_mode("eval")
    dpc.set_model_mode("eval")
    expected = backbone.model_inference(images)
    assert torch.equal(dpc.model_inference(images), expected)  # P + (theta - P) / w_b is P exactly at theta = P
    learner = dpc._models["prompt_learner"]
    # theta starts at P and is the only trainable tensor; P is a buffer
    for m in couplings(learner):
        assert not m.backbone.requires_grad
    thetas = [p for p in learner.parameters() if p.requires_grad]
    assert sum(p.numel() for p in thetas) == sum(p.numel() for p in backbone._models["prompt_learner"].parameters())
    assert len(thetas) == len(couplings(learner))
    # deep vision prompts: the sampler's image features are P's, not the step's
    assert dpc.reuse_image_features == (base in ("CoOp", "KgCoOp", "ProGrad"))
    # and it trains: one step of L_CL on a hard-negative batch moves the parallel prompt
    before = [p.detach().clone() for p in thetas]
    dpc.set_model_mode("train")
    loss = dpc.train_on_pairs(torch.randn(7, 3, 32, 32), torch.tensor([0, 3, 1, 4, 2, 0, 1]))
    assert loss == loss and any((p.detach() - b).abs().max() > 0 for p, b in zip(thetas, before))


@pytest.mark.parametrize("base, weighting", [("CoOp", "released"), ("CoOp", "reparametrised"),
                                             ("PromptSRC", "released")])
@pytest.mark.parametrize("omega_new, exact", [(0.0, True), (1e-6, False)])
def test_new_classes_see_the_backbone(base, weighting, omega_new, exact, tmp_path, eurosat_root, tiny_clip_path,
                                      images):
    backbone, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path, base)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder, base, **{"TRAINER.DPC.OMEGA_NEW": omega_new,
                                                              "TRAINER.DPC.WEIGHTING": weighting})
    _perturb_theta(dpc, std=0.1)  # P' moves by 0.1 (released) or 0.5 (reparametrised, w_b 0.2) on the context
    backbone.set_model_mode("eval")
    expected = backbone.model_inference(images)
    dpc.set_model_mode("eval")
    assert (dpc.model_inference(images) - expected).abs().max() > 1e-2  # P' has moved away from P
    dpc.eval_prompts = "new"
    dpc.set_model_mode("eval")
    got = dpc.model_inference(images)
    if exact:
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weighting", ["released", "reparametrised"])
def test_one_sgd_step_on_theta_is_the_analytic_step_on_the_parallel_prompt(weighting, momentum):
    """released: P' = theta with gradient / w (SGD on P' with lr / w and decay w * wd);
    reparametrised: SGD(lr, wd) on theta = SGD on P' with lr / w^2 and decay w^2 * wd pulling to -(1 - w) P / w."""
    torch.manual_seed(0)
    omega, lr, wd = 0.2, 0.01, 5e-4
    P = torch.randn(4, 8)
    target = torch.randn(4, 8)
    weights = torch.arange(1.0, 9.0)
    module = nn.Module()
    module.ctx = nn.Parameter(P.clone())
    coupling = WeightingDecoupling(P, omega, 1e-6, decode=True, weighting=weighting)
    torch.nn.utils.parametrize.register_parametrization(module, "ctx", coupling, unsafe=True)
    assert torch.equal(module.ctx, P)  # step 0: exactly the backbone
    theta = module.parametrizations.ctx.original
    optim = torch.optim.SGD([theta], lr=lr, momentum=momentum, weight_decay=wd)
    parallel, buf = P.clone(), None
    for _ in range(3):
        optim.zero_grad()
        ((module.ctx - target) ** 2 * weights).sum().backward()
        optim.step()
        # the same step written on P' directly
        p = parallel.clone().requires_grad_(True)
        grad, = torch.autograd.grad(((p - target) ** 2 * weights).sum(), p)
        if weighting == "released":
            d, step = grad + wd * omega * parallel, lr / omega
        else:
            d, step = grad + wd * omega ** 2 * (parallel + (1 - omega) * P / omega), lr / omega ** 2
        buf = d if buf is None or momentum == 0 else momentum * buf + d
        parallel = parallel - step * buf
        torch.testing.assert_close(module.ctx.detach(), parallel, atol=1e-5, rtol=1e-5)
    assert (parallel - P).abs().max() > 1e-2
    if weighting == "released":  # the stored tensor is P' itself, as in the released code's checkpoints
        assert torch.equal(theta.detach(), module.ctx.detach())


def test_maple_with_omega_one_trains_all_of_mapLe_and_stores_p():
    from vlpeft.clip.random_weights import build_random_clip
    from vlpeft.trainers.maple import MultiModalPromptLearner

    learner = MultiModalPromptLearner(build_random_clip("ViT-B/16", seed=0), ["a", "b"], 2, 9, "a photo of a")
    before = {k: v.clone() for k, v in learner.state_dict().items()}
    names = add_parallel_prompts(learner, omega_base=1.0, omega_new=1e-6, decode="first")
    trainable = sum(p.numel() for p in learner.parameters() if p.requires_grad)
    stored_p = sum(m.backbone.numel() for m in couplings(learner))
    assert trainable == stored_p == 3_555_072 and len(names) == 1 + 2 + 8 + 8 * 2
    assert [m.decode for m in couplings(learner)].count(True) == 1  # the first-layer text context only
    # w_b = 1: P' is theta itself, at step 0 exactly P
    assert torch.equal(learner.ctx, before["ctx"]) and torch.equal(learner.proj.weight, before["proj.weight"])


def test_modes_and_their_text_features_are_not_mixed_up_by_the_cache(tmp_path, eurosat_root, tiny_clip_path):
    _, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder)
    _perturb_theta(dpc)
    dpc.set_model_mode("eval")
    learner, model = dpc._models["prompt_learner"], dpc.model
    with torch.no_grad():
        parallel = model.text_features().clone()
        set_prompt_mode(learner, "backbone")
        backbone = model.text_features().clone()
        set_prompt_mode(learner, "base")
        again = model.text_features()
    assert not torch.allclose(parallel, backbone) and torch.equal(again, parallel)


# ---------------------------------------------------------------- hard-negative sampler

class _RecordingRandom(random.Random):
    def __init__(self, seed=0):
        super().__init__(seed)
        self.calls = []

    def randint(self, a, b):
        self.calls.append((a, b))
        return super().randint(a, b)


def _probs(rows, n_classes):
    """Probabilities whose ranking is the given class order per row."""
    out = torch.zeros(len(rows), n_classes)
    for i, order in enumerate(rows):
        for rank, c in enumerate(order):
            out[i, c] = 1.0 - 0.01 * rank
    return out.softmax(-1)


def test_sampler_rules_top_k_non_repeat_and_order():
    n = 20
    # image 0 (label 3): its label is among its top 4 -> the other 3 classes; image 1 (label 7): not in its top 4 ->
    # all 4 classes, minus what is already in the batch (labels 3, 7, 9 and image 0's negatives)
    probs = _probs([[5, 3, 6, 8], [6, 9, 10, 11], [12, 13, 14, 15]], n)
    negatives = choose_negatives(probs, [3, 7, 9], k=4, n_classes=n, rng=_RecordingRandom())
    assert negatives == [[5, 6, 8], [10, 11], [12, 13, 14, 15]]


def test_sampler_fallback_draws_the_official_range_until_two():
    n = 6
    rng = _RecordingRandom(0)
    # every top-3 class is already in the batch: the fallback draws randint(1, n - 2) until 2 negatives
    probs = _probs([[0, 1, 2], [1, 0, 2], [2, 1, 0]], n)
    negatives = choose_negatives(probs, [0, 1, 2], k=3, n_classes=n, rng=rng)
    assert rng.calls and all(call == (1, n - 2) for call in rng.calls)
    assert len(rng.calls) <= (n - 2) * 3
    flat = [c for group in negatives for c in group]
    assert len(flat) == len(set(flat)) and not set(flat) & {0, 1, 2}
    assert all(1 <= c <= n - 2 for c in flat)  # the official range never draws the first or the last class
    assert len(negatives[0]) == 2


@pytest.mark.parametrize("seed", range(20))
def test_sampler_invariants_on_random_scores(seed):
    g = torch.Generator().manual_seed(seed)
    n, b, k = int(torch.randint(5, 40, (1,), generator=g)), 4, 8
    k = min(k, n)
    labels = torch.randint(0, n, (b,), generator=g).tolist()
    probs = torch.rand(b, n, generator=g).softmax(-1)
    negatives = choose_negatives(probs, labels, k, n, random.Random(seed))
    flat = [c for group in negatives for c in group]
    assert not set(flat) & set(labels)  # a batch label is never a negative (ground truth included)
    assert len(flat) == len(set(flat))  # no class twice in the enlarged batch
    for i, group in enumerate(negatives):
        top = probs[i].topk(k).indices.tolist()
        from_top = [c for c in group if c in top]
        assert from_top == [c for c in top if c in from_top]  # in score order
        assert len(group) <= k
    assert len(labels) + len(flat) <= b * (k + 1)


def test_top_k_is_clamped_to_the_number_of_classes(tmp_path, eurosat_root, tiny_clip_path):
    _, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder, **{"TRAINER.DPC.TOPK": 8})
    assert dpc.dm.num_classes == 5 and dpc.topk == 5


def test_sampler_scores_with_the_frozen_backbone(tmp_path, eurosat_root, tiny_clip_path, images):
    backbone, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder)
    _perturb_theta(dpc)
    backbone.set_model_mode("eval")
    with torch.no_grad():
        cos = backbone.model.image_features(images) @ backbone.model.text_features().t()
    torch.testing.assert_close(dpc.sampler_scores(images)[0], (100 * cos).softmax(-1), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- loss

def test_contrastive_loss_is_the_symmetric_infonce_with_the_official_half():
    torch.manual_seed(0)
    logits = torch.randn(7, 7) * 3
    by_hand = 0.0
    for i in range(7):
        by_hand -= logits[i, i] - torch.logsumexp(logits[i], 0)  # image i against every text
        by_hand -= logits[i, i] - torch.logsumexp(logits[:, i], 0)  # text i against every image
    torch.testing.assert_close(contrastive_loss(logits), by_hand / 7 / 2)
    labels = torch.tensor([0, 1, 0, 2, 3, 4, 5])  # images 0 and 2 share a label
    masked = 0.0
    keep = [j for j in range(7) if j != 2]
    for i in range(7):
        cols = [j for j in range(7) if j == i or labels[j] != labels[i]]
        masked -= logits[i, i] - torch.logsumexp(logits[i, cols], 0)
        masked -= logits[i, i] - torch.logsumexp(logits[cols, i], 0)
    torch.testing.assert_close(contrastive_loss(logits, labels, mask_duplicates=True), masked / 7 / 2)
    assert keep  # the masked version keeps every image


def test_the_loss_decreases_on_a_fixed_hard_negative_batch(tmp_path, eurosat_root, tiny_clip_path):
    _, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder, **{"OPTIM.LR": 0.05, "OPTIM.WARMUP_EPOCH": 0,
                                                        "OUTPUT_DIR": str(tmp_path / "out")})
    dpc.before_train()
    batch = next(iter(dpc.train_loader_x))
    images, labels, known = dpc.hard_negative_batch(batch)
    assert images.shape[0] == labels.shape[0] > batch["img"].shape[0]
    # CoOp leaves the image tower alone: the sampler's features of the batch images are the step's
    rows, features = known
    assert len(rows) == batch["img"].shape[0] and all(labels[rows].cpu() == batch["label"])
    with torch.no_grad():
        torch.testing.assert_close(features, dpc.model.image_features(images[rows]), atol=1e-5, rtol=1e-5)
    optim = dpc._optims["prompt_learner"]
    losses = []
    for _ in range(15):
        logits = dpc.model.logits(dpc.model.image_features(images), dpc.model.text_features()[labels])
        loss = contrastive_loss(logits, labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05
    dpc.pool.close()


# ---------------------------------------------------------------- backbone loading

def test_backbone_errors(tmp_path, eurosat_root, tiny_clip_path):
    with pytest.raises(BackboneError, match="does not exist"):
        _dpc(eurosat_root, tiny_clip_path, str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="no prompt_learner"):
        _dpc(eurosat_root, tiny_clip_path, str(tmp_path / "empty"))
    _, maple = _backbone(tmp_path, eurosat_root, tiny_clip_path, "MaPLe")
    with pytest.raises(BackboneError, match="is a MaPLe run"):
        _dpc(eurosat_root, tiny_clip_path, maple)
    os.remove(osp.join(maple, "config.yaml"))
    with pytest.raises(BackboneError, match="does not hold CoOp prompts"):
        _dpc(eurosat_root, tiny_clip_path, maple)
    _, seed2 = _backbone(tmp_path, eurosat_root, tiny_clip_path, seed=2)
    with pytest.raises(BackboneError, match="SEED 2"):
        _dpc(eurosat_root, tiny_clip_path, seed2)
    _, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path)
    with pytest.raises(BackboneError, match="N_CTX"):
        _dpc(eurosat_root, tiny_clip_path, folder, **{"TRAINER.COOP.N_CTX": 8})
    with pytest.raises(BackboneError, match="SUBSAMPLE_CLASSES"):
        _dpc(eurosat_root, tiny_clip_path, folder, subsample="all")
    with pytest.raises(BackboneError, match="epochs \\[3\\]"):
        _dpc(eurosat_root, tiny_clip_path, folder, **{"TRAINER.DPC.BACKBONE_EPOCH": 7})
    os.remove(osp.join(folder, "config.yaml"))
    with pytest.raises(BackboneError, match="shape"):
        _dpc(eurosat_root, tiny_clip_path, folder, **{"TRAINER.COOP.N_CTX": 8})


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_official_coop_checkpoint_loads_and_its_classes_are_checked(dtype, tmp_path, eurosat_root, tiny_clip_path,
                                                                     images):
    """The official CoOp layout: prompt_learner/model.pth.tar-N holding ctx, token_prefix, token_suffix (fp16 from
    its fp16 CLIP), no config.yaml."""
    backbone, _ = _backbone(tmp_path, eurosat_root, tiny_clip_path, write_config=False)
    learner = backbone._models["prompt_learner"]
    state = {"ctx": learner.ctx.detach().to(dtype), "token_prefix": learner.classes.token_prefix.to(dtype),
             "token_suffix": learner.classes.token_suffix.to(dtype)}
    folder = tmp_path / "official" / "prompt_learner"
    folder.mkdir(parents=True)
    torch.save({"state_dict": state, "epoch": 20, "optimizer": None, "scheduler": None}, folder / "model.pth.tar-20")
    dpc = _dpc(eurosat_root, tiny_clip_path, str(tmp_path / "official"))
    coupling = couplings(dpc._models["prompt_learner"])[0]
    assert torch.equal(coupling.backbone, state["ctx"].float())
    wrong = dict(state, token_suffix=state["token_suffix"][:3])
    torch.save({"state_dict": wrong, "epoch": 20}, folder / "model.pth.tar-20")
    with pytest.raises(BackboneError, match="3 classes"):
        _dpc(eurosat_root, tiny_clip_path, str(tmp_path / "official"))


# ---------------------------------------------------------------- checkpoints, evaluation rule

def test_checkpoint_round_trip_and_the_evaluation_rule(tmp_path, eurosat_root, tiny_clip_path, images):
    backbone, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder)
    _perturb_theta(dpc)
    dpc.save_model(0, str(tmp_path / "dpc"))
    saved = torch.load(tmp_path / "dpc" / "prompt_learner" / "model.pth.tar-1", weights_only=False)
    assert sorted(saved["state_dict"]) == ["parametrizations.ctx.0.backbone", "parametrizations.ctx.original"]
    assert saved["dpc"]["classnames"] == dpc.dm.dataset.classnames
    dpc.set_model_mode("eval")
    trained_logits = dpc.model_inference(images)

    # base classes, no backbone folder: theta and P come from the checkpoint, evaluated with P'
    again = _dpc(eurosat_root, tiny_clip_path)
    again.load_model(str(tmp_path / "dpc"), epoch=1)
    assert again.eval_prompts == "base"
    again.set_model_mode("eval")
    torch.testing.assert_close(again.model_inference(images), trained_logits, atol=0, rtol=0)
    # new classes: w_n P' + (1 - w_n) P, i.e. the backbone's new-class predictions
    new = _dpc(eurosat_root, tiny_clip_path, subsample="new", **{"TRAINER.DPC.OMEGA_NEW": 0.0})
    new.load_model(str(tmp_path / "dpc"), epoch=1)
    assert new.eval_prompts == "new"
    reference = _build(_cfg(eurosat_root, tiny_clip_path, "CoOp", subsample="new"))
    reference.load_model(folder, epoch=3)
    new.set_model_mode("eval")
    reference.set_model_mode("eval")
    assert torch.equal(new.model_inference(images), reference.model_inference(images))
    # the same class names under another dataset name (a domain-shift target): new
    again.after_load_checkpoint(dict(saved, dpc=dict(saved["dpc"], dataset="ImageNet")))
    assert again.eval_prompts == "new"
    # evaluated with another w_b than it was trained with: refused
    other = _dpc(eurosat_root, tiny_clip_path, **{"TRAINER.DPC.OMEGA_BASE": 0.5})
    with pytest.raises(ValueError, match="OMEGA_BASE 0.2"):
        other.load_model(str(tmp_path / "dpc"), epoch=1)


# ---------------------------------------------------------------- data: seeded transform, pool, look-ahead

def test_seeded_transform_is_the_engine_transform_for_the_same_seed():
    import numpy as np
    from PIL import Image

    from conftest import cfg_with
    from vlpeft.engine.image_pool import SeededTrainTransform
    from vlpeft.engine.transforms import build_transform

    cfg = cfg_with(**{"INPUT.TRANSFORMS": ["random_resized_crop", "random_flip", "normalize"],
                      "INPUT.SIZE": (48, 48)})
    reference, seeded = build_transform(cfg, is_train=True), SeededTrainTransform(cfg)
    rng = np.random.default_rng(0)
    for seed in range(12):
        h, w = (int(x) for x in rng.integers(40, 160, 2))
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        torch.manual_seed(seed)
        assert torch.equal(seeded(image, seed), reference(image))


def test_pool_serves_requests_in_order_with_a_bounded_cache(tmp_path):
    import numpy as np
    from PIL import Image

    from vlpeft.engine.data import Datum
    from vlpeft.engine.image_pool import ImagePool

    items = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((10, 10, 3), i * 40, dtype=np.uint8)).save(path)
        items.append(Datum(impath=str(path), label=i % 3, classname=f"c{i % 3}"))
    pool = ImagePool(items, transform=lambda image: torch.tensor(np.asarray(image)[0, 0, 0]), workers=3,
                     cache_mb=2 * 300 / 2 ** 20)  # room for two 10x10 RGB images
    assert pool.paths[1] == [items[1].impath, items[4].impath]
    order = [items[i].impath for i in (5, 0, 3, 0, 2)]
    assert [int(t) for t in pool.request([(p, 0) for p in order]).result()] == [200, 0, 120, 0, 80]
    assert pool.cache.bytes <= 600 and len(pool.cache._images) == 2
    pool.close()


def test_lookahead_loader_exposes_the_next_batch():
    loader = LookaheadLoader([1, 2, 3])
    seen = [(batch, loader.upcoming) for batch in loader]
    assert seen == [(1, 2), (2, 3), (3, None)] and len(loader) == 3


# ---------------------------------------------------------------- end to end through train.py

def test_train_and_evaluate_end_to_end_reproducibly(tmp_path, eurosat_root, tiny_clip_path):
    from vlpeft.cli import main
    from vlpeft.engine.utils import close_logger

    common = ["--root", eurosat_root, "--seed", "1"]
    opts = tiny_opts(tiny_clip_path, **{"DATASET.NAME": "EuroSAT", "DATASET.NUM_SHOTS": 2,
                                        "DATASET.SUBSAMPLE_CLASSES": "base", "TRAINER.COOP.PREC": "fp32",
                                        "TRAINER.COOP.N_CTX": 4})
    main(common + ["--trainer", "CoOp", "--output-dir", str(tmp_path / "bb")] + opts)
    close_logger()
    dpc_opts = opts + ["DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TRAINER.DPC.BASE", "CoOp",
                       "TRAINER.DPC.BACKBONE_DIR", str(tmp_path / "bb"), "TRAINER.DPC.WORKERS", "3"]
    thetas = []
    for run in ("dpc1", "dpc2"):
        main(common + ["--trainer", "DPC", "--output-dir", str(tmp_path / run)] + dpc_opts)
        close_logger()
        ckpt = torch.load(tmp_path / run / "prompt_learner" / "model.pth.tar-2", weights_only=False)
        thetas.append(ckpt["state_dict"]["parametrizations.ctx.original"])
    assert torch.equal(thetas[0], thetas[1])  # background loading does not change what is trained
    log = (tmp_path / "dpc1" / "log.txt").read_text()
    assert "TOPK 8 clamped to 5" in log and "image-class pairs per step" in log
    new_opts = [x if x != "base" else "new" for x in opts]
    main(common + ["--trainer", "DPC", "--output-dir", str(tmp_path / "dpc_new"), "--eval-only", "--model-dir",
                   str(tmp_path / "dpc1"), "--load-epoch", "2", "TRAINER.DPC.OMEGA_NEW", "0.0"] + new_opts)
    close_logger()
    main(common + ["--trainer", "CoOp", "--output-dir", str(tmp_path / "bb_new"), "--eval-only", "--model-dir",
                   str(tmp_path / "bb"), "--load-epoch", "2"] + new_opts)
    close_logger()
    results = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("dpc_new", "bb_new")]
    assert results[0]["accuracy"] == results[1]["accuracy"]


def test_random_init_needs_the_reparametrised_weighting(eurosat_root, tiny_clip_path):
    with pytest.raises(ValueError, match="WEIGHTING reparametrised"):
        _dpc(eurosat_root, tiny_clip_path, **{"TRAINER.DPC.INIT": "random"})


def test_training_without_a_backbone_says_what_to_do(tmp_path, eurosat_root, tiny_clip_path):
    dpc = _dpc(eurosat_root, tiny_clip_path, **{"OUTPUT_DIR": str(tmp_path / "out")})
    with pytest.raises(BackboneError, match="BACKBONE_DIR is not set"):
        dpc.before_train()


def test_prompt_learners_build_on_a_resnet_clip(tmp_path):
    """A ResNet image tower takes no token edits; text-prompt learners (CoOp, and DPC on it) still build on it."""
    from conftest import cfg_with
    from vlpeft.clip import load_clip
    from vlpeft.clip.random_weights import save_tiny_checkpoint
    from vlpeft.trainers.coop import CustomCLIP

    path = tmp_path / "RN50.pt"
    save_tiny_checkpoint(path, seed=0, vision_layers=(1, 1, 1, 1), image_size=64)
    clip_model = load_clip("RN50", str(path))
    model = CustomCLIP(cfg_with(**{"TRAINER.COOP.N_CTX": 4}), ["cat", "dog", "sea or lake"], clip_model)
    add_parallel_prompts(model.prompt_learner, 0.2, 1e-6)
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    assert model.surgery.blocks["vision"] == []


def test_step_cost_benchmark_reports_each_epoch(tmp_path):
    from vlpeft.bench_dpc import main

    summary = main(["--epochs", "2", "--classes", "10", "--images-per-class", "6", "--shots", "4",
                    "--image-size", "48", "--workers", "2", "--out", str(tmp_path)])
    assert [e["epoch"] for e in summary["epochs"]] == [1, 2] and summary["reference_ms"] > 0
    assert all(e["steps"] == 5 and 4 < e["pairs"] <= 4 * 6 and e["wait_ms"] >= 0 for e in summary["epochs"])
    assert summary["epochs"][1]["cache_hits"] > 0  # the second epoch reuses decoded images
    assert json.loads((tmp_path / "bench_dpc.json").read_text())["ratio"] == summary["ratio"]


def test_transforms_outside_the_seeded_set_run_in_the_training_thread(tmp_path, eurosat_root, tiny_clip_path):
    _, folder = _backbone(tmp_path, eurosat_root, tiny_clip_path)
    dpc = _dpc(eurosat_root, tiny_clip_path, folder, **{"INPUT.TRANSFORMS": "['random_crop', 'normalize']",
                                                        "OUTPUT_DIR": str(tmp_path / "out")})
    dpc.before_train()
    assert not dpc.pool.seeded
    images, labels, _ = dpc.hard_negative_batch(next(iter(dpc.train_loader_x)))
    assert images.shape[1:] == (3, 32, 32) and len(images) == len(labels) > 4
    dpc.pool.close()
