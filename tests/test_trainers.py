"""Trainers of the foundation: parameter counts, exact logits against an independent reference, train.py end to end
(train, checkpoint, --eval-only reload), resume, and the clear errors on bad input."""
import json
import math
import os
import os.path as osp
import re

import pytest
import torch

import reference_clip as ref
from conftest import cfg_with, tiny_opts
from vlpeft.cli import main
from vlpeft.clip import load_state_dict_any
from vlpeft.clip.random_weights import build_random_clip
from vlpeft.config import get_cfg


_cfg = cfg_with


@pytest.fixture(scope="module")
def vit_b16():
    return build_random_clip("ViT-B/16", seed=0)


@pytest.mark.parametrize("overrides, expected", [
    ({"TRAINER.COOP.N_CTX": 16}, 8_192),
    ({"TRAINER.COOP.CTX_INIT": "a photo of a"}, 2_048),
    ({"TRAINER.COOP.N_CTX": 4}, 2_048),
    ({"TRAINER.COOP.N_CTX": 16, "TRAINER.COOP.CSC": True}, 16 * 512 * 5),
])
def test_coop_parameter_counts_vit_b16(vit_b16, overrides, expected):
    from vlpeft.trainers.coop import PromptLearner

    learner = PromptLearner(_cfg(**overrides), [f"class {i}" for i in range(5)], vit_b16)
    assert sum(p.numel() for p in learner.parameters() if p.requires_grad) == expected
    assert list(learner.state_dict()) == ["ctx"]  # checkpoints hold only the trainable tensor


def test_cocoop_parameter_count_vit_b16(vit_b16):
    from vlpeft.trainers.cocoop import PromptLearner

    learner = PromptLearner(_cfg(**{"TRAINER.COCOOP.N_CTX": 4, "TRAINER.COCOOP.CTX_INIT": "a photo of a"}),
                            ["dog", "cat"], vit_b16)
    assert sum(p.numel() for p in learner.parameters()) == 35_360
    assert learner.ctx.dtype == torch.float32


@pytest.fixture(scope="module")
def tiny(tiny_clip_path):
    from vlpeft.clip import load_clip

    return load_clip("tiny", tiny_clip_path), {k: v.double() if v.is_floating_point() else v
                                               for k, v in load_state_dict_any(tiny_clip_path).items()}


CLASSNAMES = ["Annual_Crop Land", "Forest", "sea or lake"]


def _reference_prompts(sd, classnames, ctx, prefix_words, position="end"):
    """Prompt embeddings built by hand: SOS, context vectors, class-name tokens, '.', EOT."""
    from vlpeft.clip import token_count, tokenize

    tokens = tokenize([f"{prefix_words} {c.replace('_', ' ')}." for c in classnames])
    emb = sd["token_embedding.weight"][tokens].clone()
    n_ctx = ctx.shape[-2]
    for i, c in enumerate(classnames):
        ctx_i = ctx if ctx.dim() == 2 else ctx[i]
        if position == "end":
            emb[i, 1:1 + n_ctx] = ctx_i.double()
        else:  # "front": class tokens right after SOS, then the context
            n_name = token_count(c.replace("_", " "))
            name = emb[i, 1 + n_ctx:1 + n_ctx + n_name].clone()
            emb[i, 1:1 + n_name] = name
            emb[i, 1 + n_name:1 + n_name + n_ctx] = ctx_i.double()
    return emb, tokens


