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
    # backbone train + eval, DPC train + eval (no fewshot: not a DPC protocol)
    "dpc/run.sh": [(("base2new",), 4, EUROSAT), (("xd",), 2 + 2 * len(XD), {"imagenet"} | XD),
                   (("dg",), 2 + 2 * len(DG), {"imagenet"} | DG)],
    # search then DPL training (fewshot: 16 shots only by default); base2new adds DPL's new-class evaluation
    "dpl/run.sh": [(("fewshot",), 2, EUROSAT), (("base2new",), 3, EUROSAT)],
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
            if k not in ("DATA", "OUTPUT", "DATASETS", "SEEDS", "SHOTS_LIST", "DRY_RUN", "PYTHON", "LOADEP", "CFG",
                         "BASE", "BACKBONE_CFG", "DPC_CFG", "SEARCH_SEED", "SEARCH_CFG", "TRAIN_CFG")}
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


# ---- scripts/dpc/run.sh: the backbone, then DPC on top of it (TRAINER.DPC.BACKBONE_DIR), each evaluated
DPC_CONFIGS = {"CoOp": ("vit_b16_ep20_lr35", "coop_vit_b16_ep20_bs4_top8"),  # BASE -> (backbone cfg, DPC cfg)
               "MaPLe": ("vit_b16_c2_ep20_batch32_2ctx", "maple_vit_b16_c2_ep20_bs4_top8"),
               "PromptSRC": ("vit_b16_c2_ep20_batch32_4+4ctx", "promptsrc_vit_b16_c2_ep20_bs4_top8")}
XD_ORDER = ["caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft", "sun397", "dtd",
            "eurosat", "ucf101"]
DG_ORDER = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]


def option(tokens, name):
    """The single token following NAME (None when absent)."""
    found = [tokens[i + 1] for i, t in enumerate(tokens) if t == name]
    assert len(found) <= 1, tokens
    return found[0] if found else None


def job(tokens):
    """A printed train.py command as the facts the DPC tests check."""
    dataset = re.fullmatch(r"configs/datasets/(\w+)\.yaml", option(tokens, "--dataset-config-file")).group(1)
    return dict(trainer=option(tokens, "--trainer"), out=option(tokens, "--output-dir"),
                config=option(tokens, "--config-file"), dataset=dataset, seed=option(tokens, "--seed"),
                model_dir=option(tokens, "--model-dir"), epoch=option(tokens, "--load-epoch"),
                eval_only="--eval-only" in tokens, sub=option(tokens, "DATASET.SUBSAMPLE_CLASSES"),
                shots=option(tokens, "DATASET.NUM_SHOTS"), backbone_dir=option(tokens, "TRAINER.DPC.BACKBONE_DIR"))


