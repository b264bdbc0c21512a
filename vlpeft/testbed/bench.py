"""The testbed as a proxy benchmark: every trainer, base-to-new on the proxy datasets, 5 seeds, ranked against the
published base-to-new H.

    python -m vlpeft.testbed.bench --proxy                          # output/testbed_proxy, 2 worker processes
    python -m vlpeft.testbed.bench --proxy --trainers CoOp MaPLe --seeds 1 2 --workers 1

The proxy datasets (:data:`vlpeft.testbed.datasets.PROXY_DATASETS`) are testbed datasets of three kinds (scene,
fine-grained attribute, domain shift) with the real suite's profile (``python -m vlpeft.testbed.probe``): a linear
probe on the frozen 16-shot base features beats zero-shot by at least 15 points, so prompt learners have room to
learn, and zero-shot CLIP names both halves at least 3x better than chance, so there is something to keep. The trainers
(:func:`proxy_trainers`) are every trainer with a testbed config, with the variants that are published methods
(DPC on each backbone) and without those that are not (ablation rows, recipe options); a second-stage trainer (DPC,
DPL) runs its first stage on the same dataset and seed first.

Each run is ``python -m vlpeft.testbed.accuracy``'s base-to-new run (a real ``train.py`` run per half, the testbed
config, last checkpoint): ``<output>/b2n/<dataset>/<trainer>/seed<S>``; a finished run is reused, never re-run
(and refused if its saved config differs from what its command resolves to today).
The work is split into (dataset, seed) units over ``--workers`` processes (each with ``cores / workers`` torch
threads). The report (:mod:`vlpeft.testbed.proxy`) gives per method the mean base / new / H with 95% t intervals
over seeds, its rank, the per-dataset H, and Kendall's tau against the published H (``vlpeft.published``, the table
``vlpeft.results --compare published`` uses) with a bootstrap interval over seeds, and the reference scale
(:mod:`vlpeft.testbed.reference`: the tau of the real suite's own subsets of as many datasets); then the wall time
and the CPU time of the runs. It is printed and written to ``<output>/proxy.md`` and ``proxy.json``. Nothing here
selects a hyperparameter: every trainer runs its testbed config as shipped, unless ``--selections`` names the sweeps
(``python -m vlpeft.sweep``, on the val split) whose selected values a trainer should run with instead:

    python -m vlpeft.sweep --trainer CoOp --config-file configs/trainers/CoOp/testbed.yaml --seeds 1 \
        --datasets TestbedScenes TestbedDarkShades TestbedWarmLight --grid OPTIM.LR=0.0006,0.002,0.006 \
        --output output/testbed_select/CoOp
    python -m vlpeft.testbed.bench --proxy --selections output/testbed_select --output output/testbed_proxy_selected

``--epoch-scale K`` runs every trainer (and every first stage) for K times its testbed epochs, with every setting
counted in epochs scaled alike (:func:`epoch_scale_opts`): the schedule of a dataset with K times the images per
class. The testbed's 6 base classes give far fewer SGD steps than the real datasets' 5-500.
"""
import argparse
import json
import os
import os.path as osp
import re
import time

from vlpeft.engine.utils import atomic_write_text
from vlpeft.testbed.datasets import PROXY_DATASETS, SPECS

PROXY_SEEDS = (1, 2, 3, 4, 5)


def proxy_trainers():
    """Every testbed trainer and the variants with a published method (see the module docstring)."""
    from vlpeft.testbed.accuracy import ZERO_SHOT, testbed_trainers
    from vlpeft.testbed.proxy import published_method

    names = []
    for trainer in testbed_trainers():
        _, _, variant = trainer.partition("_")
        if trainer in ZERO_SHOT[1:] or (variant and published_method(trainer) is None):
            continue  # the template ensemble has no published row of its own; variants without a published method
        names.append(trainer)
    return names


def recipe_cfg(trainer):
    """``trainer``'s testbed config as train.py resolves it (defaults included)."""
    import vlpeft.trainers  # noqa: F401
    from vlpeft.cli import build_parser, setup_cfg
    from vlpeft.testbed.accuracy import config_file

    return setup_cfg(build_parser().parse_args(["--trainer", trainer.partition("_")[0],
                                                "--config-file", config_file(trainer)]))


def recipe_value(trainer, key):
    """``key``'s value in ``trainer``'s testbed config as train.py resolves it (defaults included)."""
    from vlpeft.results import config_value

    return config_value(recipe_cfg(trainer), key)