@pytest.mark.parametrize("overrides, position", [
    ({"TRAINER.COOP.N_CTX": 4}, "end"),
    ({"TRAINER.COOP.CTX_INIT": "a photo of a"}, "end"),
    ({"TRAINER.COOP.N_CTX": 3, "TRAINER.COOP.CSC": True, "TRAINER.COOP.CLASS_TOKEN_POSITION": "front"}, "front"),
])
def test_coop_logits_equal_reference(tiny, overrides, position):
    from vlpeft.trainers.coop import CustomCLIP

    clip_model, sd = tiny
    torch.manual_seed(0)
    model = CustomCLIP(_cfg(**overrides), CLASSNAMES, clip_model).eval()
    with torch.no_grad():
        model.prompt_learner.ctx.normal_(std=0.05)
    images = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
    prefix = overrides.get("TRAINER.COOP.CTX_INIT") or " ".join(["X"] * model.prompt_learner.n_ctx)
    emb, tokens = _reference_prompts(sd, CLASSNAMES, model.prompt_learner.ctx.detach(), prefix, position)
    txt = ref.encode_text_embeddings(sd, emb, tokens)
    img = ref.encode_image(sd, images.double())
    expected = sd["logit_scale"].exp() * (img / img.norm(dim=-1, keepdim=True)) @ (
        txt / txt.norm(dim=-1, keepdim=True)).t()
    torch.testing.assert_close(logits.double(), expected, atol=1e-4, rtol=1e-5)


def test_coop_middle_position_layout(tiny):
    from vlpeft.trainers.coop import CustomCLIP
    from vlpeft.clip import token_count

    clip_model, _ = tiny
    model = CustomCLIP(_cfg(**{"TRAINER.COOP.N_CTX": 4, "TRAINER.COOP.CLASS_TOKEN_POSITION": "middle"}),
                       CLASSNAMES, clip_model)
    prompts = model.prompt_learner()
    ctx = model.prompt_learner.ctx
    for i, name in enumerate(CLASSNAMES):
        n = token_count(name.replace("_", " "))
        assert torch.equal(prompts[i, 1:3], ctx[:2])
        assert torch.equal(prompts[i, 3 + n:5 + n], ctx[2:])
        assert torch.equal(prompts[i, 3:3 + n], model.prompt_learner.classes.token_suffix[i, :n])


def test_cocoop_logits_equal_reference(tiny):
    from vlpeft.trainers.cocoop import CustomCLIP

    clip_model, sd = tiny
    torch.manual_seed(0)
    cfg = _cfg(**{"TRAINER.COCOOP.N_CTX": 4, "TRAINER.COCOOP.CTX_INIT": "a photo of a"})
    model = CustomCLIP(cfg, CLASSNAMES, clip_model).eval()
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        logits = model(images)
    img = ref.encode_image(sd, images.double())
    img = img / img.norm(dim=-1, keepdim=True)
    meta = model.prompt_learner.meta_net.double()
    rows = []
    for b in range(images.shape[0]):
        ctx = model.prompt_learner.ctx.detach().double() + meta(img[b:b + 1])[0].detach()
        emb, tokens = _reference_prompts(sd, CLASSNAMES, ctx, "a photo of a")
        txt = ref.encode_text_embeddings(sd, emb, tokens)
        rows.append(sd["logit_scale"].exp() * img[b] @ (txt / txt.norm(dim=-1, keepdim=True)).t())
    torch.testing.assert_close(logits.double(), torch.stack(rows), atol=1e-4, rtol=1e-5)


def test_text_features_are_computed_once_per_evaluation(tiny):
    from vlpeft.trainers.coop import CustomCLIP

    clip_model, _ = tiny
    model = CustomCLIP(_cfg(**{"TRAINER.COOP.N_CTX": 4}), CLASSNAMES, clip_model).eval()
    calls = []
    forward = model.text_encoder.forward
    model.text_encoder.forward = lambda *a: calls.append(1) or forward(*a)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        first = model(images)
        model(images)
    assert len(calls) == 1
    with torch.no_grad():
        model.prompt_learner.ctx.add_(torch.randn_like(model.prompt_learner.ctx))  # an optimizer step / load_state_dict changes the version counter
        second = model(images)
    assert len(calls) == 2 and not torch.allclose(first, second)
    model(images)  # with autograd enabled (training) it is never cached
    assert len(calls) == 3


