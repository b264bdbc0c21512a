"""Hyperparameter selection on the few-shot validation split (never on test).

    python -m vlpeft.sweep --trainer DIP --config-file configs/trainers/DIP/vit_b16_ep20_ctxv1.yaml --root $DATA \\
        --datasets configs/datasets/eurosat.yaml configs/datasets/dtd.yaml --seeds 1 2 3 \\
        --grid TRAINER.DIP.DROPOUT=0.1,0.25,0.5 OPTIM.MAX_EPOCH=10,20,50 [--subsample base] [KEY VALUE ...]

Every grid point x dataset x seed is a real training run (in-process ``train.py``) on the ``--subsample`` classes
(base by default, as base-to-new trains) with ``--shots`` shots, whose final evaluation is on the few-shot **val**
split (``TEST.SPLIT val``); a run without a val split is an error, not a silent test evaluation. Output directories
are ``<output>/<point>/<dataset>/seed<S>`` and finished runs (``results.json``) are reused. The table of mean val
accuracy per point is printed, and the best point is written to ``<output>/selection.json``.
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


def sweep(trainer, config_file, datasets, seeds, grid, output, root="", shots=16, subsample="base", opts=(),
          quiet=True):
    """Run the grid; returns [(point, mean val accuracy, [accuracies])], best first; ties keep the grid's order."""
    from vlpeft.engine.utils import atomic_write_text
    from vlpeft.testbed.accuracy import run_train

    keys = [key for key, _ in grid]
    rows = []
    for values in itertools.product(*[vals for _, vals in grid]):
        point = list(zip(keys, values))
        accuracies = []
        for dataset in datasets:
            flags, dataset_opts, name = dataset_flags(dataset)
            for seed in seeds:
                out = osp.join(output, point_name(point), name, f"seed{seed}")
                record = run_train(
                    ["--root", root, "--seed", seed, "--trainer", trainer, "--config-file", config_file, *flags],
                    [*dataset_opts, "DATASET.NUM_SHOTS", shots, "DATASET.SUBSAMPLE_CLASSES", subsample,
                     "TEST.SPLIT", "val", *opts, *[x for kv in point for x in kv]], out, quiet)
                if record.get("split") != "val":
                    raise RuntimeError(f"{name} has no validation split here (evaluated on {record.get('split')}): "
                                       f"a sweep never selects on test; see {out}")
                accuracies.append(record["accuracy"])
                print(f"{point_name(point)} {name} seed{seed}: val accuracy {record['accuracy']:.2f}")
        rows.append((point, statistics.mean(accuracies), accuracies))
    rows.sort(key=lambda row: -round(row[1], 6))  # stable: equal means (up to float summation noise) keep grid order
    table = [[", ".join(f"{k} {v}" for k, v in point), f"{mean:.2f}",
              f"{statistics.stdev(accs):.2f}" if len(accs) > 1 else "-"] for point, mean, accs in rows]
    print(tabulate(table, headers=["point", "mean val accuracy", "std"]))
    best = rows[0]
    selection = {"trainer": trainer, "config_file": config_file, "datasets": list(datasets), "seeds": list(seeds),
                 "shots": shots, "subsample": subsample, "split": "val",
                 "best": dict(best[0]), "best_mean_val_accuracy": best[1],
                 "points": [{"point": dict(p), "mean": m, "accuracies": a} for p, m, a in rows]}
    atomic_write_text(osp.join(output, "selection.json"), json.dumps(selection, indent=2) + "\n")
    print(f"best on val: {', '.join(f'{k} {v}' for k, v in best[0])} ({best[1]:.2f}); "
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
    parser.add_argument("--root", default="")
    parser.add_argument("--output", default="")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="fixed config overrides (KEY VALUE ...)")
    args = parser.parse_args(argv)
    output = args.output or osp.join("output", "sweep", args.trainer)
    return sweep(args.trainer, args.config_file, args.datasets, args.seeds, parse_grid(args.grid), output,
                 args.root, args.shots, args.subsample, args.opts, quiet=not args.verbose)


if __name__ == "__main__":
    main()
