"""Speed and memory: the switches change nothing but speed and memory, the fast paths are taken, the benchmark's
plumbing works (its numbers: ``python -m vlpeft.bench``)."""
import pytest
import torch
import torch.nn.functional as F
from conftest import cfg_with

from vlpeft.bench import build_bench_trainer
from vlpeft.clip import build_clip_from_state_dict
from vlpeft.clip.random_weights import tiny_openai_state_dict

DEEP = {"PROMPT_DEPTH_TEXT": 2, "PROMPT_DEPTH_VISION": 2}
TRAINERS = {
    "CoOp": {"TRAINER.COOP.N_CTX": 4},
    "IVLP": {f"TRAINER.IVLP.{k}": v for k, v in DEEP.items()},
    "MaPLe": {"TRAINER.MAPLE.PROMPT_DEPTH": 2},
    "DsRA": {**{f"TRAINER.DSRA.{k}": v for k, v in DEEP.items()}, "TRAINER.DSRA.RANK": 4},
    "DIP": {"TRAINER.DIP.PROMPT_DEPTH": 2, "TRAINER.DIP.DROPOUT": 0.5},  # dropout: recomputation must replay it
    "DPDLoRA": {"TRAINER.DPDLORA.PROMPT_DEPTH": 2},
}


def _tiny_clip(name, seed=0):
    return build_clip_from_state_dict(tiny_openai_state_dict(seed=seed))


