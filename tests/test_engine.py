"""The Dassl-compatible engine: schedules, evaluator lines, registries, checkpoints, config errors."""
import io
import os
import re
from contextlib import redirect_stdout

import pytest
import torch
from yacs.config import CfgNode as CN

from vlpeft.engine import get_cfg_default
from vlpeft.engine.checkpoint import load_checkpoint, resume_from_checkpoint, save_checkpoint
from vlpeft.engine.data import Datum, DatasetBase
from vlpeft.engine.evaluator import Classification, macro_f1_score
from vlpeft.engine.optim import build_lr_scheduler, build_optimizer
from vlpeft.engine.registry import Registry
from vlpeft.engine.utils import setup_logger


def _optim_cfg(**kw):
    cfg = get_cfg_default().OPTIM
    cfg.defrost()
    cfg.NAME, cfg.LR, cfg.MAX_EPOCH, cfg.LR_SCHEDULER = "sgd", 0.002, 5, "cosine"
    cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE, cfg.WARMUP_CONS_LR = 1, "constant", 1e-5
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def _epoch_lrs(cfg, n=None):
    p = torch.nn.Parameter(torch.zeros(2))
    optim = build_optimizer([p], cfg)
    sched = build_lr_scheduler(optim, cfg)
    lrs = []
    for _ in range(n or cfg.MAX_EPOCH):
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return lrs, optim, sched


def test_constant_warmup_cosine_matches_dassl_measured_lrs():
    lrs, _, _ = _epoch_lrs(_optim_cfg())
    assert lrs == pytest.approx([1e-5, 2e-3, 1.809017e-3, 1.309017e-3, 6.909830e-4], rel=1e-5)


def test_linear_warmup_and_step_schedules():
    lrs, _, _ = _epoch_lrs(_optim_cfg(WARMUP_EPOCH=2, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-4, MAX_EPOCH=4))
    assert lrs[:2] == pytest.approx([1e-4, 0.001])
    assert lrs[2] == pytest.approx(0.002)
    lrs, _, _ = _epoch_lrs(_optim_cfg(LR_SCHEDULER="single_step", STEPSIZE=(2,), GAMMA=0.1, WARMUP_EPOCH=-1))
    assert lrs == pytest.approx([0.002, 0.002, 0.0002, 0.0002, 0.00002])


def test_scheduler_state_round_trips_with_weights_only(tmp_path):
    cfg = _optim_cfg()
    _, optim, sched = _epoch_lrs(cfg, n=3)
    path = tmp_path / "s.pt"
    torch.save({"scheduler": sched.state_dict(), "optimizer": optim.state_dict()}, path)
    state = torch.load(path, weights_only=True)
    p = torch.nn.Parameter(torch.zeros(2))
    optim2 = build_optimizer([p], cfg)
    sched2 = build_lr_scheduler(optim2, cfg)
    optim2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    for _ in range(2):
        optim.step(), sched.step(), optim2.step(), sched2.step()
        assert optim2.param_groups[0]["lr"] == pytest.approx(optim.param_groups[0]["lr"])


def test_unknown_optimizer_and_scheduler_are_rejected():
    with pytest.raises(ValueError, match="OPTIM.NAME"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], _optim_cfg(NAME="lion"))
    with pytest.raises(ValueError, match="LR_SCHEDULER"):
        _epoch_lrs(_optim_cfg(LR_SCHEDULER="poly"))


