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
    # MaPLe's protocols, plus the Table 3 ablation: 4 rows x (base train + new-class evaluation)
    "dpdlora/run.sh": [(("base2new",), 2, EUROSAT), (("fewshot",), 5, EUROSAT),
                       (("xd",), 1 + len(XD), {"imagenet"} | XD), (("dg",), 1 + len(DG), {"imagenet"} | DG),
                       (("ablation",), 8, EUROSAT)],
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
                         "BASE", "BACKBONE_CFG", "DPC_CFG", "SEARCH_SEED", "SEARCH_CFG", "TRAIN_CFG", "B2N_CFG",
                         "FS_CFG", "XD_CFG", "ROW", "TEACHER_DIR", "TEACHER_CFG")}
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


# ---- scripts/dpdlora/run.sh: MaPLe's protocols with DPD-LoRA's configs (the stage-1 teacher is trained inside each
# training job), the Table 3 ablation rows, and TEACHER_DIR (a teacher read from an earlier run)
DPDLORA_CFG = {"base2new": "vit_b16_c2_ep20_batch4_2ctx", "ablation": "vit_b16_c2_ep20_batch4_2ctx",
               "fewshot": "vit_b16_c2_ep50_batch4_2ctx_few_shot", "xd": "vit_b16_c2_ep2_batch4_2ctx_cross_datasets",
               "dg": "vit_b16_c2_ep2_batch4_2ctx_cross_datasets"}
DPDLORA_ROWS = {  # Table 3, in its order: the row's TRAINER.DPDLORA switches
    "lorss": "TRAINER.DPDLORA.INTERACTION False TRAINER.DPDLORA.GATE False TRAINER.DPDLORA.KL_WEIGHT 0.0 "
             "TRAINER.DPDLORA.ORTH_WEIGHT 0.0 TRAINER.DPDLORA.TEXT_LOSS_WEIGHT 0.0".split(),
    "interaction": "TRAINER.DPDLORA.GATE False TRAINER.DPDLORA.KL_WEIGHT 0.0 TRAINER.DPDLORA.ORTH_WEIGHT 0.0 "
                   "TRAINER.DPDLORA.TEXT_LOSS_WEIGHT 0.0".split(),
    "scl": ["TRAINER.DPDLORA.GATE", "False"],
    "pcgm": [],
}
DPDLORA_TEACHER_ROWS = ("scl", "pcgm")  # the rows with a KL term (the others train no teacher: TEACHER_DIR not passed)


def dpdlora_job(tokens):
    """job() plus the TEACHER_DIR passed and the other TRAINER.DPDLORA options, in order."""
    keys = [i for i, t in enumerate(tokens) if t.startswith("TRAINER.DPDLORA.") and t != "TRAINER.DPDLORA.TEACHER_DIR"]
    opts = [t for i in keys for t in tokens[i:i + 2]]
    return dict(job(tokens), teacher_dir=option(tokens, "TRAINER.DPDLORA.TEACHER_DIR"), opts=opts)


