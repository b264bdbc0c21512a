"""vlpeft on the real Dassl.pytorch (``VLPEFT_ENGINE=dassl``): skipped unless ``import dassl`` works.

The engine is chosen when ``vlpeft.engine`` is first imported, and this test session runs on vlpeft's own engine
(``conftest.py``), so every check runs in a subprocess with ``VLPEFT_ENGINE`` forced. See ``docs/DASSL.md``.
"""
import hashlib
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("dassl")

from conftest import tiny_opts  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

COOP_OPTS = ["TRAINER.COOP.N_CTX", 4, "TRAINER.COOP.PREC", "fp32"]
TRAINERS = {
    "CoOp": COOP_OPTS,
    "CoCoOp": ["TRAINER.COCOOP.N_CTX", 4, "TRAINER.COCOOP.PREC", "fp32", "TRAINER.COCOOP.CTX_INIT", "a photo of a"],
    "IVLP": ["TRAINER.IVLP.PREC", "fp32", "TRAINER.IVLP.PROMPT_DEPTH_TEXT", 2, "TRAINER.IVLP.PROMPT_DEPTH_VISION", 2],
    "MaPLe": ["TRAINER.MAPLE.PREC", "fp32", "TRAINER.MAPLE.PROMPT_DEPTH", 2],
    "PromptSRC": ["TRAINER.PROMPTSRC.PREC", "fp32", "TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT", 2,
                  "TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION", 2, "TRAINER.PROMPTSRC.GPA_MEAN", 2],
    "KgCoOp": ["TRAINER.COOP.CTX_INIT", "a photo of a", "TRAINER.COOP.PREC", "fp32"],
    "ProGrad": ["TRAINER.COOP.N_CTX", 6, "TRAINER.COOP.CTX_INIT", "template", "TRAINER.COOP.PREC", "fp32"],
    "DsRA": ["TRAINER.DSRA.PREC", "fp32", "TRAINER.DSRA.PROMPT_DEPTH_TEXT", 2, "TRAINER.DSRA.PROMPT_DEPTH_VISION", 2,
             "TRAINER.DSRA.GPA_MEAN", 2, "TRAINER.DSRA.RANK", 4],
    "DIP": ["TRAINER.DIP.PREC", "fp32", "TRAINER.DIP.PROMPT_DEPTH", 2],
    "DIPMaPLe": ["TRAINER.DIPMAPLE.PREC", "fp32", "TRAINER.DIPMAPLE.PROMPT_DEPTH", 2, "TRAINER.DIPMAPLE.PROJ_RANK", 8],
    "DPDLoRA": ["TRAINER.DPDLORA.PREC", "fp32", "TRAINER.DPDLORA.PROMPT_DEPTH", 2, "TRAINER.DPDLORA.EARLY_STOP", 1,
                "TRAINER.DPDLORA.LR_PROMPT", 0.002],
}
IVLP_KEYS = ["ctx", "text_deep.0", "vision_ctx", "vision_deep.0"]
CHECKPOINT_KEYS = {  # trainable tensors only, and DIP's frozen P_init (the paper stores it; depth 2 here)
    "CoCoOp": ["ctx", "meta_net.linear1.bias", "meta_net.linear1.weight", "meta_net.linear2.bias",
               "meta_net.linear2.weight"],
    "IVLP": IVLP_KEYS, "PromptSRC": IVLP_KEYS,
    "MaPLe": ["compound_prompt_projections.0.bias", "compound_prompt_projections.0.weight", "compound_prompts_text.0",
              "ctx", "proj.bias", "proj.weight"],
    "DsRA": sorted([f"prompts.{k}" for k in IVLP_KEYS] + [f"adapters.M.{tower}_{position}" for tower in ("text", "vision")
                                                          for position in ("attn", "mlp")] + ["adapters.R.shared_all"]),
    "DIP": ["ctx.A", "ctx.B", "ctx.init", "deep.0.A", "deep.0.B", "deep.0.init"],
    "DPDLoRA": sorted([f"gates.{t}.linear.{p}" for t in ("text", "vision") for p in ("bias", "weight")]
                      + [f"lorss.{t}.{p}" for t in ("text", "vision") for p in "ABs"]
                      + [f"prompts.{k}" for k in ("compound_prompt_projections.0.bias",
                                                   "compound_prompt_projections.0.weight", "compound_prompts_text.0",
                                                   "ctx", "proj.bias", "proj.weight")]),
    "DIPMaPLe": ["compound_prompt_projections.0.0.weight", "compound_prompt_projections.0.1.weight",
                 "compound_prompts_text.0.A", "compound_prompts_text.0.B", "compound_prompts_text.0.init", "ctx.A",
                 "ctx.B", "ctx.init", "proj.0.weight", "proj.1.weight"],
}
LR_LINE = re.compile(r"^epoch \[(\d+)/\d+\] batch \[(\d+)/\d+\] .* lr (\S+) eta", re.M)
LOSS_LINE = re.compile(r"^epoch \[(\d+)/\d+\] batch \[(\d+)/\d+\] .*? loss ([\d.]+) \(([\d.]+)\).* lr (\S+) eta", re.M)


