"""Linear probe vs zero-shot on the testbed's base-to-new halves: do the frozen image features hold more than
zero-shot naming finds on the base half (room to learn), and does zero-shot CLIP name both halves well above chance
(transfer, as on the real suite)?

    python -m vlpeft.testbed.probe                                   # every testbed dataset, seeds 1 2 3
    python -m vlpeft.testbed.probe --datasets TestbedScenes --seeds 1 --json probe.json

Per dataset and seed, the data is built as ``python -m vlpeft.testbed.accuracy`` builds ZeroshotCLIP's base run
(CoOp's testbed config, ``DATASET.SUBSAMPLE_CLASSES base``, ``DATASET.NUM_SHOTS 16``, the seed set before the
trainer is built), so the 16-shot sample is the one ``train.py`` draws for that seed. The frozen testbed CLIP's
normalised image features (test transform, no augmentation) are computed once; then

* zero-shot: ZeroshotCLIP's classifier (the dataset's template) on the base test split, and on the new test split
  (a ZeroshotCLIP built the same way with ``DATASET.SUBSAMPLE_CLASSES new``);
* probe: multinomial logistic regression (torch, L-BFGS, cross-entropy + L2 weight decay on the weights), the
  decay chosen on the few-shot val split from ``WEIGHT_DECAYS`` (ties: the larger decay), accuracy on the base
  test split.

The table gives the means over seeds, the gap probe - zero-shot on the base half, and the two criteria: room (probe
at least ``--criterion`` = 15 points above zero-shot) and transfer (zero-shot at least ``--transfer`` = 3 times
chance on both halves).
"""
import argparse
import json
import os
import os.path as osp
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from tabulate import tabulate

from vlpeft.engine.utils import atomic_write_text
from vlpeft.testbed.accuracy import _quiet
from vlpeft.testbed.datasets import SPECS

WEIGHT_DECAYS = (1e-4, 1e-3, 1e-2, 1e-1, 1e0, 1e1)
SHOTS = 16


def fit_logistic_regression(x, y, num_classes, weight_decay=0.0, max_iter=200):
    """Multinomial logistic regression on features ``x [N, D]``, labels ``y [N]``: minimises mean cross-entropy +
    ``weight_decay / 2 * ||W||^2`` (the bias is not decayed) with L-BFGS; returns ``(W [C, D], b [C])``."""
    x = x.float()
    w = torch.zeros(num_classes, x.shape[1], requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, history_size=20, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.t() + b, y) + 0.5 * weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def predict(params, x):
    w, b = params
    return (x.float() @ w.t() + b).argmax(-1)


def accuracy(pred, y):
    return float((pred == y).float().mean().item() * 100) if len(y) else 0.0


def linear_probe(train, val, test, num_classes, weight_decays=WEIGHT_DECAYS):
    """``train``/``val``/``test``: ``(features, labels)``. The decay with the best val accuracy (ties: the larger),
    refit on train; returns {"accuracy" (test, %), "weight_decay", "val_accuracy"}."""
    best = None
    for wd in weight_decays:
        params = fit_logistic_regression(*train, num_classes, wd)
        acc = accuracy(predict(params, val[0]), val[1]) if val is not None else 0.0
        if best is None or acc >= best[0]:
            best = (acc, wd, params)
    val_acc, wd, params = best
    return {"accuracy": accuracy(predict(params, test[0]), test[1]), "weight_decay": wd, "val_accuracy": val_acc}


def build_zeroshot_trainer(dataset, seed, output_dir, root="", shots=SHOTS, subsample="base", opts=()):
    """ZeroshotCLIP on the ``subsample`` half of ``dataset`` with ``shots`` shots, configured and seeded as
    ``vlpeft.testbed.accuracy.base_to_new`` runs it through ``train.py`` (nothing is written but the few-shot cache
    and, on first use, the generated dataset). ``opts``: config overrides (KEY VALUE ...), e.g. another tower's
    ``MODEL.BACKBONE.PATH``."""
    import vlpeft.trainers  # noqa: F401  (registers trainers and datasets)
    from vlpeft.cli import build_parser, setup_cfg
    from vlpeft.engine import build_trainer, set_random_seed
    from vlpeft.testbed.accuracy import config_file

    argv = ["--root", root, "--seed", str(seed), "--trainer", "ZeroshotCLIP", "--config-file",
            config_file("ZeroshotCLIP"), "--eval-only", "--output-dir", output_dir,
            "DATASET.NAME", dataset, "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", subsample, *opts]
    cfg = setup_cfg(build_parser().parse_args(argv))
    if cfg.SEED >= 0:
        set_random_seed(cfg.SEED)
    return build_trainer(cfg)


@torch.no_grad()
def extract(trainer, items):
    """Normalised image features and labels of ``items`` (Datum list) under the test transform."""
    from vlpeft.engine.datamanager import build_data_loader

    cfg = trainer.cfg
    loader = build_data_loader(cfg, sampler_type="SequentialSampler", data_source=items,
                               batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=trainer.dm.tfm_test, is_train=False)
    model = trainer.model
    model.eval()
    feats, labels = [], []
    for batch in loader:
        image = batch["img"].to(trainer.device)
        f = model.image_encoder(image).float()
        feats.append((f / f.norm(dim=-1, keepdim=True)).cpu())
        labels.append(batch["label"])
    return torch.cat(feats), torch.cat(labels).long()