def expected_dpdlora_jobs(out, protocol, datasets, seeds, shots_list=("1", "2", "4", "8", "16"),
                          rows=tuple(DPDLORA_ROWS), cfg=None, epoch=None, teacher=None, teacher_cfg=None):
    """The jobs of scripts/dpdlora/run.sh in order, written out from the output-folder scheme of scripts/common.sh
    (MaPLe's protocols) and the script's header (the ablation rows' folders, the teacher folders)."""
    cfg = cfg or DPDLORA_CFG[protocol]
    config = f"configs/trainers/DPDLoRA/{cfg}.yaml"
    epoch, teacher_cfg = epoch or max_epoch(config), teacher_cfg or cfg
    blank = dict(trainer="DPDLoRA", config=config, model_dir=None, epoch=None, eval_only=False, backbone_dir=None,
                 teacher_dir=None, opts=[])
    jobs = []

    def b2n(folder, ds, s, opts, with_teacher):
        train_dir = f"{out}/base2new/train_base/{ds}/shots_16/{folder}/{cfg}/seed{s}"
        common = dict(blank, dataset=ds, seed=s, shots="16", opts=opts)
        teacher_dir = (f"{teacher}/base2new/train_base/{ds}/shots_16/DPDLoRA/{teacher_cfg}/seed{s}"
                       if teacher and with_teacher else None)
        return [dict(common, out=train_dir, sub="base", teacher_dir=teacher_dir),
                dict(common, out=f"{out}/base2new/test_new/{ds}/shots_16/{folder}/{cfg}/seed{s}", sub="new",
                     model_dir=train_dir, epoch=epoch, eval_only=True)]

    if protocol == "base2new":
        jobs = [j for ds in datasets for s in seeds for j in b2n("DPDLoRA", ds, s, [], True)]
    elif protocol == "ablation":
        jobs = [j for row in rows for ds in datasets for s in seeds
                for j in b2n(f"DPDLoRA_ablation_{row}", ds, s, DPDLORA_ROWS[row], row in DPDLORA_TEACHER_ROWS)]
    elif protocol == "fewshot":
        jobs = [dict(blank, out=f"{out}/{ds}/DPDLoRA/{cfg}_{k}shots/seed{s}", dataset=ds, seed=s, sub=None, shots=k,
                     teacher_dir=f"{teacher}/{ds}/DPDLoRA/{teacher_cfg}_{k}shots/seed{s}" if teacher else None)
                for ds in datasets for k in shots_list for s in seeds]
    else:
        for s in seeds:
            train_dir = f"{out}/imagenet/DPDLoRA/{cfg}_16shots/seed{s}"
            jobs.append(dict(blank, out=train_dir, dataset="imagenet", seed=s, sub=None, shots="16"))
            jobs += [dict(blank, out=f"{out}/evaluation/DPDLoRA/{cfg}_16shots/{t}/seed{s}", dataset=t, seed=s,
                          sub=None, shots=None, model_dir=train_dir, epoch=epoch, eval_only=True)
                     for t in (XD_ORDER if protocol == "xd" else DG_ORDER)]
    return jobs


def check_dpdlora_order(jobs):
    """Spelled out: every evaluation loads a training job printed before it (same seed and switches; base2new: same
    dataset, trained on the base classes), and no evaluation reads a teacher."""
    for i, j in enumerate(jobs):
        if not j["eval_only"]:
            continue
        [t] = [t for t in jobs[:i] if t["out"] == j["model_dir"]]
        assert not t["eval_only"] and (t["seed"], t["opts"], t["config"]) == (j["seed"], j["opts"], j["config"])
        assert (t["dataset"], t["sub"]) == ((j["dataset"], "base") if j["sub"] == "new" else ("imagenet", None))
        assert j["teacher_dir"] is None


@pytest.mark.parametrize("protocol", ["base2new", "fewshot", "xd", "dg", "ablation"])
def test_dpdlora_protocol_jobs(tmp_path, protocol):
    out, jobs = two_stage_dry_run(tmp_path, "dpdlora/run.sh", protocol, dpdlora_job)
    assert jobs == expected_dpdlora_jobs(out, protocol, ["eurosat", "dtd"], ["1", "3"])
    check_dpdlora_order(jobs)
    # the same, as values: one config, its number of jobs and the epoch each evaluation loads
    assert {j["config"] for j in jobs} == {f"configs/trainers/DPDLoRA/{DPDLORA_CFG[protocol]}.yaml"}
    assert {j["trainer"] for j in jobs} == {"DPDLoRA"} and {j["teacher_dir"] for j in jobs} == {None}
    assert len(jobs) == {"base2new": 8, "fewshot": 20, "xd": 22, "dg": 10, "ablation": 32}[protocol]
    assert {j["epoch"] for j in jobs if j["eval_only"]} == ({"20"} if protocol in ("base2new", "ablation")
                                                           else {"2"} if protocol in ("xd", "dg") else set())
    if protocol == "fewshot":  # all classes (no SUBSAMPLE_CLASSES), each shot count, no evaluation job
        assert [(j["dataset"], j["shots"]) for j in jobs[:10:2]] == [("eurosat", k) for k in ("1", "2", "4", "8", "16")]
        assert {(j["sub"], j["eval_only"]) for j in jobs} == {(None, False)}