def _run(engine, argv):
    """``python <argv>`` in the repository root with ``VLPEFT_ENGINE=engine``; returns stdout (asserts success)."""
    env = dict(os.environ, VLPEFT_ENGINE=engine, VLPEFT_OFFLINE="1", HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, *map(str, argv)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n" \
                                 f"{proc.stderr[-4000:]}"
    return proc.stdout


def _script(engine, code):
    return _run(engine, ["-c", textwrap.dedent(code)])


def _train_py(engine, trainer, root, out, clip_path, extra=(), eval_from=None, **overrides):
    argv = ["train.py", "--root", root, "--seed", 1, "--trainer", trainer, "--output-dir", out,
            "--dataset-config-file", "configs/datasets/eurosat.yaml"]
    if eval_from:
        argv += ["--eval-only", "--model-dir", eval_from, "--load-epoch", 2]
    argv += [*tiny_opts(clip_path, **overrides), "DATASET.NUM_SHOTS", 4, *TRAINERS.get(trainer, []), *extra]
    stdout = _run(engine, argv)
    results = json.load(open(osp.join(out, "results.json")))
    return results, stdout


def _log(out, name="log.txt"):
    return open(osp.join(out, name)).read()


def test_engine_is_dassl_and_everything_is_registered_there():
    out = _script("dassl", """
        import json
        import dassl.data.datasets, dassl.engine
        import vlpeft.engine as E
        import vlpeft.trainers
        from vlpeft.datasets import DATASET_NAMES
        reg_t, reg_d = dassl.engine.TRAINER_REGISTRY, dassl.data.datasets.DATASET_REGISTRY
        print(json.dumps({
            "engine": E.ENGINE,
            "same_registries": E.TRAINER_REGISTRY is reg_t and E.DATASET_REGISTRY is reg_d,
            "trainer_x_is_dassl": E.TrainerX is dassl.engine.TrainerX,
            "trainers": {n: reg_t.get(n).__module__ for n in ("CoOp", "CoCoOp", "ZeroshotCLIP", "ZeroshotCLIP2")},
            "datasets": {n: reg_d.get(n).__module__ for n in DATASET_NAMES},
            "dassl_own": [n in reg_t.registered_names() for n in ("Vanilla", "FixMatch")]
                         + [n in reg_d.registered_names() for n in ("PACS", "OfficeHome")],
        }))
    """)
    info = json.loads(out.strip().splitlines()[-1])
    assert info["engine"] == "dassl" and info["same_registries"] and info["trainer_x_is_dassl"]
    assert info["trainers"] == {"CoOp": "vlpeft.trainers.coop", "CoCoOp": "vlpeft.trainers.cocoop",
                                "ZeroshotCLIP": "vlpeft.trainers.zsclip", "ZeroshotCLIP2": "vlpeft.trainers.zsclip"}
    assert len(info["datasets"]) == 15 and all(m.startswith("vlpeft.datasets.") for m in info["datasets"].values())
    assert all(info["dassl_own"])


def test_warmup_scheduler_lrs_and_weights_only_state_dict(tmp_path):
    """Dassl's own constant warm-up + cosine (the CoOp-family schedule), constructible on torch >= 2.7, and its state
    round-trips through a weights-only checkpoint, in the new and in the legacy (pickled successor) form."""
    out = _script("dassl", f"""
        import json, torch
        import vlpeft.engine  # applies dassl_compat
        from dassl.config import get_cfg_default
        from dassl.optim import build_lr_scheduler, build_optimizer
        cfg = get_cfg_default()
        cfg.merge_from_list(["OPTIM.NAME", "sgd", "OPTIM.LR", 0.002, "OPTIM.MAX_EPOCH", 5,
                             "OPTIM.LR_SCHEDULER", "cosine", "OPTIM.WARMUP_EPOCH", 1,
                             "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", 1e-5])
        def build():
            p = torch.nn.Parameter(torch.zeros(3))
            optim = build_optimizer([p], cfg.OPTIM)
            return optim, build_lr_scheduler(optim, cfg.OPTIM)
        optim, sched = build()
        lrs = []
        for epoch in range(5):
            lrs.append(optim.param_groups[0]["lr"])
            optim.step(); sched.step()
            if epoch == 1:
                torch.save({{"optimizer": optim.state_dict(), "scheduler": sched.state_dict()}}, "{tmp_path}/s.pt")
                legacy = torch.optim.lr_scheduler.LRScheduler.state_dict(sched)  # what unpatched Dassl saves
                torch.save({{"optimizer": optim.state_dict(), "scheduler": legacy}}, "{tmp_path}/legacy.pt")
        resumed = {{}}
        for form in ("new", "legacy"):
            o2, s2 = build()
            if form == "new":
                ckpt = torch.load("{tmp_path}/s.pt", weights_only=True)
            else:
                ckpt = torch.load("{tmp_path}/legacy.pt", weights_only=False)
            o2.load_state_dict(ckpt["optimizer"])  # as Dassl's resume_from_checkpoint does
            s2.load_state_dict(ckpt["scheduler"])
            resumed[form] = []
            for epoch in range(2, 5):
                resumed[form].append(o2.param_groups[0]["lr"])
                o2.step(); s2.step()
        print(json.dumps({{"type": type(sched).__module__ + "." + type(sched).__name__, "lrs": lrs,
                          "resumed": resumed, "legacy_successor": type(legacy["successor"]).__name__}}))
    """)
    info = json.loads(out.strip().splitlines()[-1])
    assert info["type"] == "dassl.optim.lr_scheduler.ConstantWarmupScheduler"
    assert info["lrs"] == pytest.approx([1e-5, 2e-3, 1.809017e-3, 1.309017e-3, 6.90983e-4], rel=1e-5)
    assert info["legacy_successor"] == "CosineAnnealingLR"
    assert info["resumed"]["new"] == pytest.approx(info["lrs"][2:], rel=1e-9)
    assert info["resumed"]["legacy"] == pytest.approx(info["lrs"][2:], rel=1e-9)


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_train_checkpoint_and_eval_only_reload(trainer, eurosat_root, tiny_clip_path, tmp_path):
    out = str(tmp_path / "train")
    res, _ = _train_py("dassl", trainer, eurosat_root, out, tiny_clip_path, **{"DATASET.SUBSAMPLE_CLASSES": "base"})
    assert sorted(os.listdir(osp.join(out, "prompt_learner"))) == ["checkpoint", "model.pth.tar-2"]
    ckpt = torch.load(osp.join(out, "prompt_learner", "model.pth.tar-2"), weights_only=True)
    assert ckpt["epoch"] == 2
    assert sorted(ckpt["state_dict"]) == CHECKPOINT_KEYS.get(trainer, ["ctx"])
    assert isinstance(ckpt["scheduler"]["successor"], dict) and "optimizer" in ckpt
    assert "engine: dassl" in open(osp.join(out, "env.txt")).read()
    log = _log(out)
    assert "Finish training" in log and "Deploy the last-epoch model" in log and "Elapsed:" in log
    lrs = {(int(e), int(b)): float(lr) for e, b, lr in LR_LINE.findall(log)}
    assert lrs[(1, 1)] == pytest.approx(1e-5) and lrs[(2, 1)] == pytest.approx(2e-3)  # warm-up, then cosine
    assert re.findall(r"\* accuracy: ([\d.]+)%", log)[-1] == f"{res['accuracy']:.1f}"
    assert res["subsample_classes"] == "base"

    # --eval-only reload (Dassl's load path: patched load_checkpoint + the trainer's load_model) gives the same numbers
    out_eval = str(tmp_path / "eval")
    reloaded, _ = _train_py("dassl", trainer, eurosat_root, out_eval, tiny_clip_path, eval_from=out,
                            **{"DATASET.SUBSAMPLE_CLASSES": "base"})
    for key in ("accuracy", "error_rate", "macro_f1"):
        assert reloaded[key] == pytest.approx(res[key])
    assert "Loading weights to prompt_learner from" in _log(out_eval)
    # ... and base-trained prompts load for the new classes
    out_new = str(tmp_path / "new")
    new, _ = _train_py("dassl", trainer, eurosat_root, out_new, tiny_clip_path, eval_from=out,
                       **{"DATASET.SUBSAMPLE_CLASSES": "new"})
    assert 0.0 <= new["accuracy"] <= 100.0 and "SUBSAMPLE NEW CLASSES!" in _log(out_new)


def test_both_engines_give_identical_runs(eurosat_root, tiny_clip_path, tmp_path):
    """Same seed, same data, same model: Dassl's loop and vlpeft's produce the same losses, LRs and accuracy."""
    runs = {}
    for engine in ("dassl", "vlpeft"):
        out = str(tmp_path / engine)
        res, _ = _train_py(engine, "CoOp", eurosat_root, out, tiny_clip_path)
        runs[engine] = (res, LOSS_LINE.findall(_log(out)))
        assert f"engine: {engine}" in open(osp.join(out, "env.txt")).read()
    assert runs["dassl"][1] == runs["vlpeft"][1] and len(runs["dassl"][1]) > 0
    for key in ("accuracy", "error_rate", "macro_f1"):
        assert runs["dassl"][0][key] == pytest.approx(runs["vlpeft"][0][key])


def test_dpc_on_a_coop_backbone_trains_identically_on_both_engines(eurosat_root, tiny_clip_path, tmp_path):
    """DPC on Dassl's loop (its data loader wrapped by the look-ahead, negatives loaded in threads): the same losses
    as on vlpeft's engine; its checkpoint evaluates alone on the new classes, with the backbone's accuracy."""
    base = {"DATASET.SUBSAMPLE_CLASSES": "base"}
    backbone = str(tmp_path / "backbone")
    _train_py("dassl", "CoOp", eurosat_root, backbone, tiny_clip_path, **base)
    dpc_opts = ["TRAINER.DPC.BACKBONE_DIR", backbone, "TRAINER.DPC.WORKERS", 2]
    runs = {}
    for engine in ("dassl", "vlpeft"):
        out = str(tmp_path / f"dpc_{engine}")
        _train_py(engine, "DPC", eurosat_root, out, tiny_clip_path, COOP_OPTS + dpc_opts,
                  **{**base, "DATALOADER.TRAIN_X.BATCH_SIZE": 4})
        runs[engine] = LOSS_LINE.findall(_log(out))
        assert "DPC epoch 2:" in _log(out)
    assert runs["dassl"] == runs["vlpeft"] and len(runs["dassl"]) > 0
    new = {"DATASET.SUBSAMPLE_CLASSES": "new"}
    dpc_new, _ = _train_py("dassl", "DPC", eurosat_root, str(tmp_path / "dpc_new"), tiny_clip_path, COOP_OPTS,
                           eval_from=str(tmp_path / "dpc_dassl"), **new, **{"TRAINER.DPC.OMEGA_NEW": 0.0})
    coop_new, _ = _train_py("dassl", "CoOp", eurosat_root, str(tmp_path / "coop_new"), tiny_clip_path,
                            eval_from=backbone, **new)
    assert dpc_new["accuracy"] == coop_new["accuracy"]


def test_dpl_search_then_training_are_identical_on_both_engines(eurosat_root, tiny_clip_path, tmp_path):
    """DPL's bilevel search (α as a second registered model with its own Adam) and the training of the found lengths
    on Dassl's loop: the same losses and lengths as on vlpeft's engine."""
    extra = ["TRAINER.DPL.VAL_BATCH_SIZE", 4]
    runs = {}
    for engine in ("dassl", "vlpeft"):
        search, train = str(tmp_path / f"search_{engine}"), str(tmp_path / f"train_{engine}")
        _train_py(engine, "DPLSearch", eurosat_root, search, tiny_clip_path, extra,
                  **{"DATALOADER.TRAIN_X.BATCH_SIZE": 4})
        _train_py(engine, "DPL", eurosat_root, train, tiny_clip_path, ["TRAINER.DPL.SEARCH_DIR", search],
                  **{"DATALOADER.TRAIN_X.BATCH_SIZE": 4})
        runs[engine] = (LOSS_LINE.findall(_log(search)), LOSS_LINE.findall(_log(train)),
                        json.load(open(osp.join(search, "lengths.json"))))
    assert runs["dassl"] == runs["vlpeft"] and len(runs["dassl"][0]) > 0 and len(runs["dassl"][1]) > 0


def test_dpdlora_two_stages_are_identical_on_both_engines(eurosat_root, tiny_clip_path, tmp_path):
    """DPD-LoRA's stage 1 (the teacher, trained in before_train through the engine's run_epoch) and stage 2 on
    Dassl's loop: the same losses and LRs as on vlpeft's engine, and the same teacher checkpoint."""
    runs = {}
    for engine in ("dassl", "vlpeft"):
        out = str(tmp_path / engine)
        res, _ = _train_py(engine, "DPDLoRA", eurosat_root, out, tiny_clip_path,
                           **{"DATASET.SUBSAMPLE_CLASSES": "base", "OPTIM.MAX_EPOCH": 3,
                              "DATALOADER.TRAIN_X.BATCH_SIZE": 4})
        teacher = torch.load(osp.join(out, "teacher", "model.pth.tar-1"), weights_only=True)["state_dict"]
        runs[engine] = (LOSS_LINE.findall(_log(out)), res["accuracy"], teacher)
        assert "DPD-LoRA stage 2" in _log(out)
    (lines_d, acc_d, teacher_d), (lines_v, acc_v, teacher_v) = runs["dassl"], runs["vlpeft"]
    assert lines_d == lines_v and len(lines_d) == (1 + 3) * 5  # 1 teacher epoch + 3 student epochs of 5 batches
    assert acc_d == acc_v and all(torch.equal(teacher_d[k], teacher_v[k]) for k in teacher_v)


@pytest.mark.parametrize("trainer", ["ZeroshotCLIP", "ZeroshotCLIP2"])
def test_zeroshot_clip_matches_vlpeft_engine(trainer, eurosat_root, tiny_clip_path, tmp_path):
    accs = {}
    for engine in ("dassl", "vlpeft"):
        out = str(tmp_path / engine)
        stdout = _run(engine, ["train.py", "--root", eurosat_root, "--trainer", trainer, "--output-dir", out,
                               "--eval-only", "--dataset-config-file", "configs/datasets/eurosat.yaml",
                               *tiny_opts(tiny_clip_path)])
        assert "load_model() is skipped" in stdout
        accs[engine] = json.load(open(osp.join(out, "results.json")))["accuracy"]
    assert accs["dassl"] == pytest.approx(accs["vlpeft"])


def test_rerun_into_finished_output_dir_resumes_without_training(eurosat_root, tiny_clip_path, tmp_path):
    out = str(tmp_path / "run")
    first, _ = _train_py("dassl", "CoOp", eurosat_root, out, tiny_clip_path)
    again, stdout = _train_py("dassl", "CoOp", eurosat_root, out, tiny_clip_path)
    assert "Found checkpoint" in stdout and "Loaded scheduler" in stdout and "Previous epoch: 2" in stdout
    assert not LOSS_LINE.search(stdout) and "Finish training" in stdout
    assert again["accuracy"] == pytest.approx(first["accuracy"])
    assert any(name.startswith("log.txt-") for name in os.listdir(out))  # Dassl's logger: a new file per re-run


def _legacy_scheduler_entry(path):
    """Rewrite a checkpoint's scheduler entry the way an unpatched Dassl saves it (the successor object pickled)."""
    ckpt = torch.load(path, weights_only=True)
    param = torch.nn.Parameter(torch.zeros(1))
    successor = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([param], lr=0.002), T_max=2)
    successor.load_state_dict(ckpt["scheduler"]["successor"])
    ckpt["scheduler"]["successor"] = successor
    torch.save(ckpt, path)


