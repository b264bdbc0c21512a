"""The testbed benchmark: trainers x testbed datasets x seeds, base-to-new and few-shot, as a results table.

    python -m vlpeft.testbed.accuracy                                  # every registered trainer, 4 datasets, seeds 1-3
    python -m vlpeft.testbed.accuracy --trainers ZeroshotCLIP CoOp --protocols b2n --seeds 1 2 3

Each run is a real ``train.py`` run (in-process) with ``configs/trainers/<Trainer>/testbed.yaml`` (zero-shot
trainers use CoOp's for the input pipeline) on the ``vlpeft-testbed`` CLIP; its output directory is
``<output>/<protocol>/<dataset>/<trainer>/seed<S>[/...]`` and a finished run (``results.json``) is reused; one whose
saved config differs from what its command resolves to today is refused.
Base-to-new trains on the base half (16 shots) and evaluates the last checkpoint on the base and the new test
classes; H is the harmonic mean of the seed-averaged base and new accuracies, as the papers compute it. Few-shot
trains on all classes with K shots and evaluates on all test classes. The table (tabulate) is printed and written to
``<output>/results.md`` and ``results.json``, with the mean elapsed seconds per run.
"""
import argparse
import io
import json
import os
import os.path as osp
import sys
import time
from contextlib import contextmanager

import numpy as np
from tabulate import tabulate

from vlpeft.engine.utils import atomic_write_text, close_logger
from vlpeft.resources import packaged_config
from vlpeft.results import harmonic
from vlpeft.testbed.datasets import SPECS

ZERO_SHOT = ("ZeroshotCLIP", "ZeroshotCLIP2")


def config_file(trainer):
    """``configs/trainers/<Trainer>/testbed.yaml``; a variant ``<Trainer>_<v>`` (e.g. ``DPC_maple``) reads
    ``testbed_<v>.yaml`` of that trainer."""
    name, _, variant = trainer.partition("_")
    name = "CoOp" if name in ZERO_SHOT else name
    path = packaged_config("trainers", name, f"testbed_{variant}.yaml" if variant else "testbed.yaml")
    if not osp.isfile(path):
        raise FileNotFoundError(f"{trainer} has no testbed config: {path}")
    return path


def testbed_trainers():
    """Registered trainers that have a testbed config (every vlpeft trainer should), then their variants."""
    import vlpeft.trainers  # noqa: F401
    from vlpeft.engine import TRAINER_REGISTRY

    names = []
    for name in TRAINER_REGISTRY.registered_names():
        try:
            folder = osp.dirname(config_file(name))
        except FileNotFoundError:
            continue
        names.append(name)
        if name not in ZERO_SHOT:
            names += sorted(f"{name}_{f[len('testbed_'):-len('.yaml')]}" for f in os.listdir(folder)
                            if f.startswith("testbed_") and f.endswith(".yaml"))
    return names


# second-stage trainers: the key that receives the first stage's run folder
STAGE_KEYS = {"DPC": "TRAINER.DPC.BACKBONE_DIR", "DPL": "TRAINER.DPL.SEARCH_DIR"}


def backbone_of(trainer):
    """The first-stage trainer a second-stage trainer is trained on (DPC: its testbed config's base; DPL: DPLSearch,
    with the same variant); else None."""
    import yaml

    name, _, variant = trainer.partition("_")
    if name == "DPL":
        return "DPLSearch" + (f"_{variant}" if variant else "")
    if name != "DPC":
        return None
    with open(config_file(trainer)) as f:
        return yaml.safe_load(f)["TRAINER"]["DPC"]["BASE"]


@contextmanager
def _quiet(enabled):
    """Keep a run's console output out of the terminal (it still goes to the run's log.txt)."""
    if not enabled:
        yield
        return
    original = sys.stdout
    sys.stdout = io.StringIO()
    try:
        yield
    finally:
        close_logger()
        sys.stdout = original