def selected_opts(trainer, selection_file):
    """The config overrides a sweep (``python -m vlpeft.sweep``, its ``selection.json``) selected for ``trainer`` on
    the val split: its best point; among points with the same mean val accuracy the recipe's own (then no override)."""
    with open(selection_file) as f:
        points = json.load(f)["points"]
    best = max(p["mean"] for p in points)
    tied = [p["point"] for p in points if abs(p["mean"] - best) < 1e-6]
    recipe = [p for p in tied if all(_same_value(recipe_value(trainer, k), v) for k, v in p.items())]
    if recipe:
        return []
    return [x for kv in tied[0].items() for x in kv]


# settings counted in epochs: OPTIM keys, and per trainer node (any node, e.g. TRAINER.PROMPTSRC.GPA_MEAN)
EPOCH_KEYS = ("OPTIM.MAX_EPOCH", "OPTIM.WARMUP_EPOCH", "OPTIM.STEPSIZE")
NODE_EPOCH_KEYS = ("GPA_MEAN", "GPA_STD", "EARLY_STOP", "ALPHA_EPOCH", "BACKBONE_EPOCH")


def epoch_scale_opts(trainer, scale):
    """Overrides that run ``trainer``'s testbed config ``scale`` times longer: ``OPTIM.MAX_EPOCH``, the warm-up, step
    sizes, and in every trainer node the GPA Gaussian (PromptSRC, DsRA), DPD-LoRA's stage-1 ``EARLY_STOP``, and
    the epoch a second stage reads its first stage at (DPL's ``ALPHA_EPOCH``, DPC's ``BACKBONE_EPOCH``), each times
    ``scale``. Settings that are off (a negative or zero epoch: "the last", "none") stay as they are."""
    from vlpeft.results import config_value
    from vlpeft.testbed.accuracy import ZERO_SHOT

    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"the epoch scale must be a whole number >= 1, got {scale!r}")
    if scale == 1 or trainer in ZERO_SHOT:  # zero-shot CLIP does not train
        return []
    cfg = recipe_cfg(trainer)
    nodes = [node for node, values in sorted(cfg.TRAINER.items()) if isinstance(values, dict)]
    keys = [*EPOCH_KEYS, *(f"TRAINER.{node}.{key}" for node in nodes for key in NODE_EPOCH_KEYS
                           if key in cfg.TRAINER[node])]
    opts = []
    for key in keys:
        value = config_value(cfg, key)
        if isinstance(value, (tuple, list)):
            scaled = tuple(v * scale if v > 0 else v for v in value)
            if scaled != tuple(value):
                opts += [key, str(scaled)]
        elif value > 0:
            opts += [key, str(value * scale)]
    return opts


def load_selections(root, trainers):
    """``{trainer: overrides}`` from ``<root>/<trainer>/selection.json`` for the trainers that have one."""
    found = {}
    for trainer in trainers:
        path = osp.join(root, trainer, "selection.json")
        if osp.isfile(path):
            found[trainer] = selected_opts(trainer, path)
    return found


def _same_value(a, b):
    """A config value and an override (a string on the command line) are the same setting."""
    try:
        return abs(float(a) - float(b)) < 1e-12
    except (TypeError, ValueError):
        return str(a) == str(b)


def run_unit(dataset, seed, trainers, output, root="", opts=(), threads=None, quiet=True, trainer_opts=None):
    """Base-to-new of every trainer on one (dataset, seed); returns the per-run records, the trainers that failed
    (``(trainer, error)``: a failed trainer does not stop the others) and the unit's CPU seconds.
    ``trainer_opts``: extra overrides per trainer (a selection)."""
    import contextlib
    import io

    import torch

    from vlpeft.testbed.accuracy import backbone_of, base_to_new

    if threads:
        torch.set_num_threads(threads)
    cpu0, records, failed = time.process_time(), [], []
    for trainer in trainers:
        t0 = time.time()
        selected = trainer_opts or {}
        run_opts = [*opts, *selected.get(trainer, [])]
        backbone_opts = [*opts, *selected.get(backbone_of(trainer), [])]  # a second stage's backbone as selected
        try:
            with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():  # progress bars
                r = base_to_new(trainer, dataset, seed, output, root, quiet=quiet, opts=run_opts,
                                backbone_opts=backbone_opts)
        except Exception as error:  # reported with the unit; the command fails at the end
            failed.append((trainer, f"{type(error).__name__}: {error}"))
            continue
        records.append({"trainer": trainer, "dataset": dataset, "seed": seed, "base": r["base"], "new": r["new"],
                        "elapsed_s": r["elapsed_s"], "reused": r["reused"], "wall_s": time.time() - t0})
    return {"dataset": dataset, "seed": seed, "records": records, "failed": failed,
            "cpu_s": time.process_time() - cpu0}


