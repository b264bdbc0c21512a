"""A user's records are never overwritten, a failure names its cause, a resumed run equals an uninterrupted one."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import tiny_opts

from vlpeft.cli import main

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
COOP = ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32"]


def _args(root, out, clip, *extra, trainer="CoOp", **overrides):
    return [str(a) for a in ["--root", root, "--seed", 1, "--trainer", trainer, "--output-dir", out,
                             "--dataset-config-file", "configs/datasets/eurosat.yaml",
                             *tiny_opts(clip, **overrides), "DATASET.NUM_SHOTS", 4, *COOP, *extra]]


def _eval_args(root, out, clip, model_dir, epoch=2, *extra, **overrides):
    args = _args(root, out, clip, *extra, **overrides)
    return args[:8] + ["--eval-only", "--model-dir", str(model_dir), "--load-epoch", str(epoch)] + args[8:]


def _snapshot(folder):
    return {osp.relpath(osp.join(d, f), folder): open(osp.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


@pytest.fixture(scope="module")
def trained(eurosat_root, tiny_clip_path, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "run"
    main(_args(eurosat_root, str(out), tiny_clip_path))
    return out


def test_eval_only_never_writes_over_a_training_run(trained, eurosat_root, tiny_clip_path, tmp_path):
    before = _snapshot(trained)
    with pytest.raises(FileExistsError, match=r"holds a training run.*--output-dir \"\S+_eval_eurosat_new\""):
        main(_eval_args(eurosat_root, str(trained), tiny_clip_path, trained, 2,
                        "DATASET.SUBSAMPLE_CLASSES", "new"))
    assert _snapshot(trained) == before
    # the CoOp output scheme: the suggestion for a train_base folder is its test_new twin
    run = tmp_path / "output/base2new/train_base/eurosat/shots_16/CoOp/cfg/seed1"
    main(_args(eurosat_root, str(run), tiny_clip_path, "OPTIM.MAX_EPOCH", 1))
    with pytest.raises(FileExistsError, match="output/base2new/test_new/eurosat/shots_16/CoOp/cfg/seed1"):
        main(_eval_args(eurosat_root, str(run), tiny_clip_path, run, 1, "DATASET.SUBSAMPLE_CLASSES", "new"))
    # its own folder works, and re-evaluating the same model there is allowed; another model there is not
    out = tmp_path / "eval"
    first = main(_eval_args(eurosat_root, str(out), tiny_clip_path, trained))
    assert main(_eval_args(eurosat_root, str(out), tiny_clip_path, trained)) == first
    with pytest.raises(FileExistsError, match="another evaluation"):
        main(_eval_args(eurosat_root, str(out), tiny_clip_path, run, 1))
    # ... and training into an evaluation's folder is refused too
    with pytest.raises(FileExistsError, match="holds an evaluation"):
        main(_args(eurosat_root, str(out), tiny_clip_path))


def test_eval_only_needs_a_model_except_zero_shot(eurosat_root, tiny_clip_path, tmp_path):
    args = _args(eurosat_root, str(tmp_path / "untrained"), tiny_clip_path)
    with pytest.raises(ValueError, match="--eval-only with trainer CoOp needs --model-dir"):
        main(args[:8] + ["--eval-only"] + args[8:])
    assert not (tmp_path / "untrained").exists()
    zs = _args(eurosat_root, str(tmp_path / "zs"), tiny_clip_path, trainer="ZeroshotCLIP")
    assert 0 <= main(zs[:8] + ["--eval-only"] + zs[8:])["accuracy"] <= 100


def test_wrong_load_epoch_lists_the_saved_epochs(trained, eurosat_root, tiny_clip_path, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--load-epoch 7.*prompt_learner: \[2\]"):
        main(_eval_args(eurosat_root, str(tmp_path / "e"), tiny_clip_path, trained, 7))
    assert not (tmp_path / "e").exists()


def test_unreadable_checkpoint_names_the_file_and_the_intact_one(eurosat_root, tiny_clip_path, tmp_path):
    run = tmp_path / "run"
    main(_args(eurosat_root, str(run), tiny_clip_path, "TRAIN.CHECKPOINT_FREQ", 1))
    last = run / "prompt_learner" / "model.pth.tar-2"
    last.write_bytes(last.read_bytes()[:100])  # truncated, as by a full disk
    with pytest.raises(RuntimeError, match=r"model.pth.tar-2.*truncated.*epoch 1 in the same folder is intact"):
        main(_eval_args(eurosat_root, str(tmp_path / "e"), tiny_clip_path, run, 2))
    last.write_bytes(b"")
    with pytest.raises(RuntimeError, match=r"model.pth.tar-2\" \(empty"):
        main(_args(eurosat_root, str(run), tiny_clip_path, "TRAIN.CHECKPOINT_FREQ", 1))  # resuming reads it too


def test_truncated_image_names_the_file(tmp_path, tiny_clip_path):
    from vlpeft.datasets.synthetic import make_layout

    make_layout("EuroSAT", tmp_path, num_classes=10, per_class=(4, 2, 3), image_size=32, seed=0)
    images = sorted((tmp_path / "eurosat").rglob("*.jpg"))
    broken = images[0]
    broken.write_bytes(broken.read_bytes()[:200])
    with pytest.raises(OSError, match=f'Cannot read image ".*{broken.name}"'):
        main(_args(str(tmp_path), str(tmp_path / "out"), tiny_clip_path, "DATASET.NUM_SHOTS", -1))


def test_input_size_must_match_the_clip_checkpoint(eurosat_root, tiny_clip_path, tmp_path):
    with pytest.raises(ValueError, match=r"INPUT.SIZE is \(64, 64\).*takes 32x32 images"):
        main(_args(eurosat_root, str(tmp_path / "o"), tiny_clip_path, **{"INPUT.SIZE": "(64, 64)"}))


def test_missing_dataset_config_names_the_flag(tiny_clip_path, tmp_path):
    args = [a for a in _args("", str(tmp_path / "o"), tiny_clip_path)]
    i = args.index("--dataset-config-file")
    del args[i:i + 2]
    with pytest.raises(ValueError, match="--dataset-config-file"):
        main(args)
    assert not (tmp_path / "o").exists()


def test_too_few_images_for_num_shots_warns_and_is_recorded(eurosat_root, tiny_clip_path, tmp_path, capsys):
    out = tmp_path / "o"
    main(_args(eurosat_root, str(out), tiny_clip_path, "DATASET.NUM_SHOTS", 16, "OPTIM.MAX_EPOCH", 1))
    assert "Warning: DATASET.NUM_SHOTS is 16 but 10 class(es) have fewer training images" in capsys.readouterr().out
    record = json.loads((out / "results.json").read_text())
    assert record["num_shots"] == 16 and record["train_images_per_class"] == [4, 4]


def test_a_failing_run_logs_its_traceback(eurosat_root, tiny_clip_path, tmp_path, monkeypatch):
    from vlpeft.trainers import coop

    def broken(self, image):
        raise RuntimeError("deliberate failure in the forward pass")

    monkeypatch.setattr(coop.CustomCLIP, "forward", broken)
    out = tmp_path / "o"
    with pytest.raises(RuntimeError, match="deliberate"):
        main(_args(eurosat_root, str(out), tiny_clip_path))
    log = (out / "log.txt").read_text()
    assert "Traceback (most recent call last)" in log and "deliberate failure in the forward pass" in log
    assert not (out / "results.json").exists()


def test_a_resumed_run_equals_the_uninterrupted_one(eurosat_root, tiny_clip_path, tmp_path, monkeypatch):
    opts = ["TRAIN.CHECKPOINT_FREQ", 1, "OPTIM.MAX_EPOCH", 4, "DATALOADER.TRAIN_X.BATCH_SIZE", 4]
    whole = tmp_path / "whole"
    main(_args(eurosat_root, str(whole), tiny_clip_path, *opts))

    from vlpeft.engine import TrainerX

    # Dassl's SimpleTrainer under VLPEFT_ENGINE=dassl, vlpeft's otherwise
    SimpleTrainer = next(c for c in TrainerX.__mro__ if c.__name__ == "SimpleTrainer")
    original = SimpleTrainer.after_epoch

    def interrupt_after_epoch_2(self):
        original(self)
        if self.epoch + 1 == 2:
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    monkeypatch.setattr(SimpleTrainer, "after_epoch", interrupt_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        main(_args(eurosat_root, str(cut), tiny_clip_path, *opts))
    monkeypatch.setattr(SimpleTrainer, "after_epoch", original)
    main(_args(eurosat_root, str(cut), tiny_clip_path, *opts))

    a = torch.load(whole / "prompt_learner" / "model.pth.tar-4", weights_only=True)
    b = torch.load(cut / "prompt_learner" / "model.pth.tar-4", weights_only=True)
    assert torch.equal(a["state_dict"]["ctx"], b["state_dict"]["ctx"])  # bit for bit
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (whole, cut))
    assert ra["accuracy"] == rb["accuracy"]
    assert ra["resumed_from_epoch"] is None and rb["resumed_from_epoch"] == 2
    logs = "".join(p.read_text() for p in cut.glob("log.txt*"))  # Dassl starts log.txt-<time> when resuming
    assert "Restored the random-number states" in logs


def test_packaged_configs_resolve_from_any_directory(tmp_path, monkeypatch):
    from vlpeft.resources import CONFIG_ROOT, resolve_config_file

    monkeypatch.chdir(tmp_path)
    found = resolve_config_file("configs/trainers/CoOp/vit_b16_ep50.yaml")
    assert found == osp.join(CONFIG_ROOT, "trainers", "CoOp", "vit_b16_ep50.yaml") and osp.isfile(found)
    (tmp_path / "configs/trainers/CoOp").mkdir(parents=True)
    (tmp_path / "configs/trainers/CoOp/vit_b16_ep50.yaml").write_text("OPTIM:\n  LR: 0.5\n")
    assert resolve_config_file("configs/trainers/CoOp/vit_b16_ep50.yaml") == "configs/trainers/CoOp/vit_b16_ep50.yaml"
    with pytest.raises(FileNotFoundError, match="--dataset-config-file: config file not found"):
        resolve_config_file("configs/datasets/nope.yaml", "--dataset-config-file")


def test_checkout_configs_are_the_packaged_ones():
    assert osp.realpath(osp.join(REPO, "configs")) == osp.realpath(osp.join(REPO, "vlpeft", "configs"))


def test_pretraining_does_not_overwrite_by_default(tmp_path):
    shipped = osp.join(REPO, "vlpeft", "testbed", "vlpeft-testbed.pt")
    proc = subprocess.run([sys.executable, "-m", "vlpeft.testbed.pretrain", "--help"], capture_output=True,
                          text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO})
    assert "default: output/testbed_pretrain/vlpeft-testbed.pt" in " ".join(proc.stdout.split())
    proc = subprocess.run([sys.executable, "-m", "vlpeft.testbed.pretrain", "--out", shipped, "--steps", "1"],
                          capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": REPO})
    assert proc.returncode == 2 and "pass --overwrite" in proc.stderr


def test_declared_dependencies_cover_the_imports():
    """Every third-party module the package imports is declared in setup.py (a fresh install must run it)."""
    import ast
    import re

    setup = open(osp.join(REPO, "setup.py")).read()
    declared = {re.split(r"[<>=\[ ]", d)[0].lower().replace("-", "_")
                for d in re.findall(r'"([A-Za-z][\w\-\[\]]*(?:[<>=][^"]*)?)"', setup)}
    distribution = {"PIL": "pillow", "yaml": "pyyaml", "open_clip": "open_clip_torch", "sklearn": "scikit_learn"}
    # the engine's Dassl, the plot extra, the slurm extra, the results' optional DataFrame; timm comes with open_clip
    optional = {"dassl", "matplotlib", "submitit", "pandas", "timm"}
    imported = set()
    for d, _, files in os.walk(osp.join(REPO, "vlpeft")):
        for f in files:
            if f.endswith(".py"):
                for node in ast.walk(ast.parse(open(osp.join(d, f)).read())):
                    if isinstance(node, ast.Import):
                        imported.update(a.name.split(".")[0] for a in node.names)
                    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                        imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "vlpeft"}
    missing = {m for m in third_party - optional if distribution.get(m, m).lower() not in declared}
    assert not missing, f"imported but not declared in setup.py: {sorted(missing)}"


def test_reused_runs_say_that_nothing_was_rerun(tmp_path, monkeypatch, capsys):
    import vlpeft.testbed.accuracy as accuracy
    from vlpeft.demo import run_demo

    run = tmp_path / "finished"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"accuracy": 61.0, "elapsed_s": 12.0}))
    monkeypatch.setattr("vlpeft.cli.main", lambda argv: pytest.fail("a finished run must not be re-run"))
    assert accuracy.run_train([], [], str(run)) == {"accuracy": 61.0, "elapsed_s": 12.0, "reused": True}

    monkeypatch.setattr(accuracy, "base_to_new", lambda name, *a, **k: {
        "base": 70.0, "new": 60.0, "elapsed_s": 9.0, "reused": True, "finished_at": "2026-01-02 03:04:05",
        "dir": f"{tmp_path}/b2n/{name}"})
    run_demo(output=str(tmp_path))
    out = capsys.readouterr().out
    assert f"nothing re-run, the finished run of 2026-01-02 03:04:05 in {tmp_path}/b2n/CoOp is shown" in out
    assert "9 (earlier run)" in out


def test_a_run_config_from_the_other_engine_loads(trained, tmp_path):
    """A run made under Dassl holds Dassl's own trainer nodes in config.yaml (CDAC, DAEL, ...); re-using it under
    vlpeft's engine (as ``vlpeft.density --evaluate`` does) keeps only the keys this engine knows."""
    from vlpeft.cli import portable_run_config
    from vlpeft.config import get_cfg

    text = (trained / "config.yaml").read_text() + "\n"
    foreign = tmp_path / "config.yaml"
    foreign.write_text(text.replace("TRAINER:\n", "TRAINER:\n  OTHERENGINE:\n    RAMPUP_COEF: 30\n", 1))
    cfg = get_cfg()
    with pytest.raises(KeyError, match="OTHERENGINE"):
        cfg.merge_from_file(str(foreign))
    cfg = get_cfg()
    cfg.merge_from_file(portable_run_config(str(foreign), str(tmp_path / "portable.yaml")))
    assert cfg.TRAINER.NAME == "CoOp" and cfg.TRAINER.COOP.N_CTX == 4


def test_close_logger_gives_back_a_stream_that_stays_open(tmp_path, monkeypatch):
    """Dassl's Logger (a console + file tee) is unwound without closing the console it wraps."""
    import io

    from vlpeft.engine.utils import close_logger

    class DasslLikeLogger:  # Dassl's Logger: closing it would close the console
        def __init__(self, console, path):
            self.console, self.file = console, open(path, "w")

        def write(self, msg):
            self.console.write(msg)
            self.file.write(msg)

        def flush(self):
            self.console.flush()
            self.file.flush()

        def close(self):
            self.console.close()
            self.file.close()

    console = io.StringIO()
    monkeypatch.setattr(sys, "stdout", DasslLikeLogger(DasslLikeLogger(console, tmp_path / "a"), tmp_path / "b"))
    close_logger()
    assert sys.stdout is console and not console.closed