def run_train(flags, opts, output_dir, quiet=True):
    """``train.py FLAGS --output-dir DIR OPTS`` in-process unless ``DIR/results.json`` exists; return that dict, with
    ``reused`` saying whether it is an earlier run's record (nothing was run). A finished run whose saved config
    differs from what the command resolves to today is refused, never reused."""
    marker = osp.join(output_dir, "results.json")
    argv = [str(a) for a in [*flags, "--output-dir", output_dir, *opts]]
    reused = osp.isfile(marker)
    if reused and osp.isfile(osp.join(output_dir, "config.yaml")):
        from vlpeft.results import config_changes

        changes = config_changes(osp.join(output_dir, "config.yaml"), argv)
        if changes:
            raise RuntimeError(f"{output_dir} was run with " + ", ".join(f"{k} {saved}, not {now}"
                                                                         for k, saved, now in changes)
                               + ": delete it to run it again, or use another output folder for these settings")
    if not reused:
        from vlpeft.cli import main

        with _quiet(quiet):
            main(argv)
    with open(marker) as f:
        return {**json.load(f), "reused": reused}


def _flags(trainer, seed, root):
    return ["--root", root, "--seed", seed, "--trainer", trainer.partition("_")[0], "--config-file",
            config_file(trainer)]


def base_to_new(trainer, dataset, seed, output, root="", shots=16, quiet=True, opts=(), backbone_opts=()):
    """Train on base classes, test base and new; returns {"base", "new", "elapsed_s", "reused" (both records were
    there already), "finished_at", "dir"}. ``opts``: config overrides. A second-stage trainer (DPC) first runs its
    backbone's base-to-new with ``backbone_opts`` (or reuses it) and trains on top of that run."""
    out = osp.join(output, "b2n", dataset, trainer, f"seed{seed}")
    flags = _flags(trainer, seed, root)
    backbone = backbone_of(trainer)
    if backbone:
        first = base_to_new(backbone, dataset, seed, output, root, shots, quiet, opts=backbone_opts)
        opts = [*opts, STAGE_KEYS[trainer.partition("_")[0]], osp.join(first["dir"], "train_base")]
    opts = ["DATASET.NAME", dataset, "DATASET.NUM_SHOTS", shots, *opts]
    if trainer in ZERO_SHOT:
        base = run_train(flags + ["--eval-only"], opts + ["DATASET.SUBSAMPLE_CLASSES", "base"],
                         osp.join(out, "base"), quiet)
        model_flags = ["--eval-only"]
    else:
        base = run_train(flags, opts + ["DATASET.SUBSAMPLE_CLASSES", "base"], osp.join(out, "train_base"), quiet)
        epoch = last_epoch(osp.join(out, "train_base"))
        model_flags = ["--eval-only", "--model-dir", osp.join(out, "train_base"), "--load-epoch", epoch]
    new = run_train(flags + model_flags, opts + ["DATASET.SUBSAMPLE_CLASSES", "new"], osp.join(out, "test_new"),
                    quiet)
    return {"base": base["accuracy"], "new": new["accuracy"], "elapsed_s": base["elapsed_s"] + new["elapsed_s"],
            "reused": base["reused"] and new["reused"], "finished_at": new.get("finished_at"), "dir": out}


def few_shot(trainer, dataset, seed, shots, output, root="", quiet=True, opts=()):
    out = osp.join(output, "fewshot", dataset, trainer, f"{shots}shots", f"seed{seed}")
    flags = _flags(trainer, seed, root) + (["--eval-only"] if trainer in ZERO_SHOT else [])
    backbone = backbone_of(trainer)
    if backbone:
        few_shot(backbone, dataset, seed, shots, output, root, quiet)
        opts = [*opts, STAGE_KEYS[trainer.partition("_")[0]], osp.join(output, "fewshot", dataset, backbone,
                                                                       f"{shots}shots", f"seed{seed}")]
    res = run_train(flags, ["DATASET.NAME", dataset, "DATASET.NUM_SHOTS", shots, *opts], out, quiet)
    return {"accuracy": res["accuracy"], "elapsed_s": res["elapsed_s"], "reused": res["reused"]}


def last_epoch(run_dir):
    """The epoch a finished training run in ``run_dir`` saved last (its ``OPTIM.MAX_EPOCH``)."""
    import yaml

    with open(osp.join(run_dir, "config.yaml")) as f:
        return yaml.safe_load(f)["OPTIM"]["MAX_EPOCH"]


