"""DsRA (docs/decisions/dsra.md): parameter counts, start exactly at the base method (R = 0), merged = unmerged
(also inside the trainer's eval mode), the KgCoOp / ProGrad plug-in variants."""
import pytest
import torch

from vlpeft.clip import load_clip
from vlpeft.clip.random_weights import build_random_clip
from conftest import tiny_opts
from vlpeft.trainers.dsra import DsRALearner, DualSharedAdapters, add_dual_shared_adapters
from vlpeft.trainers.ivlp import PromptedCLIP, VLPromptLearner

CLASSNAMES = ["forest", "sea or lake", "Annual_Crop Land"]


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("positions, share_positions, adapters, total", [
    ("both", True, 128_600, 174_680),  # the paper's 0.17M (adapters alone 128,600)
    ("attn", True, 64_600, 110_680),   # attention-only ablation (T4: 0.11M)
    ("both", False, 129_200, 175_280),  # R per position
])
def test_dsra_parameter_counts_vit_b16(positions, share_positions, adapters, total):
    clip_model = build_random_clip("ViT-B/16", seed=0)
    prompts = VLPromptLearner(clip_model, CLASSNAMES, 4, 4, 9, 9, "a photo of a")
    dsra = DualSharedAdapters(clip_model, 50, positions, True, share_positions)
    assert n_params(dsra) == adapters and n_params(DsRALearner(prompts, dsra)) == total
    assert dsra.M["text_attn"].shape == (512, 50) and dsra.M["vision_attn"].shape == (768, 50)
    assert all(torch.count_nonzero(r) == 0 for r in dsra.R.values())


def _models(tiny_clip_path, seed=0):
    torch.manual_seed(seed)
    plain_clip, dsra_clip = load_clip("tiny", tiny_clip_path), load_clip("tiny", tiny_clip_path)
    prompts = VLPromptLearner(plain_clip, CLASSNAMES, 4, 4, 2, 2, "a photo of a")
    with torch.no_grad():
        for p in prompts.parameters():
            p.normal_(std=0.3)
    twin = VLPromptLearner(dsra_clip, CLASSNAMES, 4, 4, 2, 2, "a photo of a")
    twin.load_state_dict(prompts.state_dict())
    dsra = PromptedCLIP(twin, dsra_clip)
    learner = add_dual_shared_adapters(dsra, DualSharedAdapters(dsra_clip, 5))
    return PromptedCLIP(prompts, plain_clip).eval(), dsra.eval(), learner


def test_dsra_starts_at_promptsrc_and_merges(tiny_clip_path):
    promptsrc, dsra, learner = _models(tiny_clip_path)
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dsra(images), promptsrc(images), atol=1e-5, rtol=1e-5)  # R = 0: PromptSRC exactly
        for r in learner.adapters.R.values():
            r.normal_(std=0.5)
        trained = dsra(images)
        assert (trained - promptsrc(images)).abs().max() > 1e-3
        dsra.surgery.merge()
        merged = dsra(images)  # the text cache keys on the merged state: recomputed through the merged weights
        dsra.surgery.unmerge()
    torch.testing.assert_close(merged, trained, atol=1e-4, rtol=1e-4)
    # the teacher view has no adapters: plain CLIP
    with torch.no_grad(), dsra.surgery.disabled():
        plain = dsra.image_features(images)
    with torch.no_grad(), promptsrc.surgery.disabled():
        torch.testing.assert_close(plain, promptsrc.image_features(images), atol=1e-6, rtol=1e-6)


# ---------------------------------------------------------------- the trainer: merged evaluation, plug-in variants

def _trainer(eurosat_root, tiny_clip_path, base="PromptSRC", seed=1, trainer="DsRA", **extra):
    from vlpeft.cli import reset_cfg  # noqa: F401  (registers the config nodes)
    from vlpeft.config import get_cfg
    from vlpeft.engine import build_trainer, set_random_seed
    import vlpeft.trainers  # noqa: F401

    opts = {"DATASET.NAME": "EuroSAT", "DATASET.ROOT": eurosat_root, "DATASET.NUM_SHOTS": 2,
            "DATASET.SUBSAMPLE_CLASSES": "base", "TRAINER.NAME": trainer, "TRAINER.DSRA.BASE": base,
            "TRAINER.DSRA.RANK": 4, "TRAINER.DSRA.PREC": "fp32", "TRAINER.DSRA.PROMPT_DEPTH_TEXT": 2,
            "TRAINER.DSRA.PROMPT_DEPTH_VISION": 2, "TRAINER.PROMPTSRC.PREC": "fp32",
            "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT": 2, "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION": 2,
            "TRAINER.COOP.PREC": "fp32", "TRAINER.COOP.N_CTX": 6, "TRAINER.COOP.CTX_INIT": "a photo of a",
            "OUTPUT_DIR": "", **extra}
    cfg = get_cfg()
    cfg.merge_from_list(tiny_opts(tiny_clip_path) + [x for kv in opts.items() for x in (kv[0], str(kv[1]))])
    set_random_seed(seed)
    return build_trainer(cfg)