@pytest.mark.parametrize("writer, reader, legacy", [
    ("dassl", "dassl", False), ("vlpeft", "dassl", False), ("dassl", "vlpeft", False), ("dassl", "dassl", True),
])
def test_interrupted_run_resumes_across_engines(writer, reader, legacy, eurosat_root, tiny_clip_path, tmp_path):
    """A run stopped after epoch 1 resumes at epoch 2 with the scheduler restored (LR 2e-3, not the warm-up LR)."""
    out = str(tmp_path / "run")
    extra = ["TRAIN.CHECKPOINT_FREQ", 1]
    _train_py(writer, "CoOp", eurosat_root, out, tiny_clip_path, extra)
    learner = osp.join(out, "prompt_learner")
    assert sorted(os.listdir(learner)) == ["checkpoint", "model.pth.tar-1", "model.pth.tar-2"]
    os.remove(osp.join(learner, "model.pth.tar-2"))
    os.remove(osp.join(out, "results.json"))
    with open(osp.join(learner, "checkpoint"), "w") as f:
        f.write("model.pth.tar-1\n")
    if legacy:
        _legacy_scheduler_entry(osp.join(learner, "model.pth.tar-1"))
        with pytest.raises(Exception):
            torch.load(osp.join(learner, "model.pth.tar-1"), weights_only=True)
    res, stdout = _train_py(reader, "CoOp", eurosat_root, out, tiny_clip_path, extra)
    assert "Previous epoch: 1" in stdout and "Loaded scheduler" in stdout
    assert ("loading it fully" in stdout) == legacy
    lines = LOSS_LINE.findall(stdout)
    assert lines and {int(e) for e, *_ in lines} == {2}
    assert float(lines[0][4]) == pytest.approx(2e-3)
    assert 0.0 <= res["accuracy"] <= 100.0
    torch.load(osp.join(learner, "model.pth.tar-2"), weights_only=True)


