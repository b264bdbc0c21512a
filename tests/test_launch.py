"""vlpeft.launch: the job list of a protocol script (its DRY_RUN=1 output), and the runner on fake jobs (tiny Python
commands that write results.json) on CPU workers. Nothing is written outside pytest's tmp_path."""
import io
import json
import os
import sys
import textwrap

import pytest

from vlpeft import launch
from vlpeft.launch import DEP_FAILED, DONE, FAILED, SKIPPED, Job, LocalRunner

MAPLE_CFG = "MaPLe/vit_b16_c2_ep5_batch4_2ctx"

# A fake job: FAKE OUT_DIR [--fail] [--sleep S]: records its start / end time, CUDA_VISIBLE_DEVICES and each run in
# OUT_DIR/runs.jsonl, prints a few lines, then writes OUT_DIR/results.json (or fails without it).
FAKE_JOB = textwrap.dedent("""
    import json, os, sys, time
    out = sys.argv[1]
    fail = "--fail" in sys.argv
    sleep = float(sys.argv[sys.argv.index("--sleep") + 1]) if "--sleep" in sys.argv else 0.2
    os.makedirs(out, exist_ok=True)
    start = time.time()
    for i in range(30):
        print(f"line {i} of {out}")
    time.sleep(sleep)
    with open(os.path.join(out, "runs.jsonl"), "a") as f:
        f.write(json.dumps(dict(start=start, end=time.time(), gpu=os.environ.get("CUDA_VISIBLE_DEVICES"))) + "\\n")
    if fail:
        print("boom: the job failed here", file=sys.stderr)
        sys.exit(3)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"accuracy": 1.0}, f)
""")


def fake_job(index, out_dir, *extra, deps=()):
    return Job(index, [sys.executable, "-c", FAKE_JOB, str(out_dir), *extra], str(out_dir), cwd=str(out_dir.parent),
               deps=list(deps))


def runs(out_dir):
    path = out_dir / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def run_jobs(jobs, slots=("", "")):
    err = io.StringIO()
    states = LocalRunner(launch.assign_logs(jobs), list(slots), progress=True, out=err).run()
    return states, err.getvalue()


# ------------------------------------------------------------------------------------------------------ job list
def dry_run_jobs(tmp_path, method, *args, **env):
    base = {k: v for k, v in os.environ.items() if k not in ("DATASETS", "SEEDS", "SHOTS_LIST", "LOADEP", "BASE",
                                                              "B2N_CFG", "FS_CFG", "XD_CFG", "CFG")}
    env = dict(base, OUTPUT=str(tmp_path / "out"), DATA=str(tmp_path / "data"), **env)
    return launch.build_jobs(method, args, env)


def test_job_list_is_the_scripts_commands_with_test_jobs_after_their_training(tmp_path):
    out = tmp_path / "out"
    jobs = dry_run_jobs(tmp_path, "maple", "base2new", DATASETS="eurosat dtd", SEEDS="1 2")
    assert len(jobs) == 8
    expected = []
    for ds in ("eurosat", "dtd"):
        for seed in (1, 2):
            expected += [f"{out}/base2new/train_base/{ds}/shots_16/{MAPLE_CFG}/seed{seed}",
                         f"{out}/base2new/test_new/{ds}/shots_16/{MAPLE_CFG}/seed{seed}"]
    assert [j.output_dir for j in jobs] == expected
    assert [j.deps for j in jobs] == [[], [0], [], [2], [], [4], [], [6]]
    for job in jobs:
        assert job.argv[0] == sys.executable and job.argv[1] == "train.py" and not job.finished
        assert job.argv[job.argv.index("--root") + 1] == str(tmp_path / "data")
    test = jobs[1].argv
    assert test[test.index("--model-dir") + 1] == jobs[0].output_dir and "--eval-only" in test
    assert test[test.index("--load-epoch") + 1] == "5"
    assert not out.exists()  # the dry run wrote nothing


def test_two_stage_dependencies_follow_the_folders_named_in_the_arguments(tmp_path):
    jobs = dry_run_jobs(tmp_path, "dpc", "base2new", DATASETS="eurosat", SEEDS="1")
    # backbone train, backbone eval, DPC train (TRAINER.DPC.BACKBONE_DIR = backbone train), DPC eval
    assert [j.deps for j in jobs] == [[], [0], [0], [2]]
    jobs = dry_run_jobs(tmp_path, "maple", "xd", SEEDS="1")
    assert len(jobs) == 11 and [j.deps for j in jobs] == [[]] + [[0]] * 10
    assert jobs[0].output_dir.endswith("/imagenet/MaPLe/vit_b16_c2_ep5_batch4_2ctx_cross_datasets_16shots/seed1")