def b2n_table(records):
    """records: {(dataset, trainer): [per-seed dicts]} -> rows with mean/std base, new, H of the means, time."""
    rows = []
    for (dataset, trainer), runs in records.items():
        base = np.array([r["base"] for r in runs])
        new = np.array([r["new"] for r in runs])
        rows.append([dataset, trainer, len(runs), f"{base.mean():.2f} ± {base.std():.2f}",
                     f"{new.mean():.2f} ± {new.std():.2f}", f"{harmonic(base.mean(), new.mean()):.2f}",
                     f"{np.mean([r['elapsed_s'] for r in runs]):.1f}"])
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.testbed.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainers", nargs="+", default=None, help="default: every trainer with a testbed config")
    parser.add_argument("--datasets", nargs="+", default=list(SPECS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--protocols", nargs="+", default=["b2n", "fewshot"], choices=["b2n", "fewshot"])
    parser.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--root", default="", help="dataset root (default: generated in the cache)")
    parser.add_argument("--output", default="output/testbed")
    parser.add_argument("--verbose", action="store_true", help="show each run's console output")
    args = parser.parse_args(argv)
    trainers = args.trainers or testbed_trainers()
    summary = {"b2n": {}, "fewshot": {}}
    text = []
    if "b2n" in args.protocols:
        records = {}
        for dataset in args.datasets:
            for trainer in trainers:
                for seed in args.seeds:
                    t0 = time.time()
                    r = base_to_new(trainer, dataset, seed, args.output, args.root, quiet=not args.verbose)
                    records.setdefault((dataset, trainer), []).append(r)
                    done = "earlier run, nothing re-run" if r["reused"] else f"{time.time() - t0:.0f}s"
                    print(f"b2n {dataset} {trainer} seed{seed}: base {r['base']:.1f} new {r['new']:.1f} ({done})",
                          flush=True)
        rows = b2n_table(records)
        table = tabulate(rows, headers=["dataset", "trainer", "seeds", "base", "new", "H", "s/run"])
        text.append("## Base-to-new (16 shots; mean ± std over seeds; H of the means)\n\n" + table)
        summary["b2n"] = {f"{d}/{t}": runs for (d, t), runs in records.items()}
    if "fewshot" in args.protocols:
        records = {}
        for dataset in args.datasets:
            for trainer in trainers:
                for k in args.shots:
                    for seed in args.seeds:
                        r = few_shot(trainer, dataset, seed, k, args.output, args.root, quiet=not args.verbose)
                        records.setdefault((dataset, trainer), {}).setdefault(k, []).append(r)
                    print(f"few-shot {dataset} {trainer} {k}-shot: "
                          f"{np.mean([r['accuracy'] for r in records[(dataset, trainer)][k]]):.1f}", flush=True)
        rows = []
        for (dataset, trainer), by_k in records.items():
            rows.append([dataset, trainer] + [f"{np.mean([r['accuracy'] for r in by_k[k]]):.2f}" for k in args.shots]
                        + [f"{np.mean([r['elapsed_s'] for k in args.shots for r in by_k[k]]):.1f}"])
        table = tabulate(rows, headers=["dataset", "trainer"] + [f"{k}-shot" for k in args.shots] + ["s/run"])
        text.append("## Few-shot (accuracy on all classes, mean over seeds)\n\n" + table)
        summary["fewshot"] = {f"{d}/{t}": {str(k): v for k, v in by_k.items()} for (d, t), by_k in records.items()}
    runs = [r for runs in summary["b2n"].values() for r in runs]
    runs += [r for by_k in summary["fewshot"].values() for rs in by_k.values() for r in rs]
    reused = sum(r["reused"] for r in runs)
    if reused:
        text.append(f"{reused} of {len(runs)} runs are earlier runs found under {args.output} (not re-run; their "
                    "s/run is from then). Delete their folders to run them again.")
    report = "\n\n".join(text)
    print(report)
    os.makedirs(args.output, exist_ok=True)
    atomic_write_text(osp.join(args.output, "results.md"), report + "\n")
    atomic_write_text(osp.join(args.output, "results.json"), json.dumps(summary, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
