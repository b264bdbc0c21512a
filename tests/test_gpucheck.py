"""python -m vlpeft.gpucheck (the prepared GPU check) run in-process on the CPU with the tiny random CLIP: the values in
its report, failures recorded and the run going on, the time budget, the benchmark added by --finish. Everything is
written under pytest's tmp_path."""
import json
import math
import shutil
import time

import pytest
import torch

from vlpeft import gpucheck

TRAINERS = ["CoOp", "IVLP", "DsRA", "ZeroshotCLIP"]
TINY = ["--tiny", "--device", "cpu"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One intra-op thread: the tiny model's small matmuls are faster so, and much faster on a shared machine (with
    2 threads OpenMP's spin-waiting makes them up to 50x slower under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, _one_thread):
    out = tmp_path_factory.mktemp("gpucheck")
    rc = gpucheck.main(["--out", str(out), *TINY, "--steps", "3", "--trainers", *TRAINERS])
    return rc, out


def _report(out):
    return json.loads((out / "report.json").read_text()), (out / "report.md").read_text()


def test_tiny_run_on_the_cpu_reports_every_check(tiny_run):
    rc, out = tiny_run
    assert rc == 0
    assert (out / "report.md").is_file() and (out / "report.json").is_file() and (out / "gpucheck.log").is_file()
    report, md = _report(out)
    rows = {r["trainer"]: r for r in report["rows"]}
    assert [r["trainer"] for r in report["rows"]] == TRAINERS
    for name, r in rows.items():
        assert r["result"] == "PASS" and r["reasons"] == [] and r["errors"] == [], (name, r)
        assert r["prec_run"] == "fp32"  # PREC fp16 falls back to fp32 without a GPU
        # both sides of "fp16 vs fp32" ran fp32 on the CPU: identical logits
        assert r["top1_agreement"] == 100.0 and r["half_max_diff"] == 0.0 and r["half_rel_diff"] == 0.0, name
        assert r["seconds"] > 0
    for name in ("CoOp", "IVLP", "DsRA"):
        r = rows[name]
        assert r["learnable"] and r["steps"] == 3 and r["losses_finite"] is True, name
        assert math.isfinite(r["first_loss"]) and math.isfinite(r["last_loss"]), name
    assert rows["CoOp"]["batch"] == 32 and rows["DsRA"]["batch"] == 4  # the configs' batch sizes
    # merged vs unmerged: DsRA folds its adapters into the weights; the prompt methods have nothing to merge
    dsra = rows["DsRA"]
    assert isinstance(dsra["merge_max_diff"], float) and dsra["merge_rel_diff"] <= 1e-5
    assert rows["CoOp"]["merge_max_diff"] == "n/a" and rows["IVLP"]["merge_rel_diff"] == "n/a"
    zs = rows["ZeroshotCLIP"]  # inference checks only
    assert zs["learnable"] is False and zs["steps"] == 0 and zs["first_loss"] is None and zs["merge_max_diff"] == "n/a"
    # the report says that half precision did not run
    assert report["half_precision_ran"] is False and report["env"]["device"] == "cpu"
    assert "did NOT run at half precision" in md and "PREC fp16 was requested" in md
    assert "GPU check: PASS" in md and "torch " in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(TRAINERS) and "fp16 vs fp32" in table[0]
    assert any(line.startswith("| DsRA ") and "PASS" in line for line in table)


def test_finish_adds_this_runs_benchmark_to_the_report(tiny_run, tmp_path):
    out = tmp_path / "check"
    shutil.copytree(tiny_run[1], out)
    (out / "bench").mkdir()
    (out / "bench" / "bench.md").write_text("# Benchmark\n\n| trainer | img/s |\n|---|---|\n| CoOp | 123.4 |\n")
    (out / "bench" / "bench.json").write_text('{"CoOp": 123.4}')
    args = ["--out", str(out), "--finish", "--gpucheck-rc", "0", "--bench-rc", "0"]
    assert gpucheck.main([*args, "--since", str(time.time() - 600)]) == 0
    report, md = _report(out)
    assert [r["trainer"] for r in report["rows"]] == TRAINERS  # the check's results are kept
    assert report["bench"]["exit_code"] == 0 and report["bench"]["results"] == {"CoOp": 123.4}
    assert "| CoOp | 123.4 |" in md and "\n### Benchmark\n" in md  # included, its heading one level below ours
    assert "did NOT run at half precision" in md and "GPU check: PASS" in md

    # files older than this run (a previous run's) are not taken for its results
    assert gpucheck.main([*args[:-1], "2", "--since", str(time.time() + 600)]) == 0
    report, md = _report(out)
    assert report["rows"] == [] and "123.4" not in md and "older than this run" in md
    assert "GPU check: FAIL" in md and "FAILED** (exit code 2)" in md


def test_a_trainer_that_fails_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    real_build = gpucheck.build_trainer

    def build(name, trainer_cls, prec, ctx):
        if name == "CoOp":
            raise RuntimeError("boom in CoOp")
        trainer = real_build(name, trainer_cls, prec, ctx)
        if name == "KgCoOp":
            trainer.forward_backward = lambda batch: {"loss": float("nan")}
        return trainer

    monkeypatch.setattr(gpucheck, "build_trainer", build)
    out = tmp_path / "check"
    rc = gpucheck.main(["--out", str(out), *TINY, "--steps", "2", "--trainers", "CoOp", "ZeroshotCLIP", "KgCoOp"])
    assert rc != 0
    report, md = _report(out)
    rows = {r["trainer"]: r for r in report["rows"]}
    assert list(rows) == ["CoOp", "ZeroshotCLIP", "KgCoOp"]
    assert rows["CoOp"]["result"] == "FAIL" and any("RuntimeError: boom in CoOp" in e for e in rows["CoOp"]["reasons"])
    assert rows["ZeroshotCLIP"]["result"] == "PASS"  # the run went on
    kg = rows["KgCoOp"]
    assert kg["result"] == "FAIL" and kg["losses_finite"] is False and kg["steps"] == 1
    assert any("non-finite loss" in r for r in kg["reasons"])
    assert "GPU check: FAIL" in md and "## Failures" in md and "boom in CoOp" in md
    assert "RuntimeError: boom in CoOp" in (out / "gpucheck.log").read_text()  # the traceback


def test_the_budget_stops_adding_trainers_and_lists_the_skipped_ones(tmp_path, monkeypatch):
    def run_trainer(name, trainer_cls, ctx):
        row = gpucheck.new_row(name)
        row.update(learnable=True, prec_run="fp32", seconds=0.01)
        gpucheck.judge(row, ctx.prec)
        return row

    monkeypatch.setattr(gpucheck, "run_trainer", run_trainer)
    out = tmp_path / "check"
    assert gpucheck.main(["--out", str(out), *TINY, "--budget", "1e-9", "--trainers", "CoOp", "IVLP", "DsRA"]) == 0
    report, md = _report(out)
    assert [(r["trainer"], r["result"]) for r in report["rows"]] == [("CoOp", "PASS"), ("IVLP", "SKIPPED"),
                                                                      ("DsRA", "SKIPPED")]
    assert "## Skipped" in md and "--trainers IVLP DsRA" in md


def test_every_registered_trainer_needs_a_config_entry(tmp_path, monkeypatch):
    monkeypatch.delitem(gpucheck.CONFIGS, "DIP")
    with pytest.raises(SystemExit, match="DIP.*vlpeft.bench.BENCH_CONFIGS"):
        gpucheck.main(["--out", str(tmp_path / "check"), *TINY])
    assert not (tmp_path / "check").exists()


def test_an_unknown_trainer_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        gpucheck.main(["--out", str(tmp_path / "check"), *TINY, "--trainers", "CoOpp"])
    assert "unknown trainer(s) CoOpp" in capsys.readouterr().err and not (tmp_path / "check").exists()