HOST_CODE = """
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase
from dassl.engine import TRAINER_REGISTRY, TrainerX

def register_host():
    @TRAINER_REGISTRY.register()
    class CoOp(TrainerX):
        pass

    @DATASET_REGISTRY.register()
    class EuroSAT(DatasetBase):
        pass

    return CoOp, EuroSAT
"""


@pytest.mark.parametrize("order", ["host_first", "vlpeft_first"])
def test_duplicate_registration_never_raises_and_the_host_wins(order):
    """A CoOp checkout registers its own ``CoOp`` / ``EuroSAT``; vlpeft's must not clash, whatever the import order
    (``python train.py`` of the host imports ``trainers.coop`` before or after ``vlpeft.trainers``)."""
    first, second = (("host = register_host()", "import vlpeft.trainers") if order == "host_first"
                     else ("import vlpeft.trainers", "host = register_host()"))
    out = _script("dassl", HOST_CODE + f"""
import json
{first}
{second}
from dassl.engine import build_trainer  # noqa: F401
clash = None
try:
    TRAINER_REGISTRY.register(type("Vanilla", (TrainerX,), {{}}))  # a clash not involving vlpeft: Dassl's KeyError
except KeyError as e:
    clash = str(e)
print(json.dumps({{
    "trainer_is_host": TRAINER_REGISTRY.get("CoOp") is host[0],
    "dataset_is_host": DATASET_REGISTRY.get("EuroSAT") is host[1],
    "cocoop": TRAINER_REGISTRY.get("CoCoOp").__module__,
    "clash": clash,
}}))
""")
    info = json.loads(out.strip().splitlines()[-1])
    assert info["trainer_is_host"] and info["dataset_is_host"]
    assert info["cocoop"] == "vlpeft.trainers.cocoop"  # the names the host does not take stay vlpeft's
    assert info["clash"] and "already registered" in info["clash"]
    assert 'vlpeft: "CoOp"' in out and 'vlpeft: "EuroSAT"' in out  # the clash is reported, not silent