def expected_dpc_jobs(out, base, bb, dpc, protocol, datasets, seeds, bb_ep, dpc_ep):
    """The jobs of scripts/dpc/run.sh in order, written out from the output-folder scheme of scripts/common.sh."""
    bb_config, dpc_config = f"configs/trainers/{base}/{bb}.yaml", f"configs/trainers/DPC/{dpc}.yaml"
    jobs = []
    if protocol == "base2new":
        for ds in datasets:
            for s in seeds:
                bb_dir = f"{out}/base2new/train_base/{ds}/shots_16/{base}/{bb}/seed{s}"
                dpc_dir = f"{out}/base2new/train_base/{ds}/shots_16/DPC/{dpc}/seed{s}"
                common = dict(dataset=ds, seed=s, shots="16", backbone_dir=None)
                jobs += [dict(common, trainer=base, out=bb_dir, config=bb_config, model_dir=None, epoch=None,
                              eval_only=False, sub="base"),
                         dict(common, trainer=base, out=f"{out}/base2new/test_new/{ds}/shots_16/{base}/{bb}/seed{s}",
                              config=bb_config, model_dir=bb_dir, epoch=bb_ep, eval_only=True, sub="new"),
                         dict(common, trainer="DPC", out=dpc_dir, config=dpc_config, model_dir=None, epoch=None,
                              eval_only=False, sub="base", backbone_dir=bb_dir),
                         dict(common, trainer="DPC", out=f"{out}/base2new/test_new/{ds}/shots_16/DPC/{dpc}/seed{s}",
                              config=dpc_config, model_dir=dpc_dir, epoch=dpc_ep, eval_only=True, sub="new")]
    else:
        targets = XD_ORDER if protocol == "xd" else DG_ORDER
        for s in seeds:
            for trainer, cfg, config, backbone_dir, epoch in (
                    (base, bb, bb_config, None, bb_ep),
                    ("DPC", dpc, dpc_config, f"{out}/imagenet/{base}/{bb}_16shots/seed{s}", dpc_ep)):
                train_dir = f"{out}/imagenet/{trainer}/{cfg}_16shots/seed{s}"
                jobs.append(dict(trainer=trainer, out=train_dir, config=config, dataset="imagenet", seed=s,
                                 model_dir=None, epoch=None, eval_only=False, sub=None, shots="16",
                                 backbone_dir=backbone_dir))
                jobs += [dict(trainer=trainer, out=f"{out}/evaluation/{trainer}/{cfg}_16shots/{t}/seed{s}",
                              config=config, dataset=t, seed=s, model_dir=train_dir, epoch=epoch, eval_only=True,
                              sub=None, shots=None, backbone_dir=None) for t in targets]
    return jobs


def two_stage_dry_run(tmp_path, script, protocol, parse, **env):
    """``DRY_RUN=1`` of ``script`` on eurosat and dtd, seeds 1 and 3: (output root, the parsed jobs in order)."""
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script(script, [protocol], tmp_path, python, DRY_RUN="1", DATASETS="eurosat dtd", SEEDS="1 3",
                      OUTPUT=str(out), DATA=str(tmp_path / "data"), **env)
    assert proc.returncode == 0, proc.stderr
    return out, [parse(tokens) for tokens in commands(proc.stdout, python)]


def max_epoch(config):
    import yaml
    return str(yaml.safe_load((REPO / config).read_text())["OPTIM"]["MAX_EPOCH"])


@pytest.mark.parametrize("protocol", ["base2new", "xd", "dg"])
@pytest.mark.parametrize("base", sorted(DPC_CONFIGS))
def test_dpc_trains_on_the_backbone_it_just_trained_and_evaluates_its_own_folder(tmp_path, base, protocol):
    out, jobs = two_stage_dry_run(tmp_path, "dpc/run.sh", protocol, job, BASE=base)
    bb, dpc = DPC_CONFIGS[base]
    bb_ep = max_epoch(f"configs/trainers/{base}/{bb}.yaml")
    dpc_ep = max_epoch(f"configs/trainers/DPC/{dpc}.yaml")
    assert jobs == expected_dpc_jobs(out, base, bb, dpc, protocol, ["eurosat", "dtd"], ["1", "3"], bb_ep, dpc_ep)
    # the same, spelled out: each DPC training follows the training of the backbone it names (same dataset and
    # seed), and each DPC evaluation loads that DPC training folder
    trains = [j for j in jobs if not j["eval_only"]]
    for i, j in enumerate(jobs):
        if j["trainer"] == "DPC" and not j["eval_only"]:
            [backbone] = [k for k, b in enumerate(jobs) if b["out"] == j["backbone_dir"]]
            assert backbone < i and jobs[backbone]["trainer"] == base and not jobs[backbone]["eval_only"]
            assert (jobs[backbone]["dataset"], jobs[backbone]["seed"], jobs[backbone]["sub"], jobs[backbone]["shots"]) \
                == (j["dataset"], j["seed"], j["sub"], j["shots"])
        if j["trainer"] == "DPC" and j["eval_only"]:
            assert j["model_dir"] in [t["out"] for t in trains if t["trainer"] == "DPC" and t["seed"] == j["seed"]]
            assert j["backbone_dir"] is None  # the DPC checkpoint holds the backbone prompts
    assert {j["seed"] for j in jobs} == {"1", "3"}
    assert {j["dataset"] for j in trains} == ({"eurosat", "dtd"} if protocol == "base2new" else {"imagenet"})