def _print_unit(unit):
    for r in unit["records"]:
        done = "earlier run" if r["reused"] else f"{r['wall_s']:.0f}s"
        print(f"b2n {r['dataset']} seed{r['seed']} {r['trainer']}: base {r['base']:.1f} new {r['new']:.1f} ({done})",
              flush=True)


def run_all(units, trainers, output, root="", opts=(), workers=1, trainer_opts=None):
    """Run the (dataset, seed) units, in ``workers`` processes when more than one; returns the units' results and the
    failures ``(dataset, seed, error)``, one per failed trainer (or per unit, when a unit fails as a whole)."""
    results, failed = [], []

    def done(unit, get):
        try:
            results.append(get())
        except Exception as error:  # one failed unit does not stop the others; it is reported and fails the command
            failed.append((*unit, f"{type(error).__name__}: {error}"))
            print(f"FAILED {unit[0]} seed{unit[1]}: {failed[-1][2]}", flush=True)
            return
        _print_unit(results[-1])
        for trainer, error in results[-1]["failed"]:
            failed.append((*unit, f"{trainer}: {error}"))
            print(f"FAILED {unit[0]} seed{unit[1]} {trainer}: {error}", flush=True)

    if workers <= 1:
        for unit in units:
            done(unit, lambda: run_unit(*unit, trainers, output, root, opts, trainer_opts=trainer_opts))
        return results, failed
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(run_unit, d, s, trainers, output, root, tuple(opts), threads, True, trainer_opts): (d, s)
                   for d, s in units}
        for future in as_completed(futures):
            done(futures[future], future.result)
    return results, failed


def per_dataset_h(runs, trainers, datasets):
    """{trainer: {dataset: H of the seed-averaged base and new}} from ``proxy.collect``'s runs."""
    from vlpeft.testbed.proxy import method_h

    table = {}
    for trainer in trainers:
        per_seed = runs.get(trainer, {})
        row = {}
        for dataset in datasets:
            seeds = [s for s in per_seed if {"base", "new"} <= set(per_seed[s].get(dataset, {}))]
            if seeds:
                row[dataset] = method_h({s: {dataset: per_seed[s][dataset]} for s in seeds}, seeds)[2]
        table[trainer] = row
    return table


def report(output, trainers, datasets, n_boot=2000):
    """The proxy report of the runs under ``output`` (restricted to ``trainers`` and ``datasets``): (text, dict)."""
    from tabulate import tabulate

    from vlpeft.testbed import proxy, reference

    runs = {t: v for t, v in proxy.collect(output, datasets).items() if t in trainers}
    result = proxy.proxy_report(runs, n_boot=n_boot)
    by_dataset = per_dataset_h(runs, [r["trainer"] for r in result["rows"]], datasets)
    result["per_dataset_H"] = by_dataset
    ranked = [r for r in result["rows"] if r["published_H"] is not None]
    result["per_dataset_tau"] = {}
    for d in datasets:
        pairs = [(by_dataset[r["trainer"]][d], r["published_H"]) for r in ranked if d in by_dataset[r["trainer"]]]
        if len(pairs) >= 2:
            result["per_dataset_tau"][d] = proxy.kendall_tau(*zip(*pairs))[0]
    table = [[r["trainer"]] + [f"{by_dataset[r['trainer']].get(d, float('nan')):.2f}" for d in datasets]
             for r in result["rows"]]
    taus = result["per_dataset_tau"]
    table.append(["Kendall tau"] + [f"{taus[d]:.3f}" if d in taus else "-" for d in datasets])
    text = "\n\n".join([
        f"## Proxy benchmark: base-to-new, 16 shots, datasets {', '.join(datasets)}",
        proxy.render(result),
        "H per dataset (seed-averaged base and new), and each dataset's tau against the published H:\n\n"
        + tabulate(table, headers=["trainer", *datasets]),
        reference.summary(result, len(datasets)),
    ])
    return text, result