def _gradients(trainer_name, overrides, text, vision):
    cfg = cfg_with(**{"TRAINER.NAME": trainer_name, "MODEL.BACKBONE.NAME": "tiny", "INPUT.SIZE": (32, 32),
                      "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002, "MODEL.ACTIVATION_CHECKPOINTING.TEXT": text,
                      "MODEL.ACTIVATION_CHECKPOINTING.VISION": vision, **overrides})
    torch.manual_seed(0)
    trainer = build_bench_trainer(cfg, [f"class {i}" for i in range(5)], clip_builder=_tiny_clip)
    trainer.set_model_mode("train")
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(2)
    loss = F.cross_entropy(trainer.model(images), torch.tensor([0, 3, 4]))
    loss.backward()
    learner = trainer._models["prompt_learner"]
    return loss.item(), {n: p.grad.clone() for n, p in learner.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_activation_checkpointing_leaves_the_gradients_unchanged(trainer):
    loss, plain = _gradients(trainer, TRAINERS[trainer], False, False)
    loss_ckpt, ckpt = _gradients(trainer, TRAINERS[trainer], True, True)
    assert loss_ckpt == pytest.approx(loss, rel=1e-6) and plain.keys() == ckpt.keys() and plain
    for name in plain:
        assert plain[name].abs().sum() > 0 or trainer in ("DsRA", "DPDLoRA")  # their zero-initialised factors
        torch.testing.assert_close(ckpt[name], plain[name], rtol=1e-5, atol=1e-7, msg=name)


def test_activation_checkpointing_recomputes_the_blocks():
    """Checkpointing is really on: each checkpointed block runs twice per training step (forward, then again in the
    backward pass)."""
    calls = []
    for text in (False, True):
        cfg = cfg_with(**{"TRAINER.NAME": "CoOp", "MODEL.BACKBONE.NAME": "tiny", "INPUT.SIZE": (32, 32),
                          "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002, "TRAINER.COOP.N_CTX": 4,
                          "MODEL.ACTIVATION_CHECKPOINTING.TEXT": text})
        trainer = build_bench_trainer(cfg, ["a", "b"], clip_builder=_tiny_clip)
        block = trainer.model.text_encoder.transformer.resblocks[0]
        count = []
        block.register_forward_pre_hook(lambda *a: count.append(1))
        F.cross_entropy(trainer.model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
        calls.append(len(count))
    assert calls == [1, 2]


def test_vision_checkpointing_on_a_resnet_backbone_is_refused():
    from vlpeft.trainers.base import set_activation_checkpointing

    resnet = build_clip_from_state_dict(tiny_openai_state_dict(vision_layers=(1, 1, 1, 1)))
    switches = {"TEXT": True, "VISION": True}
    with pytest.raises(ValueError, match="ACTIVATION_CHECKPOINTING.VISION.*ResNet"):
        set_activation_checkpointing(resnet, switches)


def test_every_registered_trainer_has_a_benchmark_config():
    import os.path as osp

    import vlpeft.trainers  # noqa: F401
    from vlpeft.bench import bench_config_file
    from vlpeft.engine import TRAINER_REGISTRY

    for name in TRAINER_REGISTRY.registered_names():
        assert osp.isfile(bench_config_file(name)), name


def test_bench_all_writes_one_row_per_job_and_respects_the_budget(tmp_path, capsys):
    import json

    from vlpeft.bench import main

    out = tmp_path / "bench"
    main(["--all", "--trainers", "CoOp", "ZeroshotCLIP", "DsRA", "--tiny", "--iters", "1", "--warmup", "1",
          "--batch-size", "2", "--test-batch-size", "4", "--classes", "3", "--prec", "fp32", "fp16",
          "--out", str(out)])
    report = json.loads((out / "bench.json").read_text())
    rows = {r["trainer"]: r for r in report["results"]}
    assert sorted(rows) == ["CoOp", "DsRA", "ZeroshotCLIP"] and not any("error" in r for r in rows.values())
    assert rows["CoOp"]["trainable"] == 4 * 64 and rows["ZeroshotCLIP"]["trainable"] == 0
    assert "train_img_s" not in rows["ZeroshotCLIP"] and rows["DsRA"]["merged"] is True
    for r in (rows["CoOp"], rows["DsRA"]):
        assert r["train_step_mib"] > 0 and r["train_ratio"] > 0 and r["eval_ratio"] > 0 and r["test_batch"] == 4
    assert "half precision (fp16 / bf16 / amp): needs a GPU" in report["skipped"] or torch.cuda.is_available()
    assert "| CoOp" in (out / "bench.md").read_text()
    # a budget that is already spent measures nothing and lists every job as not measured
    main(["--all", "--trainers", "CoOp", "IVLP", "--tiny", "--budget", "0", "--out", str(tmp_path / "none")])
    report = json.loads((tmp_path / "none" / "bench.json").read_text())
    assert report["results"] == [] and report["skipped"][:2] == ["CoOp fp32 100 classes", "IVLP fp32 100 classes"]


@pytest.mark.parametrize("trainer", ["CoOp", "IVLP", "MaPLe", "DsRA"])
def test_training_steps_run_no_batched_matmul_against_expanded_weights(trainer):
    """The towers run in OpenAI's [L, N, D] layout, so every linear map of a block is one (add)mm; on open_clip's
    batch-first layout the attention's in-projection on a transposed view becomes ``aten::bmm`` (3x slower)."""
    from torch.profiler import ProfilerActivity, profile

    cfg = cfg_with(**{"TRAINER.NAME": trainer, "MODEL.BACKBONE.NAME": "tiny", "INPUT.SIZE": (32, 32),
                      "OPTIM.NAME": "sgd", "OPTIM.LR": 0.002, **TRAINERS[trainer]})
    model = build_bench_trainer(cfg, ["a", "b", "c"], clip_builder=_tiny_clip).model.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        F.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 2])).backward()
    ops = {e.key: e.count for e in prof.key_averages()}
    assert ops.get("aten::addmm", 0) + ops.get("aten::mm", 0) > 0 and ops.get("aten::bmm", 0) == 0


def _registered_trainers():
    import vlpeft.trainers  # noqa: F401
    from vlpeft.engine import TRAINER_REGISTRY

    return sorted(TRAINER_REGISTRY.registered_names())


@pytest.mark.parametrize("trainer", [t for t in _registered_trainers() if t != "CoCoOp"])
def test_evaluation_encodes_the_class_prompts_once(trainer):
    """Every trainer whose text side does not depend on the image (all but CoCoOp) encodes the class prompts once per
    class set at evaluation, not once per test batch as the official code does."""
    from vlpeft.bench import bench_cfg, tiny_clip

    built = []

    def keep(name, seed=0):
        built.append(tiny_clip(name, seed))
        return built[-1]

    model_trainer = build_bench_trainer(bench_cfg(trainer, tiny=True), ["a", "b", "c"], clip_builder=keep)
    calls = []
    built[0].transformer.register_forward_pre_hook(lambda *a: calls.append(1))  # the frozen text tower
    model_trainer.set_model_mode("eval")
    with torch.no_grad():
        for _ in range(3):
            model_trainer.model_inference(torch.randn(2, 3, 32, 32))
    assert len(calls) <= 1
