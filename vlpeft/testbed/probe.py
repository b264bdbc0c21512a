"""Linear probe vs zero-shot on the testbed's base-to-new base half: do the frozen image features hold more than
zero-shot naming finds?

    python -m vlpeft.testbed.probe                                   # 4 datasets, seeds 1 2 3
    python -m vlpeft.testbed.probe --datasets TestbedScenes --seeds 1 --json probe.json

Per dataset and seed, the data is built as ``python -m vlpeft.testbed.accuracy`` builds ZeroshotCLIP's base run
(CoOp's testbed config, ``DATASET.SUBSAMPLE_CLASSES base``, ``DATASET.NUM_SHOTS 16``, the seed set before the
trainer is built), so the 16-shot sample is the one ``train.py`` draws for that seed. The frozen testbed CLIP's
normalised image features (test transform, no augmentation) are computed once; then

* zero-shot: ZeroshotCLIP's classifier (the dataset's template) on the base test split;
* probe: multinomial logistic regression (torch, L-BFGS, cross-entropy + L2 weight decay on the weights), the
  decay chosen on the few-shot val split from ``WEIGHT_DECAYS`` (ties: the larger decay), accuracy on the base
  test split.

The table gives the means over seeds, the gap probe - zero-shot, and whether the gap meets the criterion (probe at
least ``--criterion`` = 15 points above zero-shot).
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


def build_zeroshot_trainer(dataset, seed, output_dir, root="", shots=SHOTS):
    """ZeroshotCLIP on the base half of ``dataset`` with ``shots`` shots, configured and seeded as
    ``vlpeft.testbed.accuracy.base_to_new`` runs it through ``train.py`` (nothing is written but the few-shot cache
    and, on first use, the generated dataset)."""
    import vlpeft.trainers  # noqa: F401  (registers trainers and datasets)
    from vlpeft.cli import build_parser, setup_cfg
    from vlpeft.engine import build_trainer, set_random_seed
    from vlpeft.testbed.accuracy import config_file

    argv = ["--root", root, "--seed", str(seed), "--trainer", "ZeroshotCLIP", "--config-file",
            config_file("ZeroshotCLIP"), "--eval-only", "--output-dir", output_dir,
            "DATASET.NAME", dataset, "DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", "base"]
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


def probe_one(dataset, seed, root="", shots=SHOTS, weight_decays=WEIGHT_DECAYS, quiet=True):
    """Zero-shot and linear-probe accuracy (%) on the base test split of ``dataset`` for one seed."""
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="vlpeft-probe-") as out, _quiet(quiet):
        trainer = build_zeroshot_trainer(dataset, seed, out, root, shots)
        ds = trainer.dm.dataset
        train = extract(trainer, ds.train_x)
        val = extract(trainer, ds.val) if ds.val else None
        test = extract(trainer, ds.test)
        num_classes = trainer.dm.num_classes
        zs_logits = test[0] @ trainer.model.text_features.float().cpu().t()
        zero_shot = accuracy(zs_logits.argmax(-1), test[1])
        torch.manual_seed(seed)
        probe = linear_probe(train, val, test, num_classes, weight_decays)
    return {"dataset": dataset, "seed": seed, "zero_shot": zero_shot, "probe": probe["accuracy"],
            "weight_decay": probe["weight_decay"], "probe_val": probe["val_accuracy"], "num_classes": num_classes,
            "n_train": len(train[1]), "n_val": len(val[1]) if val else 0, "n_test": len(test[1]),
            "elapsed_s": time.time() - t0}


def summarise(runs, criterion=15.0):
    """runs: per-seed dicts of one dataset -> the row's numbers (means over seeds)."""
    zs = float(np.mean([r["zero_shot"] for r in runs]))
    pr = float(np.mean([r["probe"] for r in runs]))
    return {"zero_shot": zs, "probe": pr, "gap": pr - zs, "meets_criterion": bool(pr - zs >= criterion),
            "seeds": [r["seed"] for r in runs], "runs": runs}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.testbed.probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--shots", type=int, default=SHOTS)
    parser.add_argument("--root", default="", help="dataset root (default: generated in the cache)")
    parser.add_argument("--criterion", type=float, default=15.0, help="points the probe must beat zero-shot by")
    parser.add_argument("--json", default="", help="write the numbers to this file (atomically)")
    parser.add_argument("--verbose", action="store_true", help="show the trainer's console output")
    args = parser.parse_args(argv)
    start = time.time()
    summary = {}
    for dataset in args.datasets:
        runs = []
        for seed in args.seeds:
            r = probe_one(dataset, seed, args.root, args.shots, quiet=not args.verbose)
            runs.append(r)
            print(f"{dataset} seed{seed}: zero-shot {r['zero_shot']:.1f} probe {r['probe']:.1f} "
                  f"(wd {r['weight_decay']:g}, {r['elapsed_s']:.0f}s)", flush=True)
        summary[dataset] = summarise(runs, args.criterion)
    rows = [[d, f"{s['zero_shot']:.2f}", f"{s['probe']:.2f}", f"{s['gap']:+.2f}",
             "yes" if s["meets_criterion"] else "no"] for d, s in summary.items()]
    print(f"\nBase half, {args.shots} shots, mean over seeds {' '.join(map(str, args.seeds))}; criterion: probe >= "
          f"zero-shot + {args.criterion:g} points\n")
    print(tabulate(rows, headers=["dataset", "zero-shot", "probe", "gap", "meets criterion"]))
    elapsed = time.time() - start
    print(f"\n{elapsed:.0f}s")
    if args.json:
        record = {"shots": args.shots, "seeds": args.seeds, "criterion": args.criterion, "elapsed_s": elapsed,
                  "datasets": summary}
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        atomic_write_text(args.json, json.dumps(record, indent=1) + "\n")
    return summary


if __name__ == "__main__":
    main()