def test_a_finished_job_is_listed_as_finished_and_its_test_job_still_runs(tmp_path):
    out = tmp_path / "out"
    train = out / f"base2new/train_base/eurosat/shots_16/{MAPLE_CFG}/seed1"
    train.mkdir(parents=True)
    (train / "results.json").write_text("{}")
    jobs = dry_run_jobs(tmp_path, "maple", "base2new", DATASETS="eurosat", SEEDS="1")
    assert [(j.output_dir, j.finished, j.argv == []) for j in jobs] == [
        (str(train), True, True), (str(out / f"base2new/test_new/eurosat/shots_16/{MAPLE_CFG}/seed1"), False, False)]
    assert jobs[1].deps == [0]


def test_dry_run_prints_the_jobs_and_their_dependencies(tmp_path, capsys):
    rc = launch.main(["maple", "base2new", "--datasets", "eurosat", "--seeds", "3", "--output", str(tmp_path / "out"),
                      "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert rc == 0
    assert lines[0] == f"[0] {tmp_path}/out/base2new/train_base/eurosat/shots_16/{MAPLE_CFG}/seed3 (to run)"
    assert lines[2] == f"[1] {tmp_path}/out/base2new/test_new/eurosat/shots_16/{MAPLE_CFG}/seed3 (to run)"
    assert lines[4] == "    after: [0]"
    assert lines[-1] == "2 jobs, 2 to run, 0 finished"
    assert not (tmp_path / "out").exists()


def test_errors_are_one_line_with_exit_status_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DATA", raising=False)
    args = ["--datasets", "eurosat", "--seeds", "1", "--output", str(tmp_path / "out"), "--workers", "1"]
    assert launch.main(["maple", "base2new", *args]) == 2
    assert "DATA is not set" in capsys.readouterr().err
    assert launch.main(["nosuchmethod", "base2new", *args]) == 2
    assert "no script" in capsys.readouterr().err
    assert launch.main(["maple", "b2n", "--data", str(tmp_path), *args]) == 2
    assert "unknown protocol b2n" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------------------- runner
def test_two_workers_run_every_job_two_at_a_time_on_the_cpu(tmp_path):
    dirs = [tmp_path / f"job{i}" for i in range(5)]
    states, err = run_jobs([fake_job(i, d, "--sleep", "0.5") for i, d in enumerate(dirs)])
    assert states == {i: DONE for i in range(5)}
    records = [runs(d) for d in dirs]
    assert all(len(r) == 1 and r[0]["gpu"] == "" for r in records)
    spans = [(r[0]["start"], r[0]["end"]) for r in records]
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most == 2  # two at a time, never three
    for d in dirs:  # each job's output in its own log, the command first
        log = (d / "launch.log").read_text().splitlines()
        assert log[0].startswith(f"# {sys.executable} -c ") and f"line 29 of {d}" in log
    assert "5/5" in err


def test_gpus_run_one_job_per_gpu_at_a_time(tmp_path):
    dirs = [tmp_path / f"job{i}" for i in range(4)]
    states, _ = run_jobs([fake_job(i, d, "--sleep", "0.4") for i, d in enumerate(dirs)], slots=("3", "5"))
    assert set(states.values()) == {DONE}
    records = [runs(d)[0] for d in dirs]
    assert {r["gpu"] for r in records} == {"3", "5"}
    for gpu in ("3", "5"):
        spans = sorted((r["start"], r["end"]) for r in records if r["gpu"] == gpu)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # never two on one GPU


def test_a_failed_job_reports_its_log_tail_and_the_others_finish(tmp_path):
    dirs = [tmp_path / f"job{i}" for i in range(4)]
    jobs = [fake_job(i, d, *(["--fail"] if i == 1 else [])) for i, d in enumerate(dirs)]
    states, err = run_jobs(jobs)
    assert states == {0: DONE, 1: FAILED, 2: DONE, 3: DONE}
    assert f"FAILED [1] {dirs[1]} (exit status 3; log {dirs[1]}/launch.log)" in err
    assert "    boom: the job failed here" in err and f"    line 29 of {dirs[1]}" in err
    assert f"line 0 of {dirs[1]}" not in err  # the tail only
    assert [(d / "results.json").exists() for d in dirs] == [True, False, True, True]
    out = io.StringIO()
    assert launch.summary(jobs, states, out) == 1
    assert out.getvalue().splitlines()[0] == ("4 jobs: 3 done, 0 skipped (finished before), 1 failed, "
                                              "0 not run (failed dependency)")
    assert launch.summary(jobs, {i: DONE for i in range(4)}, io.StringIO()) == 0


def test_a_relaunch_reruns_only_the_jobs_without_results(tmp_path):
    dirs = [tmp_path / f"job{i}" for i in range(3)]
    # first launch: job 1 dies without results.json (as a killed job would)
    states, _ = run_jobs([fake_job(i, d, *(["--fail"] if i == 1 else [])) for i, d in enumerate(dirs)])
    assert states == {0: DONE, 1: FAILED, 2: DONE}
    # a killed run leaves a partial folder (checkpoints) and no results.json: it is re-run, the others are not
    (dirs[1] / "model.pth.tar-1").write_text("partial")
    states, err = run_jobs([fake_job(i, d) for i, d in enumerate(dirs)])
    assert states == {0: SKIPPED, 1: DONE, 2: SKIPPED}
    assert [len(runs(d)) for d in dirs] == [1, 2, 1]
    assert (dirs[1] / "results.json").exists() and "FAILED" not in err


def test_a_job_that_cannot_start_fails_alone(tmp_path):
    bad = Job(0, [str(tmp_path / "no-such-program")], str(tmp_path / "bad"), cwd=str(tmp_path))
    states, err = run_jobs([bad, fake_job(1, tmp_path / "good")])
    assert states == {0: FAILED, 1: DONE}
    assert f"FAILED [0] {tmp_path}/bad: cannot start it" in err
    assert "cannot start" in (tmp_path / "bad" / "launch.log").read_text()


def test_a_test_job_starts_after_its_training_and_is_not_run_when_it_failed(tmp_path):
    train_ok, test_ok, train_bad, test_bad, other = (tmp_path / n for n in ("t1", "e1", "t2", "e2", "x"))
    jobs = [fake_job(0, train_ok, "--sleep", "0.6"), fake_job(1, test_ok, deps=[0]),
            fake_job(2, train_bad, "--fail"), fake_job(3, test_bad, deps=[2]), fake_job(4, other)]
    states, err = run_jobs(jobs)
    assert states == {0: DONE, 1: DONE, 2: FAILED, 3: DEP_FAILED, 4: DONE}
    assert runs(test_ok)[0]["start"] >= runs(train_ok)[0]["end"]
    # with two workers the free one ran job 4 while job 1 waited for job 0
    assert runs(other)[0]["start"] < runs(train_ok)[0]["end"]
    assert runs(test_bad) == [] and not test_bad.exists()
    assert f"NOT RUN [3] {test_bad}: its dependency [2] failed" in err
    out = io.StringIO()
    assert launch.summary(jobs, states, out) == 1 and "1 failed, 1 not run (failed dependency)" in out.getvalue()


def test_log_dir_holds_the_logs_when_given(tmp_path):
    (tmp_path / "a").mkdir()
    job = fake_job(0, tmp_path / "a" / "b")
    launch.assign_logs([job], str(tmp_path / "logs"))
    LocalRunner([job], [""], progress=False, out=io.StringIO()).run()
    assert job.log_path == str(tmp_path / "logs" / (str(tmp_path / "a" / "b").strip("/").replace("/", "__") + ".log"))
    assert "line 29" in open(job.log_path).read() and not (tmp_path / "a" / "b" / "launch.log").exists()


# ------------------------------------------------------------------------------------------ the CLI, end to end
FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys
    args = sys.argv[1:]
    if args[:1] != ["train.py"]:  # the scripts' own uses of PYTHON (python -c ...): the real interpreter
        os.execv(sys.executable, [sys.executable, *args])
    out = args[args.index("--output-dir") + 1]
    if "--model-dir" in args:
        assert os.path.isfile(os.path.join(args[args.index("--model-dir") + 1], "results.json")), "no trained model"
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "calls"), "a") as f:
        f.write(" ".join(args) + "\\n")
    print("fake training", out)
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump({"accuracy": 50.0}, f)
""")


def test_launch_runs_a_protocol_and_a_relaunch_runs_only_what_did_not_finish(tmp_path, monkeypatch, capsys):
    """``python -m vlpeft.launch maple base2new`` with PYTHON a stand-in for train.py: 4 jobs on 2 CPU workers."""
    fake = tmp_path / "fake_train.py"
    fake.write_text(FAKE_TRAIN)
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{fake}" "$@"\n')
    python.chmod(0o755)
    monkeypatch.setenv("PYTHON", str(python))
    out, data = tmp_path / "out", tmp_path / "data"
    argv = ["maple", "base2new", "--datasets", "eurosat", "--seeds", "1", "2", "--data", str(data),
            "--output", str(out), "--workers", "2"]
    assert launch.main(argv) == 0
    dirs = [out / f"base2new/{stage}/eurosat/shots_16/{MAPLE_CFG}/seed{s}" for s in (1, 2)
            for stage in ("train_base", "test_new")]
    assert all((d / "results.json").exists() and (d / "launch.log").exists() for d in dirs)
    assert "fake training" in (dirs[1] / "launch.log").read_text()
    assert [len((d / "calls").read_text().splitlines()) for d in dirs] == [1, 1, 1, 1]
    assert capsys.readouterr().out.splitlines()[-1] == ("4 jobs: 4 done, 0 skipped (finished before), 0 failed, "
                                                        "0 not run (failed dependency)")
    # seed 2's evaluation was killed (no results.json): only it runs again
    (dirs[3] / "results.json").unlink()
    assert launch.main(argv) == 0
    assert [len((d / "calls").read_text().splitlines()) for d in dirs] == [1, 1, 1, 2]
    assert capsys.readouterr().out.splitlines()[-1] == ("4 jobs: 1 done, 3 skipped (finished before), 0 failed, "
                                                        "0 not run (failed dependency)")


# -------------------------------------------------------------------------------------------------------- submitit
def test_submitit_missing_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    rc = launch.main(["maple", "base2new", "--datasets", "eurosat", "--seeds", "1", "--data", str(tmp_path),
                      "--output", str(tmp_path / "out"), "--submitit-local"])
    assert rc == 2 and "pip install submitit" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_waves_put_each_job_after_its_dependencies(tmp_path):
    jobs = [Job(0, ["a"], "t1"), Job(1, ["b"], "e1", deps=[0]), Job(2, ["c"], "t2"), Job(3, ["d"], "e2", deps=[2, 1])]
    assert [[j.index for j in w] for w in launch.waves(jobs)] == [[0, 2], [1], [3]]


def test_submitit_local_runs_the_waves(tmp_path):
    submitit = pytest.importorskip("submitit")
    train_ok, test_ok, train_bad, test_bad, done = (tmp_path / n for n in ("t1", "e1", "t2", "e2", "d"))
    done.mkdir()
    (done / "results.json").write_text("{}")
    jobs = launch.assign_logs([fake_job(0, train_ok), fake_job(1, test_ok, deps=[0]), fake_job(2, train_bad, "--fail"),
                               fake_job(3, test_bad, deps=[2]), fake_job(4, done)])
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    executor.update_parameters(timeout_min=5)
    err = io.StringIO()
    states = launch.run_submitit(jobs, executor, out=err)
    assert states == {0: DONE, 1: DONE, 2: FAILED, 3: DEP_FAILED, 4: SKIPPED}
    assert runs(test_ok)[0]["start"] >= runs(train_ok)[0]["end"]
    assert runs(test_bad) == [] and runs(done) == []
    assert "boom: the job failed here" in err.getvalue()


def test_real_train_py_jobs_with_two_workers_then_results(eurosat_root, tmp_path, monkeypatch, capsys):
    """End to end on the CPU: MaPLe's base-to-new script with its testbed config (the shipped testbed CLIP) on a
    generated EuroSAT, run by the launcher with 2 workers; the evaluation waits for its training; a re-launch runs only
    the job that lost its results.json; python -m vlpeft.results reads the runs back."""
    from vlpeft.results import results

    monkeypatch.setenv("B2N_CFG", "testbed")
    out = tmp_path / "out"
    argv = ["maple", "base2new", "--data", eurosat_root, "--output", str(out), "--datasets", "eurosat", "--seeds", "1",
            "--workers", "2"]
    assert launch.main(argv) == 0
    runs = {stage: out / "base2new" / stage / "eurosat" / "shots_16" / "MaPLe" / "testbed" / "seed1"
            for stage in ("train_base", "test_new")}
    records = {stage: json.load(open(path / "results.json")) for stage, path in runs.items()}
    assert records["test_new"]["eval_only"] and records["test_new"]["load_epoch"] == 10
    assert (runs["train_base"] / "launch.log").read_text().count("Finish training") == 1
    (runs["test_new"] / "results.json").unlink()
    capsys.readouterr()
    assert launch.main(argv) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out
    table = next(t for t in results(str(out), seeds=[1], datasets=["eurosat"]).tables if t.trainer == "MaPLe")
    cells = table.row("eurosat").cells
    new = json.load(open(runs["test_new"] / "results.json"))["accuracy"]
    assert cells["base"][0] == pytest.approx(records["train_base"]["accuracy"]) and cells["new"][0] == pytest.approx(new)