def _perturb_adapters(trainer, std=0.5):
    with torch.no_grad():
        for r in trainer._models["prompt_learner"].adapters.R.values():
            r.normal_(std=std)


def test_trainer_evaluates_on_merged_weights_and_trains_on_the_saved_ones(eurosat_root, tiny_clip_path):
    trainer = _trainer(eurosat_root, tiny_clip_path)
    surgery, images = trainer.model.surgery, torch.randn(4, 3, 32, 32)
    in_proj = surgery.blocks["vision"][0].attn.in_proj_weight
    original = in_proj.detach().clone()
    _perturb_adapters(trainer)
    trainer.set_model_mode("train")
    with torch.no_grad():
        unmerged = trainer.model(images)
    trainer.set_model_mode("eval")
    assert surgery.merged and not torch.equal(in_proj, original)
    torch.testing.assert_close(trainer.model_inference(images), unmerged, atol=1e-4, rtol=1e-4)
    _perturb_adapters(trainer)  # e.g. a checkpoint load or GPA: the next switch to eval re-merges
    trainer.set_model_mode("train")
    assert not surgery.merged and torch.equal(in_proj, original)  # training runs on the saved weights, bit-exact
    with torch.no_grad():
        unmerged = trainer.model(images)
    trainer.set_model_mode("eval")
    torch.testing.assert_close(trainer.model_inference(images), unmerged, atol=1e-4, rtol=1e-4)
    # 2 merged weights (attention in_proj, MLP c_fc) per block of each tower
    assert len(surgery._saved_weights) == 2 * (len(surgery.blocks["text"]) + len(surgery.blocks["vision"]))
    # merged inference runs no adapter at all (the cost of the base method), unmerged training runs every one
    calls = []
    for _, hook, _ in surgery._adapter_hooks.values():
        hook.adapters[:] = [lambda z, f=f: calls.append(1) or f(z) for f in hook.adapters]
    trainer.model._text_cache = type(trainer.model._text_cache)()
    trainer.model_inference(images)
    assert calls == []
    trainer.set_model_mode("train")
    calls.clear()
    trainer.model(images)
    assert len(calls) == 2 * (len(surgery.blocks["text"]) + len(surgery.blocks["vision"]))


@pytest.mark.parametrize("base", ["KgCoOp", "ProGrad"])
def test_plug_in_variants_add_the_adapters_to_the_base_method(base, eurosat_root, tiny_clip_path):
    from vlpeft.trainers.dsra import DsRA
    from vlpeft.trainers.kgcoop import KgCoOp
    from vlpeft.trainers.prograd import ProGrad

    variant = _trainer(eurosat_root, tiny_clip_path, base)
    reference = _trainer(eurosat_root, tiny_clip_path, base, trainer=base)
    assert isinstance(variant, DsRA) and isinstance(variant, {"KgCoOp": KgCoOp, "ProGrad": ProGrad}[base])
    assert type(variant).__name__ == "DsRA" and variant.trainer_cfg is variant.cfg.TRAINER.COOP
    learner = variant._models["prompt_learner"]
    assert variant.model.prompt_learner is learner and isinstance(learner, DsRALearner)
    n_adapters = sum(p.numel() for p in learner.adapters.parameters())
    n_base = sum(p.numel() for p in reference._models["prompt_learner"].parameters())
    assert n_base == {"KgCoOp": 4, "ProGrad": 6}[base] * 64  # the base's own context ("a photo of a" / N_CTX 6)
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == n_base + n_adapters
    images = torch.randn(4, 3, 32, 32)
    variant.set_model_mode("eval")
    reference.set_model_mode("eval")
    with torch.no_grad():  # R = 0: exactly the base method at step 0
        torch.testing.assert_close(variant.model_inference(images), reference.model_inference(images))
    torch.testing.assert_close(variant.teacher_text_features, reference.teacher_text_features)

    # the zero-shot teacher stays plain CLIP when the adapters are active; a training step moves R
    _perturb_adapters(variant, std=0.2)
    variant.set_model_mode("train")
    with torch.no_grad():
        adapted = variant.model.image_features(images)
        plain = reference.model.image_features(images)
    assert (adapted - plain).abs().max() > 1e-3
    if base == "ProGrad":
        torch.testing.assert_close(variant.zero_shot_image_features(images, adapted), plain)
    batch = {"img": images, "label": torch.tensor([0, 1, 2, 3])}
    variant.batch_idx, variant.num_batches = 0, 10
    before = {k: v.detach().clone() for k, v in learner.adapters.R.items()}
    variant.forward_backward(batch)
    assert all(not torch.equal(before[k], v) for k, v in learner.adapters.R.items())