# ---------------------------------------------------------------- train.py end to end

def _run(args):
    return main([str(a) for a in args])


def _train_args(trainer, root, out, clip_path, config_node_opts=(), **overrides):
    return ["--root", root, "--seed", 1, "--trainer", trainer, "--output-dir", out,
            "--dataset-config-file", "configs/datasets/eurosat.yaml",
            *tiny_opts(clip_path, **overrides), "DATASET.NUM_SHOTS", 4, *config_node_opts]


TRAINERS = {
    "CoOp": ("prompt_learner", ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32"]),
    "CoCoOp": ("prompt_learner", ["TRAINER.COCOOP.N_CTX", 4, "TRAINER.COCOOP.PREC", "fp32",
                                  "TRAINER.COCOOP.CTX_INIT", "a photo of a"]),
    "IVLP": ("prompt_learner", ["TRAINER.IVLP.N_CTX_TEXT", 4, "TRAINER.IVLP.N_CTX_VISION", 4, "TRAINER.IVLP.PREC",
                                "fp32", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2]),
    "MaPLe": ("prompt_learner", ["TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", 2]),
    "PromptSRC": ("prompt_learner", ["TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2,
                                     "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTSRC.GPA_MEAN", 2]),
    "DsRA": ("prompt_learner", ["TRAINER.DSRA.PREC", "fp32", "TRAINER.DSRA.PROMPT_DEPTH_TEXT", 2,
                                "TRAINER.DSRA.PROMPT_DEPTH_VISION", 2, "TRAINER.DSRA.GPA_MEAN", 2, "TRAINER.DSRA.RANK", 4]),
    "KgCoOp": ("prompt_learner", ["TRAINER.COOP.CTX_INIT", "a photo of a", "TRAINER.COOP.PREC", "fp32"]),
    "DIP": ("prompt_learner", ["TRAINER.DIP.PREC", "fp32", "TRAINER.DIP.PROMPT_DEPTH", 2]),
    "DIPMaPLe": ("prompt_learner", ["TRAINER.DIPMAPLE.PREC", "fp32", "TRAINER.DIPMAPLE.PROMPT_DEPTH", 2,
                                    "TRAINER.DIPMAPLE.PROJ_RANK", 8]),
    "ProGrad": ("prompt_learner", ["TRAINER.COOP.N_CTX", 6, "TRAINER.COOP.CTX_INIT", "template", "TRAINER.COOP.PREC",
                                   "fp32"]),
    "DPDLoRA": ("prompt_learner", ["TRAINER.DPDLORA.PREC", "fp32", "TRAINER.DPDLORA.PROMPT_DEPTH", 2,
                                   "TRAINER.DPDLORA.EARLY_STOP", 1]),
}


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_train_checkpoint_and_eval_only_reload(trainer, eurosat_root, tiny_clip_path, tmp_path):
    learner, node_opts = TRAINERS[trainer]
    out = str(tmp_path / "train")
    acc = _run(_train_args(trainer, eurosat_root, out, tiny_clip_path, node_opts,
                           **{"DATASET.SUBSAMPLE_CLASSES": "base"}))["accuracy"]
    assert sorted(os.listdir(osp.join(out, learner))) == ["checkpoint", "model.pth.tar-2"]
    ckpt = torch.load(osp.join(out, learner, "model.pth.tar-2"), weights_only=True)
    assert ckpt["epoch"] == 2 and "optimizer" in ckpt and "scheduler" in ckpt
    log = open(osp.join(out, "log.txt")).read()
    assert "Finish training" in log and "Deploy the last-epoch model" in log
    assert re.search(r"epoch \[2/2\] batch \[\d+/\d+\] time .* lr .* eta", log)
    assert re.findall(r"\* accuracy: ([\.\deE+-]+)%", log)[-1] == f"{acc:.1f}"
    assert "# params:" in log.split("epoch [1/2]")[0]
    for name in ("config.yaml", "env.txt", "results.json"):
        assert osp.isfile(osp.join(out, name))
    results = json.load(open(osp.join(out, "results.json")))
    assert results["accuracy"] == pytest.approx(acc) and results["subsample_classes"] == "base"

    # --eval-only reload gives the same accuracy on the same classes
    out_eval = str(tmp_path / "eval")
    args = _train_args(trainer, eurosat_root, out_eval, tiny_clip_path, node_opts,
                       **{"DATASET.SUBSAMPLE_CLASSES": "base"})
    reloaded = _run(args[:6] + ["--eval-only", "--model-dir", out, "--load-epoch", "2"] + args[6:])
    assert reloaded["accuracy"] == pytest.approx(acc)
    # ... and base-trained prompts load for the new classes
    out_new = str(tmp_path / "new")
    args = _train_args(trainer, eurosat_root, out_new, tiny_clip_path, node_opts,
                       **{"DATASET.SUBSAMPLE_CLASSES": "new"})
    new = _run(args[:6] + ["--eval-only", "--model-dir", out, "--load-epoch", "2"] + args[6:])
    assert 0.0 <= new["accuracy"] <= 100.0
    assert "Loading weights to" in open(osp.join(out_new, "log.txt")).read()


def test_training_is_deterministic_and_learns(eurosat_root, tiny_clip_path, tmp_path):
    opts = ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.CSC", "True", "TRAINER.COOP.PREC", "fp32"]
    runs = [_run(_train_args("CoOp", eurosat_root, str(tmp_path / f"r{i}"), tiny_clip_path, opts,
                             **{"OPTIM.MAX_EPOCH": 10, "OPTIM.LR": 0.002})) for i in range(2)]
    assert runs[0] == runs[1]
    losses = [float(m) for m in re.findall(r"loss [\d.]+ \(([\d.]+)\)",
                                           open(tmp_path / "r0" / "log.txt").read())]
    assert losses[-1] < losses[0]  # the running-average loss decreases on this learnable toy problem


@pytest.mark.parametrize("trainer", ["ZeroshotCLIP", "ZeroshotCLIP2"])
def test_zeroshot_clip(trainer, eurosat_root, tiny_clip_path, tmp_path, tiny):
    out = str(tmp_path / trainer)
    res = _run(["--root", eurosat_root, "--trainer", trainer, "--output-dir", out, "--eval-only",
                "--dataset-config-file", "configs/datasets/eurosat.yaml", *tiny_opts(tiny_clip_path)])
    # the same number by hand: the reference CLIP on the dataset's test images with the template(s)
    from PIL import Image

    from vlpeft.clip import tokenize
    from vlpeft.config import get_cfg
    from vlpeft.engine import build_dataset, build_transform
    from vlpeft.trainers.templates import CUSTOM_TEMPLATES, IMAGENET_TEMPLATES_SELECT

    _, sd = tiny
    cfg = get_cfg()
    cfg.merge_from_list(["DATASET.NAME", "EuroSAT", "DATASET.ROOT", eurosat_root, *tiny_opts(tiny_clip_path)])
    dataset = build_dataset(cfg)
    tfm = build_transform(cfg, is_train=False)
    images = torch.stack([tfm(Image.open(d.impath).convert("RGB")) for d in dataset.test]).double()
    labels = torch.tensor([d.label for d in dataset.test])
    templates = [CUSTOM_TEMPLATES["EuroSAT"]]
    if trainer == "ZeroshotCLIP2":
        templates = IMAGENET_TEMPLATES_SELECT + templates
    feats = []
    for t in templates:
        f = ref.encode_text(sd, tokenize([t.format(c) for c in dataset.classnames]))
        feats.append(f / f.norm(dim=-1, keepdim=True))
    txt = torch.stack(feats).mean(0)
    txt = txt / txt.norm(dim=-1, keepdim=True)
    img = ref.encode_image(sd, images)
    pred = (img / img.norm(dim=-1, keepdim=True) @ txt.t()).argmax(-1)
    assert res["accuracy"] == pytest.approx(100.0 * (pred == labels).float().mean().item())


def test_resume_skips_training_and_refuses_another_config(eurosat_root, tiny_clip_path, tmp_path, capsys):
    out = str(tmp_path / "run")
    opts = ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32"]
    first = _run(_train_args("CoOp", eurosat_root, out, tiny_clip_path, opts))
    again = _run(_train_args("CoOp", eurosat_root, out, tiny_clip_path, opts))
    assert again == first
    log = open(osp.join(out, "log.txt")).read()
    assert "Found checkpoint" in log and log.count("epoch [1/2] batch [1/") == 1 and "new run appended" in log
    with pytest.raises(RuntimeError, match="different config"):
        _run(_train_args("CoOp", eurosat_root, out, tiny_clip_path, opts, **{"OPTIM.LR": 0.1}))


def test_nan_loss_raises_and_writes_no_results(eurosat_root, tiny_clip_path, tmp_path, monkeypatch):
    from vlpeft.trainers import coop

    monkeypatch.setattr(coop.CustomCLIP, "forward",
                        lambda self, image: self.prompt_learner.ctx.sum() * float("nan") * torch.ones(len(image), 10))
    out = tmp_path / "nan"
    with pytest.raises(FloatingPointError, match="NaN"):
        _run(_train_args("CoOp", eurosat_root, str(out), tiny_clip_path, ["TRAINER.COOP.PREC", "fp32"]))
    assert not (out / "results.json").exists() and not (out / "prompt_learner").exists()


def test_bad_inputs_give_actionable_errors(eurosat_root, tiny_clip_path, tmp_path, capsys):
    base = ["--root", eurosat_root, "--output-dir", str(tmp_path / "x"),
            "--dataset-config-file", "configs/datasets/eurosat.yaml"]
    with pytest.raises(ValueError, match=r"Unknown trainer \"CoOpp\". Did you mean \"CoOp\"\?.*CoCoOp"):
        _run(base + ["--trainer", "CoOpp"])
    with pytest.raises(ValueError, match=r"Unknown config key \"TRAINER.COOP.NCTX\".*TRAINER.COOP.N_CTX"):
        _run(base + ["--trainer", "CoOp", "TRAINER.COOP.NCTX", "4"])
    with pytest.raises(ValueError, match="Invalid config"):
        _run(base + ["--trainer", "CoOp", "TRAINER.COOP.N_CTX", "4.5"])
    with pytest.raises(FileNotFoundError, match="(?i)config file not found"):
        _run(base + ["--trainer", "CoOp", "--config-file", "configs/trainers/CoOp/nope.yaml"])
    from vlpeft.clip import CLIPWeightsNotFoundError

    with pytest.raises(CLIPWeightsNotFoundError, match="missing.pt"):
        _run(base + ["--trainer", "CoOp", *tiny_opts(str(tmp_path / "missing.pt"))])
    with pytest.raises(ValueError, match="PREC"):
        _run(base + ["--trainer", "CoOp", *tiny_opts(tiny_clip_path), "TRAINER.COOP.PREC", "fp8"])
    with pytest.raises(FileNotFoundError, match=r"docs/DATASETS.md"):
        _run(["--root", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "y"), "--trainer", "CoOp",
              "--dataset-config-file", "configs/datasets/eurosat.yaml", *tiny_opts(tiny_clip_path)])