@pytest.mark.parametrize("protocol, n_jobs, epoch", [("base2new", 11 * 3 * 2, "20"), ("fewshot", 11 * 3 * 5, None),
                                                     ("xd", 3 * (1 + 10), "2"), ("dg", 3 * (1 + 4), "2"),
                                                     ("ablation", 4 * 11 * 3 * 2, "20")])
def test_dpdlora_default_loops_cover_the_11_datasets_and_3_seeds(tmp_path, protocol, n_jobs, epoch):
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script("dpdlora/run.sh", [protocol], tmp_path, python, DRY_RUN="1", OUTPUT=str(out),
                      DATA=str(tmp_path / "data"))
    assert proc.returncode == 0, proc.stderr
    jobs = [dpdlora_job(tokens) for tokens in commands(proc.stdout, python)]
    assert len(jobs) == n_jobs
    datasets = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
                "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
    assert jobs == expected_dpdlora_jobs(out, protocol, datasets, ["1", "2", "3"])
    assert {j["epoch"] for j in jobs if j["eval_only"]} == ({epoch} if epoch else set())


def test_dpdlora_ablation_rows_are_base2new_with_their_switches_in_their_own_folders(tmp_path):
    python, out = fake_python(tmp_path), tmp_path / "out"

    def dry_run(protocol, **env):
        proc = run_script("dpdlora/run.sh", [protocol], tmp_path, python, DRY_RUN="1", DATASETS="eurosat",
                          SEEDS="2", OUTPUT=str(out), DATA=str(tmp_path / "data"), **env)
        assert proc.returncode == 0, proc.stderr
        return commands(proc.stdout, python)

    base2new = dry_run("base2new")
    ablation = dry_run("ablation")
    assert len(base2new) == 2 and len(ablation) == 8
    folders = set()
    for k, row in enumerate(DPDLORA_ROWS):  # rows in Table 3's order, each train then evaluation
        train, test = ablation[2 * k: 2 * k + 2]
        # the base2new command word for word, the row's folder in place of DPDLoRA's and its switches appended
        renamed = [[t.replace("/shots_16/DPDLoRA/", f"/shots_16/DPDLoRA_ablation_{row}/") for t in c] for c in base2new]
        assert train == renamed[0] + DPDLORA_ROWS[row] and test == renamed[1] + DPDLORA_ROWS[row]
        assert option(test, "--model-dir") == option(train, "--output-dir")
        assert option(test, "--load-epoch") == "20" and "--eval-only" in test and "--eval-only" not in train
        folders |= {option(train, "--output-dir"), option(test, "--output-dir")}
    assert dpdlora_job(ablation[0])["opts"] == ["TRAINER.DPDLORA.INTERACTION", "False", "TRAINER.DPDLORA.GATE", "False",
                                                "TRAINER.DPDLORA.KL_WEIGHT", "0.0", "TRAINER.DPDLORA.ORTH_WEIGHT", "0.0",
                                                "TRAINER.DPDLORA.TEXT_LOSS_WEIGHT", "0.0"]
    assert dpdlora_job(ablation[4])["opts"] == ["TRAINER.DPDLORA.GATE", "False"]
    assert dpdlora_job(ablation[6])["opts"] == []
    # 8 distinct folders, none of them base2new's
    assert len(folders) == 8 and not folders & {option(c, "--output-dir") for c in base2new}
    assert {f.split("/shots_16/")[1].split("/")[0] for f in folders} == {
        "DPDLoRA_ablation_lorss", "DPDLoRA_ablation_interaction", "DPDLoRA_ablation_scl", "DPDLoRA_ablation_pcgm"}
    # ROW selects rows (one, or several in the order given)
    for row in ("lorss", "interaction", "scl", "pcgm"):
        assert [dpdlora_job(c) for c in dry_run("ablation", ROW=row)] == expected_dpdlora_jobs(
            out, "ablation", ["eurosat"], ["2"], rows=(row,))
    assert [dpdlora_job(c) for c in dry_run("ablation", ROW="pcgm lorss")] == expected_dpdlora_jobs(
        out, "ablation", ["eurosat"], ["2"], rows=("pcgm", "lorss"))


