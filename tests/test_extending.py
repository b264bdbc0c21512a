"""docs/EXTENDING.md's worked example (LoRACoOp) runs and behaves as a new method should.

The code blocks after a ``<!-- example: FILE -->`` marker are written to FILE under a temporary folder; the Python
module is imported (which registers the trainer and its config node), the yaml is the run's ``--config-file``. The
trainer is checked on the tiny random CLIP and a generated EuroSAT: parameter count from the shapes (and the guide's
ViT-B/16 count), step 0 equals CoOp, merged evaluation equals the unmerged model, the loss decreases on a fixed batch,
and ``train.py`` trains, writes ``results.json`` and reloads the checkpoint to the same accuracy. The trainer and its
config node are removed from the registries afterwards, so the rest of the suite never sees them.
"""
import ast
import importlib.util
import json
import os.path as osp
import re
import sys
from pathlib import Path

import pytest
import torch

from conftest import cfg_with, tiny_opts

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "EXTENDING.md"
MODULE, CONFIG = "lora_coop.py", "vit_b16_ep50_ctxv1.yaml"
TRAINER, NODE = "LoRACoOp", "LORACOOP"
BLOCK = re.compile(r"```(\w*)\n(.*?)\n```", re.S)
EXAMPLE = re.compile(r"<!-- example: (\S+) -->\s*\n```(\w+)\n(.*?)\n```", re.S)
CLASSNAMES = ["Annual_Crop Land", "Forest", "sea or lake"]


def guide_text():
    return GUIDE.read_text()


