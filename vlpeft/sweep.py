"""Hyperparameter selection on the few-shot validation split (never on test).

    python -m vlpeft.sweep --trainer DIP --config-file configs/trainers/DIP/vit_b16_ep20_ctxv1.yaml --root $DATA \\
        --datasets configs/datasets/eurosat.yaml configs/datasets/dtd.yaml --seeds 1 2 3 \\
        --grid TRAINER.DIP.DROPOUT=0.1,0.25,0.5 OPTIM.MAX_EPOCH=10,20,50 [--subsample base] [--objective h] \\
        [KEY VALUE ...]

Every grid point x dataset x seed is a real training run (in-process ``train.py``) on the ``--subsample`` classes
(base by default, as base-to-new trains) with ``--shots`` shots, whose final evaluation is on the few-shot **val**
split (``TEST.SPLIT val``); a run without a val split is an error, not a silent test evaluation. Output directories
are ``<output>/<point>/<dataset>/seed<S>`` and finished runs (``results.json``) are reused. The table of mean val
accuracy per point is printed, and the best point is written to ``<output>/selection.json``.

``--objective h`` selects for base-to-new without looking at a new class: each run trains on the first half of the
base classes (``DATASET.SUBSAMPLE_CLASSES pseudo_base``) and is evaluated on the val split of that half and of the
other base half (``pseudo_new``, in ``seed<S>/pseudo_base`` and ``seed<S>/pseudo_new``); a point's score is the
harmonic mean H of the two mean val accuracies.
"""
import argparse
import itertools
import json
import os.path as osp
import statistics

from tabulate import tabulate


def parse_grid(items):
    """["KEY=v1,v2", ...] -> [(KEY, [v1, v2]), ...] (values kept as strings, parsed by the config)."""
    grid = []
    for item in items:
        if "=" not in item:
            raise ValueError(f'--grid entries are KEY=v1,v2,... (got "{item}")')
        key, values = item.split("=", 1)
        grid.append((key, [v for v in values.split(",") if v != ""]))
    return grid


def point_name(point):
    return "_".join(f"{key.split('.')[-1]}{value}" for key, value in point)


def dataset_flags(dataset):
    """A dataset config file, or a registered dataset name (e.g. a testbed dataset)."""
    if dataset.endswith(".yaml") or osp.isfile(dataset):
        return ["--dataset-config-file", dataset], [], osp.splitext(osp.basename(dataset))[0]
    return [], ["DATASET.NAME", dataset], dataset


def _val_accuracy(flags, opts, out, quiet, name):
    """A ``train.py`` run (or an earlier one's record) evaluated on the val split; its accuracy."""
    from vlpeft.testbed.accuracy import run_train

    record = run_train(flags, [*opts, "TEST.SPLIT", "val"], out, quiet)
    if record.get("split") != "val":
        raise RuntimeError(f"{name} has no validation split here (evaluated on {record.get('split')}): "
                           f"a sweep never selects on test; see {out}")
    return record["accuracy"]


def _held_out_accuracies(flags, opts, out, quiet, name):
    """Train on the first half of the base classes, evaluate both halves on val: (pseudo-base, pseudo-new)."""
    from vlpeft.testbed.accuracy import last_epoch

    train_dir = osp.join(out, "pseudo_base")
    base = _val_accuracy(flags, [*opts, "DATASET.SUBSAMPLE_CLASSES", "pseudo_base"], train_dir, quiet, name)
    new = _val_accuracy([*flags, "--eval-only", "--model-dir", train_dir, "--load-epoch", last_epoch(train_dir)],
                        [*opts, "DATASET.SUBSAMPLE_CLASSES", "pseudo_new"], osp.join(out, "pseudo_new"), quiet, name)
    return base, new


