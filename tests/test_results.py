"""vlpeft.results (the tables of finished runs) and vlpeft.published (the published numbers), on generated run folders."""
import csv
import io
import json
import math
import shlex
import os
import os.path as osp

import pytest
import yaml

from vlpeft import published, results as R

B2N_CFG = "vit_b16_c2_ep5_batch4_2ctx"
FS_CFG = "vit_b16_c2_ep50_batch4_2ctx_few_shot"
XD_CFG = "vit_b16_c2_ep5_batch4_2ctx_cross_datasets"


def write_run(path, accuracy, config=None, **extra):
    os.makedirs(path, exist_ok=True)
    record = {"split": "test", "accuracy": accuracy, "error_rate": 100 - accuracy, **extra}
    with open(osp.join(path, "results.json"), "w") as f:
        json.dump(record, f)
    with open(osp.join(path, "log.txt"), "w") as f:
        f.write("training...\n")
    if config is not None:
        with open(osp.join(path, "config.yaml"), "w") as f:
            yaml.safe_dump(config, f)


def dassl_log(path, accuracy, finished=True):
    os.makedirs(path, exist_ok=True)
    text = "epoch [5/5] batch [20/20] loss 0.1\nEvaluate on the *test* set\n"
    if finished:
        text += (f"=> result\n* total: 1,500\n* correct: {int(accuracy * 15)}\n* accuracy: {accuracy:.1f}%\n"
                 f"* error: {100 - accuracy:.1f}%\n* macro_f1: {accuracy - 1:.1f}%\nElapsed: 0:01:00\n")
    with open(osp.join(path, "log.txt"), "w") as f:
        f.write(text)


def b2n(root, split, dataset, seed, trainer="MaPLe", cfg=B2N_CFG):
    folder = "train_base" if split == "base" else "test_new"
    return osp.join(root, "base2new", folder, dataset, "shots_16", trainer, cfg, f"seed{seed}")


BASE = {"eurosat": [90.0, 92.0, 94.0], "dtd": [80.0, 81.0, 82.0]}
NEW = {"eurosat": [70.0, 72.0, 74.0], "dtd": [60.0, 62.0]}  # dtd seed 3's test_new is missing


@pytest.fixture
def root(tmp_path):
    r = str(tmp_path / "output")
    for d in BASE:
        for s, acc in enumerate(BASE[d], 1):
            if d == "eurosat" and s == 3:
                dassl_log(b2n(r, "base", d, s), acc)  # an official-code run: log.txt only
            else:
                write_run(b2n(r, "base", d, s), acc)
        for s, acc in enumerate(NEW[d], 1):
            write_run(b2n(r, "new", d, s), acc, eval_only=True)
    # oxford_pets: seed 1 stale (N_CTX differs from configs/trainers/MaPLe/<cfg>.yaml), seed 2 unfinished
    stale_cfg = {"TRAINER": {"NAME": "MaPLe", "MAPLE": {"N_CTX": 4, "CTX_INIT": "a photo of a", "PREC": "fp16",
                                                        "PROMPT_DEPTH": 9}}}
    write_run(b2n(r, "base", "oxford_pets", 1), 10.0, config=stale_cfg)
    write_run(b2n(r, "new", "oxford_pets", 1), 10.0)
    dassl_log(b2n(r, "base", "oxford_pets", 2), 0, finished=False)
    # few-shot DPD-LoRA: eurosat 1 and 16 shots, seeds 1-2
    for shots, accs in ((1, [70.0, 74.0]), (16, [90.0, 91.0])):
        for s, acc in enumerate(accs, 1):
            write_run(osp.join(r, "eurosat", "DPDLoRA", f"{FS_CFG}_{shots}shots", f"seed{s}"), acc)
    # cross-dataset MaPLe: source + two targets, seed 1; one DG target
    write_run(osp.join(r, "imagenet", "MaPLe", f"{XD_CFG}_16shots", "seed1"), 70.0)
    write_run(osp.join(r, "evaluation", "MaPLe", f"{XD_CFG}_16shots", "caltech101", "seed1"), 93.0)
    write_run(osp.join(r, "evaluation", "MaPLe", f"{XD_CFG}_16shots", "dtd", "seed1"), 45.0)
    write_run(osp.join(r, "evaluation", "MaPLe", f"{XD_CFG}_16shots", "imagenet_a", "seed1"), 50.0)
    return r


