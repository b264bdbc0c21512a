"""What a DPC training step costs, against its forward/backward on the enlarged batch alone.

    python -m vlpeft.bench_dpc                       # small random CLIP at 224 px, 3 epochs, on this machine
    python -m vlpeft.bench_dpc --clip ViT-B/16 --epochs 3 --classes 50   # the real architecture (random weights)

A DPC step (vlpeft.trainers.dpc) scores the batch with the frozen backbone, chooses the hard negatives, loads one
training image per negative class and trains on the enlarged batch. This runs real DPC training (train.py's code
path: data manager, data loader, negative pool) on a generated Caltech101-layout dataset of JPEG images
(``--image-size`` px, ``--images-per-class`` train images per class) with random CLIP weights and a backbone saved
from the base learner's initial prompts, and reports per epoch: the mean step time, the loader's data time, the time
the step waited for negative images, the image cache hit rate and the mean enlarged batch. Then, on the enlarged
batches recorded in the last epoch, it times the forward/backward alone (``DPC.train_on_pairs``: text features of
all training classes, image features of the L images, L_CL, backward, SGD step): the reference a DPC step should
match once the negatives load in the background. Prints a table and writes ``bench_dpc.md`` / ``.json`` to --out.
"""
import argparse
import json
import os
import os.path as osp
import shutil
import tempfile
import time

import torch
from tabulate import tabulate

from vlpeft.engine.utils import atomic_write_text


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _clip_checkpoint(kind, path):
    from vlpeft.clip.random_weights import random_openai_state_dict, save_tiny_checkpoint

    if kind == "small":
        save_tiny_checkpoint(path, seed=0, image_size=224, patch_size=16, vision_width=192, vision_layers=4,
                             text_width=128, text_layers=4, embed_dim=128)
    else:
        torch.save(random_openai_state_dict(kind, seed=0), path)
    return "small-random" if kind == "small" else kind


def _cfg(args, root, clip_name, clip_path, trainer, out, **extra):
    from vlpeft.config import get_cfg
    from vlpeft.resources import packaged_config

    cfg = get_cfg()
    cfg.merge_from_file(packaged_config("trainers", "DPC", "coop_vit_b16_ep20_bs4_top8.yaml"))
    prec = "fp16" if torch.cuda.is_available() else "fp32"
    opts = {"DATASET.NAME": "Caltech101", "DATASET.ROOT": root, "DATASET.NUM_SHOTS": args.shots,
            "DATASET.SUBSAMPLE_CLASSES": "base", "SEED": 1, "TRAINER.NAME": trainer,
            "MODEL.BACKBONE.NAME": clip_name, "MODEL.BACKBONE.PATH": clip_path, "TRAINER.COOP.PREC": prec,
            "OPTIM.MAX_EPOCH": args.epochs, "DATALOADER.NUM_WORKERS": args.loader_workers,
            "TRAINER.DPC.WORKERS": args.workers, "TRAINER.DPC.POOL": args.pool, "TEST.NO_TEST": True,
            "TRAIN.PRINT_FREQ": 10 ** 6, "OUTPUT_DIR": out, **extra}
    for key, value in opts.items():
        cfg.merge_from_list([key, str(value)])
    return cfg


def run(args):
    """Generate the data, train, time; the generated files are removed afterwards."""
    tmp = tempfile.mkdtemp(prefix="vlpeft-bench-dpc-")
    try:
        return _run(args, tmp)
    finally:
        from vlpeft.engine.utils import close_logger

        close_logger()
        shutil.rmtree(tmp, ignore_errors=True)