def scaled_opts(trainers, scale, selections, opts, parser):
    """Per-trainer overrides: each trainer's selection, then its :func:`epoch_scale_opts` (its first stage's too, so
    that a second stage's backbone runs as long)."""
    from vlpeft.testbed.accuracy import backbone_of

    if scale < 1:
        parser.error(f"--epoch-scale must be at least 1, got {scale}")
    combined = {t: list(o) for t, o in selections.items()}
    if scale == 1:
        return combined
    names = []
    for trainer in trainers:
        names += [name for name in (trainer, backbone_of(trainer)) if name and name not in names]
    for name in names:
        extra = epoch_scale_opts(name, scale)
        overridden = {*opts[::2], *combined.get(name, [])[::2]}
        clash = [k for k in extra[::2] if k in overridden]
        if clash:
            parser.error(f"--epoch-scale {scale} sets {', '.join(clash)} for {name}: do not override it as well")
        combined[name] = combined.get(name, []) + extra
    return combined


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.testbed.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxy", action="store_true", required=True,
                        help="run the proxy benchmark (the only benchmark of this command)")
    parser.add_argument("--trainers", nargs="+", default=None, help="default: proxy_trainers()")
    parser.add_argument("--datasets", nargs="+", default=list(PROXY_DATASETS), choices=list(SPECS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(PROXY_SEEDS))
    parser.add_argument("--workers", type=int, default=2, help="processes running (dataset, seed) units")
    parser.add_argument("--root", default="", help="dataset root (default: generated in the cache)")
    parser.add_argument("--output", default="output/testbed_proxy")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws over seeds for tau")
    parser.add_argument("--selections", default="",
                        help="a folder of val-split sweeps, <folder>/<Trainer>/selection.json (python -m vlpeft.sweep "
                             "--output <folder>/<Trainer>): each such trainer runs with its selected values; use "
                             "another --output than the shipped-config runs'")
    parser.add_argument("--epoch-scale", type=int, default=1,
                        help="run every trainer K times its testbed epochs, every setting counted in epochs scaled "
                             "alike (default 1: the recipes); use another --output than the recipes' runs")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides for every run (KEY VALUE ...)")
    args = parser.parse_args(argv)
    trainers = args.trainers or proxy_trainers()
    keys = [t for t in trainers if re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+", t)]
    if keys:  # "--trainers CoOp MODEL.BACKBONE.PATH x.pt" reads the overrides as trainer names
        parser.error(f"{', '.join(keys)} in --trainers looks like a config key: put the config overrides (KEY VALUE "
                     "...) after every option")
    selections = load_selections(args.selections, trainers) if args.selections else {}
    for trainer, chosen in selections.items():
        print(f"{trainer}: {' '.join(map(str, chosen)) or 'the recipe'} (selected on val, {args.selections})")
    trainer_opts = scaled_opts(trainers, args.epoch_scale, selections, args.opts, parser)
    from vlpeft.testbed.datasets import generate, default_root

    for dataset in args.datasets:  # generate once, before the workers share the folder
        generate(dataset, osp.abspath(osp.expanduser(args.root or default_root())))
    start = time.time()
    units = [(d, s) for d in args.datasets for s in args.seeds]
    results, failed = run_all(units, trainers, args.output, args.root, args.opts, args.workers, trainer_opts)
    wall = time.time() - start
    records = [r for u in results for r in u["records"]]
    cpu = sum(u["cpu_s"] for u in results)
    reused = sum(r["reused"] for r in records)
    text, result = report(args.output, trainers, args.datasets, args.bootstrap)
    text += (f"\n\n{len(records)} base-to-new runs ({reused} earlier ones reused) over {len(units)} (dataset, seed) "
             f"units, {args.workers} worker(s): wall {wall:.0f} s, CPU {cpu:.0f} s (process time of the runs, all "
             f"threads), training + evaluation {sum(r['elapsed_s'] for r in records):.0f} s summed over runs.")
    if failed:
        text += ("\n\nFailed (a trainer on one dataset and seed, or a whole unit; the finished runs are kept: run the "
                 "command again to resume):\n" + "\n".join(f"- {d} seed{s}: {error}" for d, s, error in failed))
    if args.opts:
        text += f"\n\nConfig overrides for every run: {' '.join(map(str, args.opts))}"
    if args.epoch_scale > 1:
        text += (f"\n\nEvery trainer at {args.epoch_scale}x its testbed epochs, every setting counted in epochs scaled "
                 "alike (--epoch-scale; vlpeft.testbed.bench.epoch_scale_opts)")
    if selections:
        text += "\n\nSelected on the val split: " + "; ".join(
            f"{t} {' '.join(map(str, o)) or 'the recipe'}" for t, o in selections.items())
    print(text)
    result.update(runs=records, wall_s=wall, cpu_s=cpu, workers=args.workers, seeds=args.seeds,
                  datasets=args.datasets, trainers=trainers, failed=[list(f) for f in failed], selections=selections,
                  opts=list(args.opts), epoch_scale=args.epoch_scale)
    os.makedirs(args.output, exist_ok=True)
    atomic_write_text(osp.join(args.output, "proxy.md"), text + "\n")
    atomic_write_text(osp.join(args.output, "proxy.json"), json.dumps(result, indent=1) + "\n")
    if failed:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