@pytest.fixture
def report(root):
    return R.results(root, seeds=[1, 2, 3], datasets=["eurosat", "dtd", "oxford_pets"], compare="published")


def table(report, protocol, trainer):
    return next(t for t in report.tables if t.protocol == protocol and t.trainer == trainer)


def mean_std(values):
    m = sum(values) / len(values)
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / len(values))  # np.std, as CoOp's parse_test_res


def test_parse_result_block():
    text = "x\n=> result\n* total: 1,000\n* correct: 200\n* accuracy: 20.0%\n* error: 80.0%\n* macro_f1: 13.3%\n"
    block = R.parse_result_block("=> result\n* accuracy: 1.0%\n" + text)  # the last block wins
    assert block == {"total": 1000.0, "correct": 200.0, "accuracy": 20.0, "error": 80.0, "macro_f1": 13.3}
    assert R.parse_result_block("no result here") is None


def test_classify_folder_schemes():
    c = R.classify(["base2new", "test_new", "dtd", "shots_16", "MaPLe", B2N_CFG, "seed2"])
    assert (c["protocol"], c["dataset"], c["trainer"], c["config"], c["seed"], c["split"]) == \
        ("base2new", "dtd", "MaPLe", B2N_CFG, 2, "new")
    c = R.classify(["eurosat", "CoOp", "vit_b16_ep50_1shots", "nctx16_cscFalse_ctpend", "seed1"])
    assert (c["protocol"], c["shots"], c["config"]) == ("fewshot", 1, "vit_b16_ep50/nctx16_cscFalse_ctpend")
    c = R.classify(["evaluation", "CoOp", "vit_b16_ep50_16shots", "nctx16_cscFalse_ctpend", "imagenetv2", "seed3"])
    assert (c["protocol"], c["dataset"], c["config"]) == ("dg", "imagenetv2", "vit_b16_ep50/nctx16_cscFalse_ctpend")
    c = R.classify(["evaluation", "MaPLe", f"{XD_CFG}_16shots", "ucf101", "seed1"])
    assert (c["protocol"], c["dataset"], c["split"]) == ("xd", "ucf101", "target")
    c = R.classify(["b2n", "TestbedScenes", "CoOp", "seed1", "test_new"])  # the testbed's layout
    assert (c["protocol"], c["config"], c["split"]) == ("base2new", "testbed", "new")
    c = R.classify(["fewshot", "TestbedScenes", "CoOp", "4shots", "seed2"])
    assert (c["protocol"], c["shots"], c["seed"]) == ("fewshot", 4, 2)
    assert R.classify(["base2new", "train_base", "dtd", "shots_16", "MaPLe", B2N_CFG, "prompt_learner"]) is None


def test_base2new_means_std_and_h_of_means(report):
    t = table(report, "base2new", "MaPLe")
    eu = t.row("eurosat")
    m, s = mean_std(BASE["eurosat"])  # seed 3 read from the official-style log.txt
    assert eu.cells["base"][0] == pytest.approx(m) and eu.cells["base"][1] == pytest.approx(s)
    assert eu.cells["base"][2] == 3
    mn, sn = mean_std(NEW["eurosat"])
    assert eu.cells["new"][:2] == pytest.approx((mn, sn))
    assert eu.cells["H"][0] == pytest.approx(2 * m * mn / (m + mn))  # H of the means, not the mean of the H
    assert eu.cells["H"][0] != pytest.approx(sum(2 * b * n / (b + n) for b, n in zip(BASE["eurosat"],
                                                                                       NEW["eurosat"])) / 3, abs=1e-9)
    dtd = t.row("dtd")
    assert dtd.cells["new"][2] == 2 and dtd.cells["new"][0] == pytest.approx(61.0)
    avg = t.row("average")
    b = (m + 81.0) / 2
    n = (mn + 61.0) / 2
    assert avg.cells["base"][0] == pytest.approx(b) and avg.cells["new"][0] == pytest.approx(n)
    assert avg.cells["H"][0] == pytest.approx(2 * b * n / (b + n))
    assert avg.datasets == 2  # oxford_pets (stale only) is not averaged
    pets = t.row("oxford_pets")  # its only base run is stale: no base, no H, not in the average
    assert pets.cells["base"] is None and pets.cells["H"] is None and pets.cells["new"][0] == 10.0