def test_half_precision_falls_back_to_fp32_on_cpu(eurosat_root, tiny_clip_path, tmp_path):
    out = tmp_path / "fp16"
    _run(_train_args("CoOp", eurosat_root, str(out), tiny_clip_path, ["TRAINER.COOP.PREC", "fp16"],
                     **{"OPTIM.MAX_EPOCH": 1}))
    assert "Warning: PREC fp16 needs a GPU" in (out / "log.txt").read_text()


def test_help_lists_registered_trainers(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in ("CoOp", "CoCoOp", "ZeroshotCLIP", "ZeroshotCLIP2"):
        assert name in out


def test_best_val_deploys_the_best_checkpoint(eurosat_root, tiny_clip_path, tmp_path):
    out = tmp_path / "best"
    res = _run(_train_args("CoOp", eurosat_root, str(out), tiny_clip_path, ["TRAINER.COOP.PREC", "fp32"],
                           **{"TEST.FINAL_MODEL": "best_val", "OPTIM.MAX_EPOCH": 3}))
    assert sorted(os.listdir(out / "prompt_learner")) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]
    log = (out / "log.txt").read_text()
    assert log.count("Evaluate on the *val* set") == 3 and "Deploy the model with the best val performance" in log
    best = torch.load(out / "prompt_learner" / "model-best.pth.tar", weights_only=True)
    val_accs = [float(a) for a in re.findall(r"\* accuracy: ([\d.]+)%", log)[:3]]
    assert best["val_result"] == pytest.approx(max(val_accs), abs=0.05)
    assert 0 <= res["accuracy"] <= 100