def sweep(trainer, config_file, datasets, seeds, grid, output, root="", shots=16, subsample="base", opts=(),
          quiet=True, objective="accuracy"):
    """Run the grid; returns [(point, score, [accuracies])], best first; ties keep the grid's order.

    ``objective="accuracy"``: the score is the mean val accuracy of runs trained on the ``subsample`` classes.
    ``objective="h"``: each run trains on the first half of the base classes (``pseudo_base``) and is evaluated on
    the val split of both halves; the score is the harmonic mean of the mean accuracies on the two halves, as
    base-to-new's H is, with the base classes' own val images only (the accuracies are the ``pseudo_base`` ones;
    the ``pseudo_new`` ones are in ``selection.json``)."""
    from vlpeft.engine.utils import atomic_write_text
    from vlpeft.results import harmonic

    if objective not in ("accuracy", "h"):
        raise ValueError(f'objective is "{objective}"; it must be accuracy or h')
    if objective == "h" and subsample != "base":
        raise ValueError("--objective h splits the base classes in two; it needs --subsample base")
    keys = [key for key, _ in grid]
    scored = []  # (point, its selection.json entry)
    for values in itertools.product(*[vals for _, vals in grid]):
        point = list(zip(keys, values))
        accuracies, new_accuracies = [], []
        for dataset in datasets:
            data_flags, dataset_opts, name = dataset_flags(dataset)
            for seed in seeds:
                flags = ["--root", root, "--seed", seed, "--trainer", trainer, "--config-file", config_file,
                         *data_flags]
                run_opts = [*dataset_opts, "DATASET.NUM_SHOTS", shots, *opts, *[x for kv in point for x in kv]]
                out = osp.join(output, point_name(point), name, f"seed{seed}")
                if objective == "accuracy":
                    accuracies.append(_val_accuracy(flags, [*run_opts, "DATASET.SUBSAMPLE_CLASSES", subsample], out,
                                                    quiet, name))
                    print(f"{point_name(point)} {name} seed{seed}: val accuracy {accuracies[-1]:.2f}")
                    continue
                base, new = _held_out_accuracies(flags, run_opts, out, quiet, name)
                accuracies.append(base)
                new_accuracies.append(new)
                print(f"{point_name(point)} {name} seed{seed}: val accuracy {base:.2f} (pseudo-base) / "
                      f"{new:.2f} (pseudo-new)")
        if objective == "accuracy":
            entry = {"point": dict(point), "mean": statistics.mean(accuracies), "accuracies": accuracies}
        else:
            base, new = statistics.mean(accuracies), statistics.mean(new_accuracies)
            entry = {"point": dict(point), "mean": harmonic(base, new), "accuracies": accuracies, "base": base,
                     "new": new, "new_accuracies": new_accuracies}
        scored.append((point, entry))
    # stable: equal scores (up to float summation noise) keep grid order
    scored.sort(key=lambda item: -round(item[1]["mean"], 6))

    def describe(point):
        return ", ".join(f"{k} {v}" for k, v in point)

    if objective == "accuracy":
        table = [[describe(point), f"{e['mean']:.2f}",
                  f"{statistics.stdev(e['accuracies']):.2f}" if len(e["accuracies"]) > 1 else "-"]
                 for point, e in scored]
        print(tabulate(table, headers=["point", "mean val accuracy", "std"]))
    else:
        table = [[describe(point), f"{e['base']:.2f}", f"{e['new']:.2f}", f"{e['mean']:.2f}"] for point, e in scored]
        print(tabulate(table, headers=["point", "pseudo-base val", "pseudo-new val", "H"]))
    rows = [(point, e["mean"], e["accuracies"]) for point, e in scored]
    best = rows[0]
    points = [e for _, e in scored]
    selection = {"trainer": trainer, "config_file": config_file, "datasets": list(datasets), "seeds": list(seeds),
                 "shots": shots, "subsample": subsample, "split": "val", "objective": objective,
                 "best": dict(best[0]),
                 ("best_mean_val_accuracy" if objective == "accuracy" else "best_val_h"): best[1],
                 "points": points}
    atomic_write_text(osp.join(output, "selection.json"), json.dumps(selection, indent=2) + "\n")
    print(f"best on val: {describe(best[0])} ({best[1]:.2f}{' H' if objective == 'h' else ''}); "
          f"written to {osp.join(output, 'selection.json')}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trainer", required=True)
    parser.add_argument("--config-file", required=True)
    parser.add_argument("--datasets", nargs="+", required=True, help="dataset config files or dataset names")
    parser.add_argument("--grid", nargs="+", required=True, help="KEY=v1,v2,... per swept key")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--subsample", default="base", choices=["base", "all"])
    parser.add_argument("--objective", default="accuracy", choices=["accuracy", "h"],
                        help="accuracy: mean val accuracy of the --subsample classes; h: train on half of the base "
                             "classes, H of the val accuracies of both halves (base-to-new without new classes)")
    parser.add_argument("--root", default="")
    parser.add_argument("--output", default="")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="fixed config overrides (KEY VALUE ...)")
    args = parser.parse_args(argv)
    output = args.output or osp.join("output", "sweep", args.trainer)
    return sweep(args.trainer, args.config_file, args.datasets, args.seeds, parse_grid(args.grid), output,
                 args.root, args.shots, args.subsample, args.opts, quiet=not args.verbose, objective=args.objective)


if __name__ == "__main__":
    main()