def test_missing_unfinished_stale(report, root):
    miss = {(m["protocol"], m["dataset"], m["split"], m["seed"]) for m in report.missing}
    assert ("base2new", "dtd", "new", 3) in miss
    assert ("base2new", "eurosat", "base", 3) not in miss  # the log.txt run counts
    assert ("base2new", "oxford_pets", "base", 3) in miss
    assert ("base2new", "oxford_pets", "base", 1) not in miss  # present, but stale
    dtd_new3 = next(m for m in report.missing if m["dataset"] == "dtd" and m["split"] == "new" and m["seed"] == 3)
    assert dtd_new3["path"] == b2n(root, "new", "dtd", 3)
    assert [r.path for r in report.unfinished] == [b2n(root, "base", "oxford_pets", 2)]
    assert [r.path for r in report.stale] == [b2n(root, "base", "oxford_pets", 1)]
    assert report.stale[0].stale_keys == ["TRAINER.MAPLE.N_CTX"]
    # few-shot: 2 of 3 seeds, shots 2/4/8 absent; xd: missing targets and seeds
    assert ("fewshot", "eurosat", "all", 3) in miss
    fs = {(m["shots"], m["seed"]) for m in report.missing if m["protocol"] == "fewshot" and m["dataset"] == "eurosat"}
    assert (1, 3) in fs and (2, 1) in fs and (1, 1) not in fs
    xd = {(m["dataset"], m["seed"]) for m in report.missing if m["protocol"] == "xd"}
    assert ("ucf101", 1) in xd and ("caltech101", 2) in xd and ("caltech101", 1) not in xd
    assert any(m["protocol"].endswith("source") and m["seed"] == 2 for m in report.missing)
    # --include-stale averages it in (still listed)
    again = R.results(root, seeds=[1, 2, 3], datasets=["eurosat", "dtd", "oxford_pets"], include_stale=True)
    assert table(again, "base2new", "MaPLe").row("oxford_pets").cells["base"][0] == 10.0
    assert len(again.stale) == 1


def test_stale_from_the_recorded_command(tmp_path):
    """A run with env.txt: its command is resolved as train.py does and compared with its config.yaml."""
    argv = ["--trainer", "MaPLe", "--dataset-config-file", "configs/datasets/eurosat.yaml", "--config-file",
            f"configs/trainers/MaPLe/{B2N_CFG}.yaml", "--seed", "1", "DATASET.NUM_SHOTS", "16",
            "DATASET.SUBSAMPLE_CLASSES", "base"]
    now = R._resolve_now(argv)
    fresh, old = str(tmp_path / "fresh"), str(tmp_path / "old")
    for path, cfg in ((fresh, now), (old, {**now, "OPTIM": {**now["OPTIM"], "LR": 0.123}})):
        write_run(path, 50.0, config=cfg)
        with open(osp.join(path, "env.txt"), "w") as f:
            f.write("started: now\nengine\ncommand: " + shlex.join(["--output-dir", path] + argv) + "\n")
    run = R.Run(path=fresh, protocol="base2new", dataset="eurosat", trainer="MaPLe", config=B2N_CFG, seed=1)
    assert R.stale_keys(run) == []
    run.path = old
    assert R.stale_keys(run) == ["OPTIM.LR"]