def test_benchmark_reports_numbers_against_plain_clip():
    from vlpeft.bench import run
    from vlpeft.clip import build_clip_from_state_dict
    from vlpeft.clip.random_weights import tiny_openai_state_dict

    cfg = _cfg(**{"TRAINER.NAME": "CoOp", "MODEL.BACKBONE.NAME": "tiny", "TRAINER.COOP.PREC": "fp32",
                  "INPUT.SIZE": (32, 32), "DATALOADER.TRAIN_X.BATCH_SIZE": 4, "DATALOADER.TEST.BATCH_SIZE": 4,
                  "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002})
    numbers = run(cfg, n_classes=3, iters=2, warmup=1,
                  clip_builder=lambda name, seed: build_clip_from_state_dict(tiny_openai_state_dict(seed=seed)))
    assert numbers["trainable"] == 16 * 64  # CoOp's default 16 context vectors of the tiny text width
    assert all(math.isfinite(numbers[k]) and numbers[k] > 0 for k in ("train_ratio", "eval_ratio"))


def test_benchmark_times_merged_evaluation_against_another_trainer():
    from vlpeft.bench import run
    from vlpeft.clip import build_clip_from_state_dict
    from vlpeft.clip.random_weights import tiny_openai_state_dict

    common = {"MODEL.BACKBONE.NAME": "tiny", "INPUT.SIZE": (32, 32), "DATALOADER.TRAIN_X.BATCH_SIZE": 2,
              "DATALOADER.TEST.BATCH_SIZE": 2, "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002}
    deep = {"PREC": "fp32", "PROMPT_DEPTH_TEXT": 2, "PROMPT_DEPTH_VISION": 2}
    dsra = _cfg(**common, **{"TRAINER.NAME": "DsRA", "TRAINER.DSRA.RANK": 4},
                **{f"TRAINER.DSRA.{k}": v for k, v in deep.items()})
    promptsrc = _cfg(**common, **{"TRAINER.NAME": "PromptSRC"}, **{f"TRAINER.PROMPTSRC.{k}": v for k, v in deep.items()})
    numbers = run(dsra, n_classes=3, iters=1, warmup=1, against=promptsrc, rounds=2,
                  clip_builder=lambda name, seed: build_clip_from_state_dict(tiny_openai_state_dict(seed=seed)))
    assert numbers["merged"] and math.isfinite(numbers["eval_vs_against"]) and numbers["eval_vs_against"] > 0
    # PromptSRC's prompts (text 4 + 4, vision 4 + 4 tokens of width 64) + rank-4 adapters: 4 M [64, 4], R [2, 4]
    assert numbers["trainable"] == 16 * 64 + 4 * 64 * 4 + 2 * 4