def _run(args, tmp):
    import vlpeft.trainers  # noqa: F401
    from vlpeft.datasets.synthetic import make_layout
    from vlpeft.engine import build_trainer, set_random_seed

    make_layout("Caltech101", tmp, num_classes=args.classes, per_class=(args.images_per_class, 2, 2),
                image_size=args.image_size, seed=0)
    clip_path = osp.join(tmp, "clip.pt")
    clip_name = _clip_checkpoint(args.clip, clip_path)
    if clip_name == "small-random":
        clip_name = "tiny"
    backbone_cfg = _cfg(args, tmp, clip_name, clip_path, "CoOp", osp.join(tmp, "backbone"))
    set_random_seed(1)
    backbone = build_trainer(backbone_cfg)
    backbone.save_model(args.epochs - 1, osp.join(tmp, "backbone"))
    del backbone

    cfg = _cfg(args, tmp, clip_name, clip_path, "DPC", osp.join(tmp, "dpc"),
               **{"TRAINER.DPC.BACKBONE_DIR": osp.join(tmp, "backbone")})
    set_random_seed(1)
    trainer = build_trainer(cfg)
    device = trainer.device
    records, pairs = [], []
    original = trainer.forward_backward
    last = {"end": None}

    def timed_forward_backward(batch):
        _sync(device)
        start = time.perf_counter()
        data = start - last["end"] if last["end"] is not None and trainer.batch_idx > 0 else float("nan")
        wait_before = trainer._stats["wait"]
        captured = {}
        inner = trainer.train_on_pairs

        def capture(images, labels, known=None):
            captured["pair"] = (images, labels)
            return inner(images, labels, known)

        trainer.train_on_pairs = capture
        try:
            summary = original(batch)
        finally:
            trainer.train_on_pairs = inner
        _sync(device)
        end = time.perf_counter()
        last["end"] = end
        records.append({"epoch": trainer.epoch, "step_s": end - start, "data_s": data,
                        "wait_s": trainer._stats["wait"] - wait_before, "pairs": len(captured["pair"][1]),
                        "hits": trainer.pool.cache.hits, "misses": trainer.pool.cache.misses})
        if trainer.epoch == trainer.max_epoch - 1:
            pairs.append(captured["pair"])
        return summary

    trainer.forward_backward = timed_forward_backward
    trainer.train()  # closes the pool (DPC.after_train)

    trainer.set_model_mode("train")
    reference = []
    for images, labels in pairs[:3]:  # warm-up (the first steps after training pay one-off allocation costs)
        trainer.train_on_pairs(images, labels)
    for images, labels in pairs:
        _sync(device)
        start = time.perf_counter()
        trainer.train_on_pairs(images, labels)
        _sync(device)
        reference.append(time.perf_counter() - start)

    rows, summary = [], {"device": str(device), "clip": args.clip, "classes": trainer.n_classes,
                         "pool": args.pool, "pool_images": len(trainer.pool), "workers": args.workers,
                         "image_size": args.image_size, "epochs": []}
    prev_hits = prev_misses = 0
    for epoch in range(args.epochs):
        rs = [r for r in records if r["epoch"] == epoch]
        hits, misses = rs[-1]["hits"] - prev_hits, rs[-1]["misses"] - prev_misses
        prev_hits, prev_misses = rs[-1]["hits"], rs[-1]["misses"]
        datas = [r["data_s"] for r in rs if r["data_s"] == r["data_s"]]
        e = {"epoch": epoch + 1, "steps": len(rs), "step_ms": 1000 * sum(r["step_s"] for r in rs) / len(rs),
             "data_ms": 1000 * sum(datas) / max(len(datas), 1),
             "wait_ms": 1000 * sum(r["wait_s"] for r in rs) / len(rs),
             "cache_hits": 100 * hits / max(hits + misses, 1), "pairs": sum(r["pairs"] for r in rs) / len(rs)}
        summary["epochs"].append(e)
        rows.append([e["epoch"], e["steps"], f"{e['pairs']:.1f}", f"{e['step_ms']:.1f}", f"{e['data_ms']:.1f}",
                     f"{e['wait_ms']:.1f}", f"{e['cache_hits']:.0f}%"])
    ref_ms = 1000 * sum(reference) / len(reference)
    last_ms = summary["epochs"][-1]["step_ms"]
    summary.update(reference_ms=ref_ms, last_epoch_step_ms=last_ms, ratio=last_ms / ref_ms)
    table = tabulate(rows, headers=["epoch", "steps", "pairs/step", "step ms", "data ms", "wait ms", "cache hits"])
    text = (f"DPC step cost: {summary['device']}, CLIP {args.clip} (random weights), {trainer.n_classes} classes, "
            f"pool {args.pool} ({len(trainer.pool):,} JPEGs of {args.image_size} px), {args.workers} loader threads\n\n"
            f"{table}\n\nforward/backward alone on the last epoch's enlarged batches: {ref_ms:.1f} ms per step; "
            f"a DPC step of the last epoch: {last_ms:.1f} ms ({last_ms / ref_ms:.2f}x)\n")
    print(text)
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(osp.join(args.out, "bench_dpc.md"), text)
    atomic_write_text(osp.join(args.out, "bench_dpc.json"), json.dumps(summary, indent=1) + "\n")
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m vlpeft.bench_dpc", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", default="small", help='"small" (random, 224 px, 4 blocks) or e.g. ViT-B/16')
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--classes", type=int, default=20, help="dataset classes (the base half is trained)")
    parser.add_argument("--images-per-class", type=int, default=40, help="train images per class")
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--image-size", type=int, default=320, help="side of the generated JPEGs")
    parser.add_argument("--pool", default="split_train", choices=["split_train", "fewshot"])
    parser.add_argument("--workers", type=int, default=4, help="negative-image threads (TRAINER.DPC.WORKERS)")
    parser.add_argument("--loader-workers", type=int, default=0, help="DATALOADER.NUM_WORKERS")
    parser.add_argument("--out", default="output/bench_dpc")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