def dry_run_after_a_finished_first_stage(tmp_path, script, protocol, first_stage, parse):
    """``DRY_RUN=1`` of ``script`` on eurosat, seed 1, after the first-stage job ``OUTPUT/<first_stage>`` finished
    (its results.json exists): (that folder, the parsed jobs), checking that the first stage is reported skipped."""
    python, out = fake_python(tmp_path), tmp_path / "out"
    finished = out / first_stage
    finished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")
    proc = run_script(script, [protocol], tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1",
                      OUTPUT=str(out), DATA=str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"Results are available in {finished} (results.json). Skip this job"
    return finished, [parse(tokens) for tokens in commands(proc.stdout, python)]


def test_dpc_skips_a_finished_backbone_and_still_builds_on_it(tmp_path):
    bb_dir, jobs = dry_run_after_a_finished_first_stage(
        tmp_path, "dpc/run.sh", "base2new", "base2new/train_base/eurosat/shots_16/CoOp/vit_b16_ep20_lr35/seed1", job)
    assert [(j["trainer"], j["eval_only"]) for j in jobs] == [("CoOp", True), ("DPC", False), ("DPC", True)]
    assert jobs[0]["model_dir"] == jobs[1]["backbone_dir"] == str(bb_dir)


def test_dpc_config_overrides_and_loadep(tmp_path):
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script("dpc/run.sh", ["dg"], tmp_path, python, DRY_RUN="1", SEEDS="2", OUTPUT=str(out),
                      DATA=str(tmp_path / "data"), BASE="CoOp", BACKBONE_CFG="vit_b16_ep50", DPC_CFG=DPC_CONFIGS["CoOp"][1],
                      LOADEP="7")
    assert proc.returncode == 0, proc.stderr
    jobs = [job(tokens) for tokens in commands(proc.stdout, python)]
    assert jobs == expected_dpc_jobs(out, "CoOp", "vit_b16_ep50", DPC_CONFIGS["CoOp"][1], "dg", [], ["2"], "7", "7")


DPC_REFUSALS = [
    (["fewshot"], {}, "fewshot is not a DPC protocol"),
    (["b2n"], {}, "unknown protocol 'b2n'"),
    ([], {}, "no protocol"),
    (["base2new"], {"BASE": "IVLP"}, "BASE must be CoOp, MaPLe or PromptSRC, got 'IVLP'"),
    (["xd"], {"DPC_CFG": "nonexistent"}, "no config configs/trainers/DPC/nonexistent.yaml"),
    (["xd"], {"BACKBONE_CFG": "nonexistent", "BASE": "MaPLe"}, "no config configs/trainers/MaPLe/nonexistent.yaml"),
    (["dg"], {"BASE": "MaPLe", "DPC_CFG": "coop_vit_b16_ep20_bs4_top8"}, "is DPC on CoOp (TRAINER.DPC.BASE), but BASE "
                                                                         "is MaPLe"),
]


# ---- scripts/dpl/run.sh: DPL's search (DPLSearch), then DPL trained on the found lengths (TRAINER.DPL.SEARCH_DIR)
DPL_CFG = "vit_b16_fewshot"  # the default SEARCH_CFG and TRAIN_CFG


def dpl_job(tokens):
    return dict(job(tokens), search_dir=option(tokens, "TRAINER.DPL.SEARCH_DIR"))


def expected_dpl_jobs(out, protocol, datasets, seeds, search_seed=None, shots_list=("16",), search=DPL_CFG,
                      train=DPL_CFG, epoch=None):
    """The jobs of scripts/dpl/run.sh in order, written out from the output-folder scheme of scripts/common.sh."""
    search_config, train_config = f"configs/trainers/DPLSearch/{search}.yaml", f"configs/trainers/DPL/{train}.yaml"
    blank = dict(model_dir=None, epoch=None, eval_only=False, backbone_dir=None, search_dir=None)
    jobs = []
    for ds in datasets:
        if protocol == "fewshot":
            for k in shots_list:
                def search_job(s):
                    return dict(blank, trainer="DPLSearch", out=f"{out}/{ds}/DPLSearch/{search}_{k}shots/seed{s}",
                                config=search_config, dataset=ds, seed=s, sub=None, shots=k)
                if search_seed:
                    jobs.append(search_job(search_seed))
                for s in seeds:
                    if not search_seed:
                        jobs.append(search_job(s))
                    jobs.append(dict(blank, trainer="DPL", out=f"{out}/{ds}/DPL/{train}_{k}shots/seed{s}",
                                     config=train_config, dataset=ds, seed=s, sub=None, shots=k,
                                     search_dir=f"{out}/{ds}/DPLSearch/{search}_{k}shots/seed{search_seed or s}"))
        else:
            def search_job(s):
                return dict(blank, trainer="DPLSearch", config=search_config, dataset=ds, seed=s, sub="base",
                            shots="16", out=f"{out}/base2new/train_base/{ds}/shots_16/DPLSearch/{search}/seed{s}")
            if search_seed:
                jobs.append(search_job(search_seed))
            for s in seeds:
                if not search_seed:
                    jobs.append(search_job(s))
                search_dir = f"{out}/base2new/train_base/{ds}/shots_16/DPLSearch/{search}/seed{search_seed or s}"
                train_dir = f"{out}/base2new/train_base/{ds}/shots_16/DPL/{train}/seed{s}"
                common = dict(blank, trainer="DPL", config=train_config, dataset=ds, seed=s, shots="16",
                              search_dir=search_dir)
                jobs += [dict(common, out=train_dir, sub="base"),
                         dict(common, out=f"{out}/base2new/test_new/{ds}/shots_16/DPL/{train}/seed{s}", sub="new",
                              model_dir=train_dir, epoch=epoch or max_epoch(train_config), eval_only=True)]
    return jobs


def check_dpl_order(jobs):
    """Spelled out: every DPL job names a search that ran earlier with the same dataset, classes and shots (and its
    seed, or SEARCH_SEED), and every evaluation loads a DPL training folder of its dataset and seed."""
    for i, j in enumerate(jobs):
        if j["trainer"] != "DPL":
            assert j["search_dir"] is None and not j["eval_only"]
            continue
        [k] = [k for k, s in enumerate(jobs) if s["out"] == j["search_dir"]]
        search = jobs[k]
        assert k < i and search["trainer"] == "DPLSearch" and not search["eval_only"]
        classes = "base" if j["sub"] else None  # base2new: searched and trained on the base classes
        assert (search["dataset"], search["shots"], search["sub"]) == (j["dataset"], j["shots"], classes)
        if j["eval_only"]:
            [t] = [t for t in jobs[:i] if t["out"] == j["model_dir"]]
            assert (t["trainer"], t["eval_only"], t["dataset"], t["seed"], t["sub"]) == ("DPL", False, j["dataset"],
                                                                                        j["seed"], "base")
            assert t["search_dir"] == j["search_dir"]  # the evaluation rebuilds the same lengths


@pytest.mark.parametrize("search_seed", [None, "2"])
@pytest.mark.parametrize("protocol", ["fewshot", "base2new"])
def test_dpl_trains_on_the_search_it_just_ran(tmp_path, protocol, search_seed):
    out, jobs = two_stage_dry_run(tmp_path, "dpl/run.sh", protocol, dpl_job, SEARCH_SEED=search_seed)
    assert jobs == expected_dpl_jobs(out, protocol, ["eurosat", "dtd"], ["1", "3"], search_seed)
    check_dpl_order(jobs)
    searches = [j for j in jobs if j["trainer"] == "DPLSearch"]
    assert [(j["dataset"], j["seed"]) for j in searches] == (
        [("eurosat", "1"), ("eurosat", "3"), ("dtd", "1"), ("dtd", "3")] if not search_seed
        else [("eurosat", "2"), ("dtd", "2")])
    if protocol == "fewshot":  # all classes, 16 shots (not common.sh's 1 2 4 8 16), no evaluation job
        assert {(j["sub"], j["shots"], j["eval_only"]) for j in jobs} == {(None, "16", False)}
    else:
        assert [j["trainer"] for j in jobs if j["eval_only"]] == ["DPL"] * 4
        assert {j["sub"] for j in jobs if not j["eval_only"]} == {"base"}


@pytest.mark.parametrize("protocol", ["fewshot", "base2new"])
def test_dpl_search_seed_gives_one_search_per_dataset_used_by_every_seed(tmp_path, protocol):
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script("dpl/run.sh", [protocol], tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1 2",
                      OUTPUT=str(out), DATA=str(tmp_path / "data"), SEARCH_SEED="1")
    assert proc.returncode == 0, proc.stderr
    jobs = [dpl_job(tokens) for tokens in commands(proc.stdout, python)]
    [search] = [j for j in jobs if j["trainer"] == "DPLSearch"]
    assert jobs[0] == search and search["seed"] == "1"
    trains = [j for j in jobs if j["trainer"] == "DPL" and not j["eval_only"]]
    assert [j["seed"] for j in trains] == ["1", "2"]
    assert {j["search_dir"] for j in jobs if j["trainer"] == "DPL"} == {search["out"]}
    assert len({j["out"] for j in trains}) == 2
    assert jobs == expected_dpl_jobs(out, protocol, ["eurosat"], ["1", "2"], "1")


def test_dpl_fewshot_honours_shots_list(tmp_path):
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script("dpl/run.sh", ["fewshot"], tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1 3",
                      SHOTS_LIST="4 16", OUTPUT=str(out), DATA=str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    jobs = [dpl_job(tokens) for tokens in commands(proc.stdout, python)]
    assert jobs == expected_dpl_jobs(out, "fewshot", ["eurosat"], ["1", "3"], shots_list=("4", "16"))
    check_dpl_order(jobs)


def test_dpl_skips_a_finished_search_and_still_trains_on_it(tmp_path):
    search_dir, [train] = dry_run_after_a_finished_first_stage(
        tmp_path, "dpl/run.sh", "fewshot", f"eurosat/DPLSearch/{DPL_CFG}_16shots/seed1", dpl_job)
    assert train["trainer"] == "DPL" and train["search_dir"] == str(search_dir)


def test_dpl_config_overrides_and_loadep(tmp_path):
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script("dpl/run.sh", ["base2new"], tmp_path, python, DRY_RUN="1", DATASETS="dtd", SEEDS="2",
                      OUTPUT=str(out), DATA=str(tmp_path / "data"), SEARCH_CFG="testbed", TRAIN_CFG="testbed",
                      LOADEP="7")
    assert proc.returncode == 0, proc.stderr
    jobs = [dpl_job(tokens) for tokens in commands(proc.stdout, python)]
    assert jobs == expected_dpl_jobs(out, "base2new", ["dtd"], ["2"], search="testbed", train="testbed", epoch="7")


DPL_REFUSALS = [
    (["xd"], {}, "xd is not a DPL protocol"),
    (["dg"], {}, "dg is not a DPL protocol"),
    (["b2n"], {}, "unknown protocol 'b2n'"),
    ([], {}, "no protocol"),
    (["fewshot"], {"SEARCH_CFG": "nonexistent"}, "no config configs/trainers/DPLSearch/nonexistent.yaml"),
    (["base2new"], {"TRAIN_CFG": "nonexistent"}, "no config configs/trainers/DPL/nonexistent.yaml"),
    (["fewshot"], {"SEARCH_SEED": "one"}, "SEARCH_SEED must be a seed"),
]


@pytest.mark.parametrize("script, args, env, message", [("dpc/run.sh", *r) for r in DPC_REFUSALS]
                         + [("dpl/run.sh", *r) for r in DPL_REFUSALS])
def test_two_stage_scripts_refuse_what_they_cannot_run_with_exit_2(tmp_path, script, args, env, message):
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script(script, args, tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1",
                      OUTPUT=str(out), DATA=str(tmp_path / "data"), **env)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert not out.exists()