FEWSHOT_DUMP = """
import json, random, sys
from vlpeft.config import get_cfg
from vlpeft.engine import ENGINE, Datum, build_dataset
root = sys.argv[1]
random.seed(1)
cfg = get_cfg()
cfg.merge_from_list(["DATASET.NAME", "EuroSAT", "DATASET.ROOT", root, "DATASET.NUM_SHOTS", 2, "SEED", 1])
ds = build_dataset(cfg)
rows = {split: [[d.impath, d.label, d.classname] for d in getattr(ds, split)] for split in ("train_x", "val")}
print(json.dumps({"engine": ENGINE, "rows": rows, "datum": all(type(d) is Datum for d in ds.train_x + ds.val),
                  "datum_module": Datum.__module__}))
"""


@pytest.mark.parametrize("writer, reader", [("dassl", "vlpeft"), ("vlpeft", "dassl")])
def test_fewshot_pickles_load_in_the_other_engine(writer, reader, tmp_path):
    from vlpeft.datasets.synthetic import make_layout

    make_layout("EuroSAT", tmp_path, num_classes=10, per_class=(4, 2, 3), image_size=32, seed=0)
    pkl = tmp_path / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl"
    runs = {}
    for engine in (writer, reader):
        out = _run(engine, ["-c", FEWSHOT_DUMP, tmp_path])
        runs[engine] = json.loads(out.strip().splitlines()[-1])
        assert runs[engine]["engine"] == engine and runs[engine]["datum"]
        if engine == writer:
            assert pkl.is_file()
            digest = hashlib.sha256(pkl.read_bytes()).hexdigest()
            mtime = pkl.stat().st_mtime_ns
            # the pickle references the writer's Datum class
            expected = "dassl.data.datasets.base_dataset" if writer == "dassl" else "vlpeft.engine.data"
            assert expected.encode() in pkl.read_bytes()
    assert hashlib.sha256(pkl.read_bytes()).hexdigest() == digest and pkl.stat().st_mtime_ns == mtime  # read, not rebuilt
    assert runs[reader]["rows"] == runs[writer]["rows"]
    assert len(runs[writer]["rows"]["train_x"]) == 20 and len(runs[writer]["rows"]["val"]) == 20
    # what a CoOp checkout's own loader does: a plain pickle.load under Dassl
    out = _script("dassl", f"""
        import pickle
        with open({str(pkl)!r}, "rb") as f:
            data = pickle.load(f)
        print(sorted(data), len(data["train"]), type(data["train"][0]).__module__, data["train"][0].impath)
    """)
    assert out.strip().splitlines()[-1].startswith("['train', 'val'] 20 ")