def zero_shot_accuracy(trainer, items):
    """Accuracy (%) of ``trainer``'s zero-shot classifier on ``items``, with their (image features, labels)."""
    features, labels = extract(trainer, items)
    return accuracy((features @ trainer.model.text_features.float().cpu().t()).argmax(-1), labels), (features, labels)


def probe_one(dataset, seed, root="", shots=SHOTS, weight_decays=WEIGHT_DECAYS, quiet=True, opts=()):
    """Zero-shot accuracy (%) on the base and new test splits of ``dataset`` and linear-probe accuracy on the base
    one, for one seed."""
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="vlpeft-probe-") as out, _quiet(quiet):
        trainer = build_zeroshot_trainer(dataset, seed, out, root, shots, opts=opts)
        ds = trainer.dm.dataset
        train = extract(trainer, ds.train_x)
        val = extract(trainer, ds.val) if ds.val else None
        zero_shot, test = zero_shot_accuracy(trainer, ds.test)
        num_classes = trainer.dm.num_classes
        new = build_zeroshot_trainer(dataset, seed, out, root, shots, subsample="new", opts=opts)
        zero_shot_new, _ = zero_shot_accuracy(new, new.dm.dataset.test)
        num_new = new.dm.num_classes
        torch.manual_seed(seed)
        probe = linear_probe(train, val, test, num_classes, weight_decays)
    return {"dataset": dataset, "seed": seed, "zero_shot": zero_shot, "probe": probe["accuracy"],
            "zero_shot_new": zero_shot_new, "chance": 100.0 / num_classes, "chance_new": 100.0 / num_new,
            "weight_decay": probe["weight_decay"], "probe_val": probe["val_accuracy"], "num_classes": num_classes,
            "n_train": len(train[1]), "n_val": len(val[1]) if val else 0, "n_test": len(test[1]),
            "elapsed_s": time.time() - t0}


def summarise(runs, criterion=15.0, transfer=3.0):
    """runs: per-seed dicts of one dataset -> the row's numbers (means over seeds) and its two criteria: room (probe
    >= zero-shot + ``criterion`` on the base half) and transfer (zero-shot >= ``transfer`` x chance on both halves)."""
    zs, pr, zs_new = (float(np.mean([r[k] for r in runs])) for k in ("zero_shot", "probe", "zero_shot_new"))
    chance, chance_new = runs[0]["chance"], runs[0]["chance_new"]
    return {"zero_shot": zs, "probe": pr, "gap": pr - zs, "meets_criterion": bool(pr - zs >= criterion),
            "zero_shot_new": zs_new, "chance": chance, "chance_new": chance_new,
            "meets_transfer": bool(zs >= transfer * chance and zs_new >= transfer * chance_new),
            "seeds": [r["seed"] for r in runs], "runs": runs}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.testbed.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", type=int, default=SHOTS)
    parser.add_argument("--root", default="", help="dataset root (default: generated in the cache)")
    parser.add_argument("--criterion", type=float, default=15.0, help="points the probe must beat zero-shot by")
    parser.add_argument("--transfer", type=float, default=3.0,
                        help="multiple of chance zero-shot must reach on both halves")
    parser.add_argument("--json", default="", help="write the numbers to this file (atomically)")
    parser.add_argument("--verbose", action="store_true", help="show the trainer's console output")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="config overrides for every run (KEY VALUE ...), e.g. MODEL.BACKBONE.PATH of a rebuilt "
                             "tower")
    args = parser.parse_args(argv)
    start = time.time()
    summary = {}
    for dataset in args.datasets:
        runs = []
        for seed in args.seeds:
            r = probe_one(dataset, seed, args.root, args.shots, quiet=not args.verbose, opts=args.opts)
            runs.append(r)
            print(f"{dataset} seed{seed}: zero-shot {r['zero_shot']:.1f} (new half {r['zero_shot_new']:.1f}) "
                  f"probe {r['probe']:.1f} "
                  f"(wd {r['weight_decay']:g}, {r['elapsed_s']:.0f}s)", flush=True)
        summary[dataset] = summarise(runs, args.criterion, args.transfer)
    yes = {True: "yes", False: "no"}
    rows = [[d, f"{s['zero_shot']:.2f}", f"{s['probe']:.2f}", f"{s['gap']:+.2f}", yes[s["meets_criterion"]],
             f"{s['zero_shot_new']:.2f}", f"{s['chance']:.1f} / {s['chance_new']:.1f}", yes[s["meets_transfer"]]]
            for d, s in summary.items()]
    print(f"\n{args.shots} shots, mean over seeds {' '.join(map(str, args.seeds))}; room: probe >= zero-shot + "
          f"{args.criterion:g} points on the base half; transfer: zero-shot >= {args.transfer:g} x chance on both "
          f"halves{'; config overrides: ' + ' '.join(args.opts) if args.opts else ''}\n")
    print(tabulate(rows, headers=["dataset", "zero-shot base", "probe base", "gap", "room", "zero-shot new",
                                  "chance base / new", "transfer"], disable_numparse=True))  # keeps the gap's sign
    elapsed = time.time() - start
    print(f"\n{elapsed:.0f}s")
    if args.json:
        record = {"shots": args.shots, "seeds": args.seeds, "criterion": args.criterion,
                  "transfer": args.transfer, "opts": args.opts, "elapsed_s": elapsed,
                  "datasets": summary}
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