def test_dsra_base_must_be_known(eurosat_root, tiny_clip_path):
    with pytest.raises(ValueError, match="TRAINER.DSRA.BASE must be one of"):
        _trainer(eurosat_root, tiny_clip_path, "CoCoOp")


def test_merged_evaluation_runs_promptsrcs_operators_exactly(eurosat_root, tiny_clip_path):
    """Zero inference overhead: the profiler sees the same operators, the same number of times, in both models."""
    import collections

    from torch.profiler import ProfilerActivity, profile

    images = torch.randn(2, 3, 32, 32)
    counts = {}
    for name in ("DsRA", "PromptSRC"):
        trainer = _trainer(eurosat_root, tiny_clip_path, trainer=name)
        _perturb_adapters(trainer) if name == "DsRA" else None
        trainer.set_model_mode("eval")
        trainer.model_inference(images)  # text features cached, as after the first test batch
        with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.model_inference(images)
        counts[name] = collections.Counter({e.key: e.count for e in prof.key_averages()})
    assert counts["DsRA"] == counts["PromptSRC"] and sum(counts["DsRA"].values()) > 100


@pytest.mark.parametrize("share_modality, share_positions", [(True, True), (False, False)])
def test_adapter_gains_measure_how_far_each_adapter_moved(share_modality, share_positions, tiny_clip_path):
    from vlpeft.trainers.dsra import checkpoint_gains

    adapters = DualSharedAdapters(load_clip("tiny", tiny_clip_path), 4, "both", share_modality, share_positions)
    assert all(torch.count_nonzero(g) == 0 for g in adapters.gains().values())  # R = 0: every adapter is the identity
    with torch.no_grad():
        for m in adapters.M.values():  # orthonormal columns: the gain of layer l is max |r_l|
            m.copy_(torch.linalg.qr(torch.randn_like(m))[0])
        for r in adapters.R.values():
            r.copy_(torch.randn_like(r))
    gains = adapters.gains()
    assert sorted(gains) == ["text_attn", "text_mlp", "vision_attn", "vision_mlp"]
    for key, g in gains.items():
        r = adapters.R[adapters.r_key(*key.split("_"))]
        torch.testing.assert_close(g, r.abs().max(dim=1).values)
    # read back from a checkpoint's state dict (the learner's keys), whatever the sharing
    learner_state = {f"adapters.{k}": v for k, v in adapters.state_dict().items()}
    from_checkpoint = checkpoint_gains(learner_state)
    assert sorted(from_checkpoint) == sorted(gains)
    for key in gains:
        torch.testing.assert_close(from_checkpoint[key], gains[key])
    with pytest.raises(ValueError, match="not a DsRA checkpoint"):
        checkpoint_gains({"ctx": torch.zeros(4, 8)})


def test_trainer_logs_the_adapter_gains_before_the_final_test(eurosat_root, tiny_clip_path, capsys, tmp_path):
    trainer = _trainer(eurosat_root, tiny_clip_path, **{"TEST.NO_TEST": True, "OUTPUT_DIR": str(tmp_path)})
    trainer.time_start = 0
    _perturb_adapters(trainer, std=0.1)
    gains = trainer._models["prompt_learner"].adapters.gains()
    trainer.after_train()
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("DsRA adapter gain"))
    logged = {}
    for part in line.split(": ", 1)[1].split(";"):  # "text attn 0.0115 0.0041 ..."
        tower, position, *values = part.split()
        logged[f"{tower}_{position}"] = [float(v) for v in values]
    assert sorted(logged) == sorted(gains)
    for key, values in gains.items():
        assert logged[key] == pytest.approx(values.tolist(), abs=5e-5) and max(logged[key]) > 0
