"""The protocol scripts (scripts/**/*.sh) in dry runs: every variable of scripts/common.sh is honoured, nothing is
trained, and nothing is written outside pytest's tmp_path (the repository's output/ in particular is never touched)."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(str(p.relative_to(REPO / "scripts")) for p in (REPO / "scripts").rglob("*.sh")
                 if p.name != "common.sh")
XD = {"caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft", "sun397", "dtd",
      "eurosat", "ucf101"}
DG = {"imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"}
EUROSAT = {"eurosat"}
PROTOCOL_SCRIPTS = ["dip", "dipmaple", "dsra", "ivlp", "kgcoop", "maple", "prograd", "promptsrc"]
# script -> [(arguments, number of commands printed with DATASETS=eurosat SEEDS=1, datasets they name)]
CASES = {
    "cocoop/base2new_all.sh": [((), 2, EUROSAT)],
    "cocoop/base2new_test.sh": [(("eurosat", "1"), 1, EUROSAT)],
    "cocoop/base2new_train.sh": [(("eurosat", "1"), 1, EUROSAT)],
    "cocoop/xd_all.sh": [((), 1 + len(XD) + len(DG), {"imagenet"} | XD | DG)],
    "cocoop/xd_test.sh": [(("eurosat", "1"), 1, EUROSAT)],
    "cocoop/xd_train.sh": [(("1",), 1, {"imagenet"})],
    "coop/base2new.sh": [((), 2, EUROSAT)],
    "coop/eval.sh": [(("eurosat", "vit_b16_ep50"), 1, EUROSAT)],
    "coop/fewshot_all.sh": [((), 5, EUROSAT)],
    "coop/main.sh": [(("eurosat", "vit_b16_ep50", "end", "16", "1", "False"), 1, EUROSAT)],
    "dip/sweep.sh": [((), 1, EUROSAT), (("DIPMaPLe",), 1, EUROSAT)],
    "gpu_check.sh": [((), 3, set())],  # vlpeft.gpucheck, vlpeft.bench, vlpeft.gpucheck --finish
    "testbed/run.sh": [(("--protocols", "b2n", "--trainers", "ZeroshotCLIP", "CoOp"), 1, set())],
    "zsclip/zeroshot.sh": [(("eurosat", "vit_b16"), 1, EUROSAT)],
    **{f"{name}/run.sh": [(("base2new",), 2, EUROSAT), (("fewshot",), 5, EUROSAT),
                          (("xd",), 1 + len(XD), {"imagenet"} | XD), (("dg",), 1 + len(DG), {"imagenet"} | DG)]
       for name in PROTOCOL_SCRIPTS},
}
NO_DATA = ("testbed/run.sh", "gpu_check.sh")  # the testbed generates its own datasets, the GPU check reads none
NEEDS_DATA = [s for s in SCRIPTS if s not in NO_DATA]
PROGRAMS = ("train.py", "vlpeft.sweep", "vlpeft.testbed.accuracy", "vlpeft.gpucheck", "vlpeft.bench")


def test_every_script_has_representative_arguments():
    assert sorted(CASES) == SCRIPTS


def repo_state():
    """What a script could write into the repository: the untracked and ignored paths of ``git status --porcelain
    --ignored`` and the files of output/ (ignored as a whole by git). Changes to tracked files are left out: others
    edit this working tree while the tests run, and a script that writes adds paths, which show up as ?? or !!."""
    status = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True, text=True,
                            check=True).stdout
    status = sorted(line for line in status.splitlines() if line[:2] in ("??", "!!"))
    output = sorted(str(p) for p in (REPO / "output").rglob("*")) if (REPO / "output").exists() else []
    return status, output


def fake_python(tmp_path, real=True):
    """A PYTHON that logs its first argument to tmp_path/python_calls, then runs the real interpreter (or fails)."""
    path = tmp_path / "bin" / "python"
    path.parent.mkdir()
    run = f'exec "{sys.executable}" "$@"' if real else "exit 1"
    path.write_text(f'#!/bin/sh\necho "$1" >> "{tmp_path}/python_calls"\n{run}\n')
    path.chmod(0o755)
    return path


def run_script(script, args, tmp_path, python, **env):
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATA", "OUTPUT", "DATASETS", "SEEDS", "SHOTS_LIST", "DRY_RUN", "PYTHON", "LOADEP", "CFG")}
    env = {k: v for k, v in dict(base, PYTHON=str(python), **env).items() if v is not None}
    return subprocess.run(["bash", str(REPO / "scripts" / script), *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


def commands(stdout, python):
    return [shlex.split(line) for line in stdout.splitlines() if line.split(" ", 1)[0] == str(python)]


def values(tokens, option):
    """The values following OPTION (up to the next --option) at each of its occurrences."""
    found = []
    for i, token in enumerate(tokens):
        if token == option:
            j = i + 1
            while j < len(tokens) and not tokens[j].startswith("--"):
                found.append(tokens[j])
                j += 1
    return found


@pytest.mark.parametrize("script, args, n_commands, datasets",
                         [(s, *case) for s in SCRIPTS for case in CASES.get(s, [((), 0, set())])])
def test_dry_run_prints_only_the_selected_jobs_below_output_and_trains_nothing(tmp_path, script, args, n_commands,
                                                                               datasets):
    python, out, data = fake_python(tmp_path), tmp_path / "out", tmp_path / "data"
    before = repo_state()
    proc = run_script(script, args, tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1", OUTPUT=str(out),
                      DATA=str(data))
    assert repo_state() == before
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc.stdout, python)
    assert len(cmds) == n_commands, proc.stdout
    named = set()
    for tokens in cmds:
        program = "train.py" if tokens[1] == "train.py" else tokens[2]
        assert program in PROGRAMS, tokens
        dirs = [d for option in ("--output-dir", "--model-dir", "--output", "--out") for d in values(tokens, option)]
        assert dirs and all(d.startswith(f"{out}/") for d in dirs), tokens
        if script not in NO_DATA:
            assert values(tokens, "--root") == [str(data)], tokens
        seeds = values(tokens, "--seed") + values(tokens, "--seeds")
        # zero-shot has no seed; the GPU check's is fixed (random weights and images)
        assert set(seeds) <= {"1"} and (seeds or script in ("zsclip/zeroshot.sh", "gpu_check.sh")), tokens
        named |= {m.group(1) for t in tokens for m in [re.fullmatch(r"configs/datasets/(\w+)\.yaml", t)] if m}
    assert named == datasets
    # nothing ran but the MAX_EPOCH reader (python -c), and nothing was written
    calls = (tmp_path / "python_calls").read_text().split() if (tmp_path / "python_calls").exists() else []
    assert set(calls) <= {"-c"}
    created = {p.name for p in tmp_path.rglob("*")}  # no out/, no data/, no results.json or log.txt anywhere
    assert created == {"bin", "python"} | ({"python_calls"} if calls else set())


@pytest.mark.parametrize("dry_run", [None, "0"])
@pytest.mark.parametrize("script", NEEDS_DATA)
def test_without_data_a_script_stops_at_once_naming_data(tmp_path, script, dry_run):
    python, out = fake_python(tmp_path, real=False), tmp_path / "out"
    args = CASES[script][0][0]
    proc = run_script(script, args, tmp_path, python, DRY_RUN=dry_run, DATASETS="eurosat", SEEDS="1", OUTPUT=str(out))
    assert proc.returncode != 0
    assert proc.stdout == "" and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "DATA=/path/to/datasets bash scripts/" in proc.stderr and script in proc.stderr
    assert not (tmp_path / "python_calls").exists() and not out.exists()


def test_dry_run_without_data_prints_a_data_placeholder(tmp_path):
    python = fake_python(tmp_path)
    proc = run_script("ivlp/run.sh", ["base2new"], tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1",
                      OUTPUT=str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith(f"{python} train.py")]
    assert len(lines) == 2 and all(f'{python} train.py --root "$DATA" --output-dir {tmp_path}/out/' in line
                                   for line in lines)


def test_unknown_dataset_is_an_error_at_once(tmp_path):
    python = fake_python(tmp_path, real=False)
    proc = run_script("ivlp/run.sh", ["base2new"], tmp_path, python, DRY_RUN="1", DATASETS="eurosat eurosta",
                      SEEDS="1", OUTPUT=str(tmp_path / "out"), DATA=str(tmp_path))
    assert proc.returncode != 0 and proc.stdout == "" and "eurosta" in proc.stderr


@pytest.mark.parametrize("script, args", [("coop/fewshot_all.sh", []), ("ivlp/run.sh", ["fewshot"]),
                                          ("testbed/run.sh", [])])
def test_shots_list_and_seeds_select_the_few_shot_jobs(tmp_path, script, args):
    python = fake_python(tmp_path)
    proc = run_script(script, args, tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1 3", SHOTS_LIST="2 16",
                      OUTPUT=str(tmp_path / "out"), DATA=str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    cmds = commands(proc.stdout, python)
    if script == "testbed/run.sh":
        assert [values(c, "--shots") + values(c, "--seeds") for c in cmds] == [["2", "16", "1", "3"]]
    else:
        jobs = [(c[c.index("DATASET.NUM_SHOTS") + 1], c[c.index("--seed") + 1]) for c in cmds]
        assert jobs == [("2", "1"), ("2", "3"), ("16", "1"), ("16", "3")]


def test_default_output_root_is_the_repository_output_folder(tmp_path):
    """OUTPUT unset: CoOp's scheme below output/ (relative to the repository root), as before OUTPUT existed."""
    python = fake_python(tmp_path)
    proc = run_script("ivlp/run.sh", ["base2new"], tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1",
                      DATA=str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]  # "Run this job and save the output to DIR" or "Results are available in DIR"
    assert re.search(r" output/base2new/train_base/eurosat/shots_16/IVLP/vit_b16_c2_ep20_batch4_4\+4ctx/seed1\b", first)