def test_fewshot_and_transfer_tables(report):
    t = table(report, "fewshot", "DPDLoRA")
    assert t.columns == [1, 2, 4, 8, 16]
    eu = t.row("eurosat")
    assert eu.cells[1][:3] == pytest.approx((72.0, mean_std([70.0, 74.0])[1], 2))
    assert eu.cells[16][0] == pytest.approx(90.5) and eu.cells[2] is None
    assert t.row("average").cells[16][0] == pytest.approx(90.5)
    xd = table(report, "xd", "MaPLe")
    assert xd.row("imagenet").cells["accuracy"][0] == 70.0  # the source
    assert xd.row("average").cells["accuracy"][0] == pytest.approx((93.0 + 45.0) / 2)  # targets only
    dg = table(report, "dg", "MaPLe")
    assert dg.row("imagenet_a").cells["accuracy"][0] == 50.0
    assert dg.row("imagenet").cells["accuracy"][0] == 70.0
    # the ImageNet source runs make no few-shot table of their own
    assert not any(t.protocol == "fewshot" and t.trainer == "MaPLe" for t in report.tables)


def test_published_lookup_and_difference(report):
    assert published.lookup("DPDLoRA", "base2new", "average", "H") == 81.07
    assert published.lookup("DPDLoRA", "base2new", "eurosat", "base") == 95.47
    assert published.lookup("DPDLoRA", "fewshot", "average", 16) == 84.22
    assert published.lookup("DPDLoRA", "fewshot", "average", "16shots") == 84.22
    assert published.lookup("DPDLoRA", "xd", "average") == 66.25
    assert published.lookup("DsRA", "base2new", "average", "H") == 81.10
    assert published.lookup("DIPMaPLe", "base2new", "average", "new") == 75.43
    assert published.lookup("DPC+MaPLe", "base2new", "average", "base") == 85.93
    assert published.lookup("DPL", "fewshot", "imagenet", 16) == 72.80
    assert published.lookup("DIP", "base2new", "imagenet", "base") == 76.10
    assert published.lookup("DIPMaPLe", "base2new", "fgvc_aircraft", "H") == 38.08
    assert published.lookup("DIP", "base2new", "dtd", "base") is None  # that panel of the DIP paper is an image
    assert published.lookup("DIP", "xd", "eurosat") == 42.10
    assert published.lookup("DsRA", "dg", "imagenet_sketch") == 49.73
    assert published.lookup("CoOp", "base2new", "dtd", "novel") == 41.18
    assert published.lookup("DPDLoRA", "dg", "average") is None
    for e in published.ENTRIES:
        assert e.source and e.method in published.METHODS and e.protocol in published.PROTOCOLS
    # every trainer with a published 11-dataset average has base, new and H (DsRA plug-ins: H only)
    for m in ("ZeroshotCLIP", "CoOp", "CoCoOp", "MaPLe", "PromptSRC", "DPDLoRA", "DsRA", "DIP", "DIPMaPLe",
              "DPC+CoOp", "DPC+PromptSRC"):
        assert all(published.lookup(m, "base2new", "average", k) for k in ("base", "new", "H")), m
    assert published.method_for("DPC", "maple_vit_b16_c2_ep20_bs4_top8") == "DPC+MaPLe"
    assert published.method_for("DsRA", "kgcoop_vit_b16_ep100_ctxv1") == "DsRA+KgCoOp"
    assert published.method_for("MaPLe", B2N_CFG) == "MaPLe"

    recs = {(r["protocol"], r["dataset"], r["metric"]): r for r in report.records() if r["trainer"] == "MaPLe"}
    eu = recs[("base2new", "eurosat", "base")]
    assert eu["published"] == published.lookup("MaPLe", "base2new", "eurosat", "base")
    assert eu["diff"] == pytest.approx(92.0 - eu["published"])
    assert eu["source"].startswith("DPD-LoRA paper, Table 1")
    fs = next(r for r in report.records() if r["trainer"] == "DPDLoRA" and r["dataset"] == "eurosat"
              and r["metric"] == 16)
    assert fs["diff"] == pytest.approx(90.5 - 92.83)