def test_evaluator_prints_dassl_block_and_macro_f1():
    cfg = get_cfg_default()
    evaluator = Classification(cfg, lab2cname={0: "a", 1: "b", 2: "c"})
    gt = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 0, 2])
    evaluator.process(torch.nn.functional.one_hot(pred, 3).float(), gt)
    out = io.StringIO()
    with redirect_stdout(out):
        results = evaluator.evaluate()
    # per-class F1 by hand: c0 P=1/2 R=1/2 -> 0.5; c1 P=2/3 R=1 -> 0.8; c2 P=1 R=3/4 -> 6/7
    expected_f1 = 100 * (0.5 + 0.8 + 6 / 7) / 3
    assert results["accuracy"] == pytest.approx(75.0)
    assert results["macro_f1"] == pytest.approx(expected_f1)
    assert out.getvalue().splitlines() == [
        "=> result", "* total: 8", "* correct: 6", "* accuracy: 75.0%", "* error: 25.0%",
        f"* macro_f1: {expected_f1:.1f}%"]
    # the regex of the community's parse_test_res.py
    assert re.search(r"\* accuracy: ([\.\deE+-]+)%", out.getvalue()).group(1) == "75.0"


def test_macro_f1_uses_labels_present_in_ground_truth_only():
    # a predicted label absent from y_true does not add a class (sklearn labels=np.unique(y_true))
    assert macro_f1_score([0, 0], [0, 5]) == pytest.approx(2 / 3)


def test_registry_keeps_first_on_duplicate_and_says_so():
    reg = Registry("TRAINER")

    class CoOp:  # noqa: D401 - stands for a host repository's class
        pass

    first = CoOp
    reg.register(first)

    class CoOp:  # noqa: F811
        pass

    out = io.StringIO()
    with redirect_stdout(out):
        reg.register(CoOp)
    assert reg.get("CoOp") is first
    assert "already registered" in out.getvalue()
    with pytest.raises(KeyError):
        reg.get("Nope")


def test_checkpoint_layout_is_dassls_and_atomic(tmp_path):
    model = torch.nn.Linear(3, 2)
    save_checkpoint({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}, "epoch": 3,
                     "optimizer": None, "scheduler": None, "val_result": None}, str(tmp_path / "prompt_learner"))
    files = sorted(os.listdir(tmp_path / "prompt_learner"))
    assert files == ["checkpoint", "model.pth.tar-3"]  # no temporary file left behind
    assert (tmp_path / "prompt_learner" / "checkpoint").read_text() == "model.pth.tar-3\n"
    ckpt = load_checkpoint(str(tmp_path / "prompt_learner" / "model.pth.tar-3"))
    assert set(ckpt["state_dict"]) == {"weight", "bias"}  # "module." stripped
    other = torch.nn.Linear(3, 2)
    assert resume_from_checkpoint(str(tmp_path / "prompt_learner"), other) == 3
    assert torch.equal(other.weight, model.weight)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(str(tmp_path / "missing.pth.tar"))


def test_datum_requires_an_existing_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Datum(str(tmp_path / "nope.jpg"), 0)


def test_fewshot_sampling_is_dasslss_random_calls(tmp_path):
    import random

    paths = []
    for i in range(12):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(b"x")
        paths.append(str(p))
    items = [Datum(p, label=i % 3, classname=f"c{i % 3}") for i, p in enumerate(paths)]
    random.seed(7)
    ours = DatasetBase(train_x=items).generate_fewshot_dataset(items, num_shots=2)
    random.seed(7)
    groups = {}
    for it in items:
        groups.setdefault(it.label, []).append(it)
    expected = [x for label in groups for x in random.sample(groups[label], 2)]
    assert [d.impath for d in ours] == [d.impath for d in expected]


def test_logger_appends_instead_of_renaming(tmp_path, capsys):
    import sys

    original = sys.stdout
    try:
        setup_logger(str(tmp_path))
        print("first run")
        setup_logger(str(tmp_path))
        print("second run")
    finally:
        sys.stdout.close()
        sys.stdout = original
    assert os.listdir(tmp_path) == ["log.txt"]
    text = (tmp_path / "log.txt").read_text()
    assert text.index("first run") < text.index("new run appended") < text.index("second run")


def test_atomic_writes_get_normal_permissions(tmp_path):
    from vlpeft.engine.utils import atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(str(tmp_path / "f.json"), "{}")
    finally:
        os.umask(old)
    assert (tmp_path / "f.json").stat().st_mode & 0o777 == 0o644