@pytest.mark.parametrize("teacher_cfg", [None, "testbed"])
@pytest.mark.parametrize("protocol", ["base2new", "fewshot", "ablation", "xd", "dg"])
def test_dpdlora_teacher_dir_is_the_same_run_under_another_root(tmp_path, protocol, teacher_cfg):
    teacher = tmp_path / "teacher runs"  # a space in the path survives the quoting
    out, jobs = two_stage_dry_run(tmp_path, "dpdlora/run.sh", protocol, dpdlora_job, TEACHER_DIR=f"{teacher}/",
                                  TEACHER_CFG=teacher_cfg)
    if protocol in ("xd", "dg"):  # no teacher in the cross-dataset recipe: TEACHER_DIR does not apply
        assert jobs == expected_dpdlora_jobs(out, protocol, ["eurosat", "dtd"], ["1", "3"])
        return
    assert jobs == expected_dpdlora_jobs(out, protocol, ["eurosat", "dtd"], ["1", "3"], teacher=teacher,
                                         teacher_cfg=teacher_cfg)
    check_dpdlora_order(jobs)
    cfg = teacher_cfg or DPDLORA_CFG[protocol]
    with_teacher = [j for j in jobs if j["teacher_dir"]]
    # every training job that trains a teacher reads it instead; evaluations and the rows without KL get none
    assert with_teacher == [j for j in jobs if not j["eval_only"] and j["opts"] in ([], DPDLORA_ROWS["scl"])]
    assert len(with_teacher) == {"base2new": 4, "fewshot": 20, "ablation": 8}[protocol]
    first = with_teacher[0]["teacher_dir"]
    assert first == (f"{teacher}/eurosat/DPDLoRA/{cfg}_1shots/seed1" if protocol == "fewshot"
                     else f"{teacher}/base2new/train_base/eurosat/shots_16/DPDLoRA/{cfg}/seed1")


@pytest.mark.parametrize("protocol", ["base2new", "fewshot"])
def test_dpdlora_refuses_a_teacher_dir_naming_the_jobs_own_folders(tmp_path, protocol):
    python, out = fake_python(tmp_path), tmp_path / "out"
    env = dict(DRY_RUN="1", DATASETS="eurosat", SEEDS="1", OUTPUT=str(out), DATA=str(tmp_path / "data"))
    proc = run_script("dpdlora/run.sh", [protocol], tmp_path, python, TEACHER_DIR=f"{out}/", **env)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert len(proc.stderr.splitlines()) == 1 and "TEACHER_DIR is OUTPUT" in proc.stderr
    # the same root with another config, or the ablation (its rows' folders are not DPDLoRA's), is fine
    for args, extra in (([protocol], dict(TEACHER_CFG="testbed")), (["ablation"], {})):
        proc = run_script("dpdlora/run.sh", args, tmp_path, python, TEACHER_DIR=str(out), **env, **extra)
        assert proc.returncode == 0 and commands(proc.stdout, python), proc.stderr
    assert not out.exists()