def test_csv_and_markdown(report, tmp_path, capsys):
    rows = list(csv.DictReader(io.StringIO(R.render(report, "csv"))))
    h = next(r for r in rows if r["protocol"] == "base2new" and r["dataset"] == "average" and r["metric"] == "H")
    b, n = float(next(r for r in rows if r["protocol"] == "base2new" and r["dataset"] == "average"
                      and r["metric"] == "base")["mean"]), 0
    assert float(h["mean"]) == pytest.approx(table(report, "base2new", "MaPLe").row("average").cells["H"][0],
                                             abs=1e-4)
    assert h["published"] == "78.5500" and h["method"] == "MaPLe"
    assert b > 0
    md = R.render(report, "markdown")
    assert "### base-to-new: MaPLe / " + B2N_CFG in md
    m, sd = mean_std(BASE["eurosat"])
    assert "| eurosat" in md and f"{m:.2f} ± {sd:.2f} (3)" in md and sd == pytest.approx((8 / 3) ** 0.5)
    assert "average (2 of 11 datasets)" in md  # a partial average: labelled, and no difference to the paper's
    avg = next(r for r in report.records() if r["protocol"] == "base2new" and r["dataset"] == "average"
               and r["metric"] == "H")
    assert avg["published"] == 78.55 and avg["diff"] is None
    assert "Missing runs" in md and "Unfinished runs (1" in md and "Stale runs (1" in md
    assert "TRAINER.MAPLE.N_CTX" in md
    assert "DPD-LoRA paper, Table 1 (base-to-new)" in md
    # the command line, writing its output atomically
    out = str(tmp_path / "report.md")
    assert R.main([report.runs[0].path.split(os.sep + "base2new")[0], "--compare", "published", "--format",
                   "markdown", "--datasets", "eurosat", "dtd", "--output", out]) == 0
    with open(out) as f:
        assert "| published" in f.read()
    R.main([report.runs[0].path.split(os.sep + "base2new")[0], "--no-stale-check", "--datasets", "eurosat"])
    assert "base-to-new: MaPLe" in capsys.readouterr().out


def test_plot(report, tmp_path):
    pytest.importorskip("matplotlib")
    paths = R.plot(report, str(tmp_path / "plots"))
    names = sorted(osp.basename(p) for p in paths)
    assert "fewshot_eurosat.png" in names and "fewshot_average.png" in names
    assert any(n.startswith("base2new_MaPLe") for n in names)


def test_testbed_layout(tmp_path):
    r = str(tmp_path / "testbed")
    for s, (b, n) in enumerate(((60.0, 50.0), (64.0, 54.0)), 1):
        write_run(osp.join(r, "b2n", "TestbedScenes", "CoOp", f"seed{s}", "train_base"), b)
        write_run(osp.join(r, "b2n", "TestbedScenes", "CoOp", f"seed{s}", "test_new"), n)
        write_run(osp.join(r, "b2n", "TestbedScenes", "ZeroshotCLIP", f"seed{s}", "base"), 40.0)
        write_run(osp.join(r, "b2n", "TestbedScenes", "ZeroshotCLIP", f"seed{s}", "test_new"), 45.0)
        write_run(osp.join(r, "fewshot", "TestbedScenes", "CoOp", "4shots", f"seed{s}"), 70.0 + s)
    rep = R.results(r, seeds=[1, 2])
    t = table(rep, "base2new", "CoOp")
    assert t.row("TestbedScenes").cells["H"][0] == pytest.approx(2 * 62 * 52 / 114)
    assert table(rep, "base2new", "ZeroshotCLIP").row("TestbedScenes").cells["base"][0] == 40.0
    assert table(rep, "fewshot", "CoOp").row("TestbedScenes").cells[4][0] == pytest.approx(71.5)
    assert not [m for m in rep.missing if m["protocol"] == "base2new"]


def test_config_comparison_treats_one_folder_written_two_ways_as_one_setting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    os.makedirs("backbone/train_base")
    old = {"TRAINER": {"DPC": {"BACKBONE_DIR": str(tmp_path / "backbone" / "train_base")}}, "OPTIM": {"LR": 0.002}}
    same = {"TRAINER": {"DPC": {"BACKBONE_DIR": "backbone/train_base"}}, "OPTIM": {"LR": 0.002}}
    other = {"TRAINER": {"DPC": {"BACKBONE_DIR": "backbone"}}, "OPTIM": {"LR": 0.006}}
    assert list(R._diff(old, same)) == []
    assert sorted(R._diff(old, other)) == ["OPTIM.LR", "TRAINER.DPC.BACKBONE_DIR"]
    assert R.config_value(old, "OPTIM.LR") == 0.002