def example_files(text):
    """{file name: source} from the marked blocks, concatenated in the order of the guide."""
    files = {}
    for name, _, code in EXAMPLE.findall(text):
        files[name] = files.get(name, "") + code + "\n"
    return files


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The guide's example module, imported once for this file; unregistered at the end."""
    from vlpeft.config import TRAINER_CONFIGS
    from vlpeft.engine import TRAINER_REGISTRY

    import vlpeft.trainers  # noqa: F401  (the library's trainers first: a clash would be silent otherwise)

    assert TRAINER not in TRAINER_REGISTRY.registered_names(), f"{TRAINER} is taken: rename the guide's example"
    assert NODE not in TRAINER_CONFIGS, f"TRAINER.{NODE} is taken: rename the guide's example"
    files = example_files(guide_text())
    assert sorted(files) == sorted([MODULE, CONFIG])
    folder = tmp_path_factory.mktemp("guide_example")
    for name, code in files.items():
        (folder / name).write_text(code)
    module_name = "vlpeft_guide_example_lora_coop"
    spec = importlib.util.spec_from_file_location(module_name, folder / MODULE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
        assert TRAINER_REGISTRY.get(TRAINER) is getattr(module, TRAINER)
        yield module, str(folder / CONFIG)
    finally:
        sys.modules.pop(module_name, None)
        if TRAINER_REGISTRY._obj_map.get(TRAINER) is getattr(module, TRAINER, object()):
            del TRAINER_REGISTRY._obj_map[TRAINER]
        TRAINER_CONFIGS.pop(NODE, None)


def test_every_code_block_of_the_guide_parses():
    import yaml

    blocks = BLOCK.findall(guide_text())
    assert sum(lang == "python" for lang, _ in blocks) >= 3
    for lang, code in blocks:
        if lang == "python":
            ast.parse(code)
        elif lang == "yaml":
            yaml.safe_load(code)
    # the example is short enough to read in the guide
    assert len(example_files(guide_text())[MODULE].splitlines()) <= 100


def test_the_tests_the_guide_points_to_exist():
    tests = Path(__file__).resolve().parent
    pointers = re.findall(r"`(test_\w+\.py)::(test_\w+)`", guide_text())
    assert len(pointers) >= 5
    for file, name in pointers:
        assert f"def {name}(" in (tests / file).read_text(), f"{file}::{name} named in docs/EXTENDING.md"


# ---------------------------------------------------------------- trainers built directly (no training loop)

OPTS = {"DATASET.NAME": "EuroSAT", "DATASET.NUM_SHOTS": 2, "TRAINER.COOP.CTX_INIT": "a photo of a",
        "TRAINER.COOP.PREC": "fp32", f"TRAINER.{NODE}.PREC": "fp32", f"TRAINER.{NODE}.RANK": 2,
        f"TRAINER.{NODE}.LAST_N_BLOCKS": 1}


def build(trainer_name, eurosat_root, tiny_clip_path, tmp_path, **extra):
    from vlpeft.config import get_cfg
    from vlpeft.engine import build_trainer, set_random_seed

    opts = {**OPTS, "DATASET.ROOT": eurosat_root, "TRAINER.NAME": trainer_name, "OUTPUT_DIR": str(tmp_path),
            **extra}
    cfg = get_cfg()
    cfg.merge_from_list(tiny_opts(tiny_clip_path) + [x for kv in opts.items() for x in (kv[0], str(kv[1]))])
    set_random_seed(1)
    return build_trainer(cfg)


def n_expected(clip_model, n_ctx, rank, last_n, towers=("text", "vision"), targets=("q", "v")):
    """From the shapes: the context [n_ctx, text width] + per delta A [rank, d] and B [d, rank]."""
    widths = {"text": clip_model.ln_final.weight.shape[0], "vision": clip_model.visual.conv1.weight.shape[0]}
    return n_ctx * widths["text"] + sum(last_n * len(targets) * rank * 2 * widths[t] for t in towers)


def test_trainable_parameters_and_checkpoint_contents(example, eurosat_root, tiny_clip_path, tmp_path):
    trainer = build(TRAINER, eurosat_root, tiny_clip_path, tmp_path)
    learner = trainer._models["prompt_learner"]
    clip_model = trainer.model.surgery.model
    trainable = {n: p for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert sum(p.numel() for p in trainable.values()) == n_expected(clip_model, 4, 2, 1)
    assert all(p.dtype == torch.float32 for p in trainable.values())
    # only the learner trains, and its checkpoint holds exactly its trainable tensors
    assert set(trainable) == {f"prompt_learner.{n}" for n, _ in learner.named_parameters()}
    assert set(learner.state_dict()) == {n for n, _ in learner.named_parameters()}
    # LAST_N_BLOCKS 1 of the tiny model's 2 blocks: the deltas sit on block 1 only, q and v
    assert sorted(learner.lora) == ["text_1_q", "text_1_v", "vision_1_q", "vision_1_v"]
    assert sorted(learner.lora["text_1_q"].state_dict()) == ["A", "B"]
    # every LAST_N_BLOCKS out of range is refused with the key in the message
    with pytest.raises(ValueError, match="LAST_N_BLOCKS"):
        build(TRAINER, eurosat_root, tiny_clip_path, tmp_path, **{f"TRAINER.{NODE}.LAST_N_BLOCKS": 3})


def test_parameter_count_of_the_guide_vit_b16(example):
    """The count the guide states for its ViT-B/16 recipe (CTX_INIT "a photo of a", RANK 4, last 4 blocks)."""
    from vlpeft.clip.random_weights import build_random_clip
    from vlpeft.trainers.coop import PromptLearner

    module, _ = example
    clip_model = build_random_clip("ViT-B/16", seed=0)
    prompts = PromptLearner(cfg_with(**{"TRAINER.COOP.CTX_INIT": "a photo of a"}), CLASSNAMES, clip_model)
    learner = module.LoRALearner(prompts, clip_model, 4, 8.0, 4, ["text", "vision"], ["q", "v"])
    n = sum(p.numel() for p in learner.parameters())
    assert n == n_expected(clip_model, 4, 4, 4) == 83_968
    assert "83,968" in guide_text()


def test_step_zero_is_coop_and_merged_equals_unmerged(example, eurosat_root, tiny_clip_path, tmp_path):
    coop = build("CoOp", eurosat_root, tiny_clip_path, tmp_path / "coop")
    lora = build(TRAINER, eurosat_root, tiny_clip_path, tmp_path / "lora")
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    for mode in ("train", "eval"):  # B = 0: CoOp exactly, unmerged and merged
        coop.set_model_mode(mode)
        lora.set_model_mode(mode)
        with torch.no_grad():
            torch.testing.assert_close(lora.model_inference(images), coop.model_inference(images))

    # trained deltas (B != 0): evaluation runs on merged weights and gives the unmerged model's logits
    surgery = lora.model.surgery
    with torch.no_grad():
        for delta in lora.model.prompt_learner.lora.values():
            delta.B.normal_(std=0.3)
    in_proj = surgery.blocks["vision"][1].attn.base_layer.in_proj_weight
    original = in_proj.detach().clone()
    lora.set_model_mode("train")
    with torch.no_grad():
        unmerged = lora.model_inference(images)
        assert (unmerged - coop.model_inference(images)).abs().max() > 1e-3  # the deltas do change the model
    lora.set_model_mode("eval")
    assert surgery.merged and not torch.equal(in_proj, original)
    assert not any(attention.active for _, attention in surgery._attentions)  # merged: plain attention, CoOp's cost
    torch.testing.assert_close(lora.model_inference(images), unmerged, atol=1e-4, rtol=1e-4)
    lora.set_model_mode("train")
    assert not surgery.merged and torch.equal(in_proj, original)  # training runs on the saved weights, bit-exact


def test_loss_decreases_on_a_fixed_batch(example, eurosat_root, tiny_clip_path, tmp_path):
    trainer = build(TRAINER, eurosat_root, tiny_clip_path, tmp_path,
                    **{"OPTIM.LR": 0.05, "OPTIM.WARMUP_EPOCH": 0, "TRAINER.COOP.N_CTX": 4,
                       "TRAINER.COOP.CTX_INIT": ""})
    generator = torch.Generator().manual_seed(0)
    batch = {"img": torch.randn(8, 3, 32, 32, generator=generator), "label": torch.arange(8) % 5}
    deltas = trainer.model.prompt_learner.lora.values()
    assert all(torch.count_nonzero(d.B) == 0 for d in deltas)
    trainer.set_model_mode("train")
    trainer.batch_idx, trainer.num_batches = 0, 10 ** 9  # never step the schedule here
    summaries = [trainer.forward_backward(batch) for _ in range(20)]
    losses = [s["loss"] for s in summaries]
    assert losses[-1] < 0.7 * losses[0], losses
    assert all(torch.count_nonzero(d.B) > 0 for d in deltas)  # B leaves 0: every delta trains too
    expected_norm = sum(d.weight().square().sum() for d in deltas).sqrt().item()
    assert summaries[-1]["delta_norm"] == pytest.approx(expected_norm)  # logged after the step


# ---------------------------------------------------------------- train.py end to end with the guide's config file

def test_train_py_runs_the_guides_config(example, eurosat_root, tiny_clip_path, tmp_path):
    from vlpeft.cli import main

    _, config_file = example
    node = [f"TRAINER.{NODE}.PREC", "fp32", f"TRAINER.{NODE}.LAST_N_BLOCKS", 1, f"TRAINER.{NODE}.ALPHA", 4.0,
            "DATASET.NAME", "EuroSAT", "DATASET.NUM_SHOTS", 4, "DATASET.SUBSAMPLE_CLASSES", "base"]
    out = tmp_path / "train"

    def run(out_dir, *flags, **overrides):
        args = ["--root", eurosat_root, "--seed", 1, "--trainer", TRAINER, "--output-dir", out_dir,
                "--config-file", config_file, *flags, *tiny_opts(tiny_clip_path, **overrides), *node]
        return main([str(a) for a in args])

    acc = run(out, **{"OPTIM.MAX_EPOCH": 3, "OPTIM.LR": 0.02})["accuracy"]
    results = json.loads((out / "results.json").read_text())
    assert results["trainer"] == TRAINER and results["accuracy"] == pytest.approx(acc)
    config = (out / "config.yaml").read_text()
    assert "LORACOOP:" in config and "TARGETS:" in config  # the guide's node, with its keys from the yaml
    log = (out / "log.txt").read_text()
    assert "delta_norm" in log and "Finish training" in log
    running = [float(m) for m in re.findall(r"loss [\d.]+ \(([\d.]+)\)", log)]
    assert running[-1] < running[0]
    checkpoint = torch.load(out / "prompt_learner" / "model.pth.tar-3", weights_only=True)["state_dict"]
    assert sorted(checkpoint) == sorted(["prompts.ctx"] + [f"lora.{t}_1_{w}.{m}" for t in ("text", "vision")
                                                           for w in "qv" for m in "AB"])
    # --eval-only reloads prompts and deltas (merged again after the load): the same accuracy
    reloaded = run(tmp_path / "eval", "--eval-only", "--model-dir", out, "--load-epoch", 3)
    assert reloaded["accuracy"] == pytest.approx(acc)
    assert osp.isfile(tmp_path / "eval" / "results.json")