def test_dpdlora_config_overrides_and_loadep(tmp_path):
    """B2N_CFG / FS_CFG / XD_CFG replace the configs (the evaluated epoch follows the config's MAX_EPOCH, 10 for the
    testbed config); LOADEP overrides that epoch."""
    python, out = fake_python(tmp_path), tmp_path / "out"
    env = dict(DRY_RUN="1", DATASETS="dtd", SEEDS="2", OUTPUT=str(out), DATA=str(tmp_path / "data"))
    for protocol, var, loadep, epoch in (("base2new", "B2N_CFG", None, "10"), ("ablation", "B2N_CFG", "7", "7"),
                                         ("fewshot", "FS_CFG", None, None), ("xd", "XD_CFG", None, "10"),
                                         ("dg", "XD_CFG", "7", "7")):
        proc = run_script("dpdlora/run.sh", [protocol], tmp_path, python, LOADEP=loadep, **{var: "testbed"}, **env)
        assert proc.returncode == 0, proc.stderr
        jobs = [dpdlora_job(tokens) for tokens in commands(proc.stdout, python)]
        assert jobs == expected_dpdlora_jobs(out, protocol, ["dtd"], ["2"], cfg="testbed", epoch=epoch)
        assert {j["epoch"] for j in jobs if j["eval_only"]} == ({epoch} if epoch else set())


@pytest.mark.parametrize("protocol, first_stage, remaining", [
    ("base2new", "base2new/train_base/eurosat/shots_16/DPDLoRA/vit_b16_c2_ep20_batch4_2ctx/seed1", 1),
    ("ablation", "base2new/train_base/eurosat/shots_16/DPDLoRA_ablation_lorss/vit_b16_c2_ep20_batch4_2ctx/seed1", 7),
    ("xd", "imagenet/DPDLoRA/vit_b16_c2_ep2_batch4_2ctx_cross_datasets_16shots/seed1", 10),
])
def test_dpdlora_skips_a_finished_training_and_still_evaluates_it(tmp_path, protocol, first_stage, remaining):
    finished, jobs = dry_run_after_a_finished_first_stage(tmp_path, "dpdlora/run.sh", protocol, first_stage,
                                                          dpdlora_job)
    assert len(jobs) == remaining and str(finished) not in [j["out"] for j in jobs]
    assert jobs[0]["eval_only"] and jobs[0]["model_dir"] == str(finished)
    if protocol == "ablation":  # only the lorss row's training was finished: the other rows all run
        assert jobs[0]["opts"] == DPDLORA_ROWS["lorss"]
        assert [j["opts"] for j in jobs[1:]] == [DPDLORA_ROWS[r] for r in ("interaction", "scl", "pcgm") for _ in "tt"]


DPDLORA_REFUSALS = [
    (["b2n"], {}, "unknown protocol 'b2n'"),
    ([], {}, "no protocol"),
    (["base2new", "TRAINER.DPDLORA.KL_WEIGHT", "0.5"], {}, "unexpected arguments after the protocol"),
    (["ablation"], {"ROW": "scl gate"}, "unknown ablation row 'gate'"),
    (["base2new"], {"B2N_CFG": "nonexistent"}, "no config configs/trainers/DPDLoRA/nonexistent.yaml"),
    (["ablation"], {"B2N_CFG": "nonexistent"}, "no config configs/trainers/DPDLoRA/nonexistent.yaml"),
    (["fewshot"], {"FS_CFG": "nonexistent"}, "no config configs/trainers/DPDLoRA/nonexistent.yaml"),
    (["dg"], {"XD_CFG": "nonexistent"}, "no config configs/trainers/DPDLoRA/nonexistent.yaml"),
]


@pytest.mark.parametrize("script, args, env, message", [("dpc/run.sh", *r) for r in DPC_REFUSALS]
                         + [("dpl/run.sh", *r) for r in DPL_REFUSALS]
                         + [("dpdlora/run.sh", *r) for r in DPDLORA_REFUSALS])
def test_two_stage_scripts_refuse_what_they_cannot_run_with_exit_2(tmp_path, script, args, env, message):
    python, out = fake_python(tmp_path), tmp_path / "out"
    proc = run_script(script, args, tmp_path, python, DRY_RUN="1", DATASETS="eurosat", SEEDS="1",
                      OUTPUT=str(out), DATA=str(tmp_path / "data"), **env)
    assert proc.returncode == 2 and proc.stdout == "", (proc.stdout, proc.stderr)
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr
    assert not out.exists()