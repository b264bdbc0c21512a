"""The embedded default of ``python train.py`` (no arguments): a short, real CoOp (class-specific context) training run end to end with no
downloads.

**What it is, plainly:** a *randomly initialised* tiny CLIP (OpenAI checkpoint format, 32x32 input) and a small
generated dataset in EuroSAT's on-disk layout (10 classes of coloured, striped images), both written once to
``$VLPEFT_CACHE`` (default ``~/.cache/vlpeft``). The run goes through the real code paths (checkpoint loading,
dataset loader with its split file and few-shot cache, transforms, Dassl-style loop, checkpointing, evaluation), but
its accuracy says nothing about CLIP or about CoOp. Real runs need CLIP weights and datasets: see the README.
"""
import os
import os.path as osp

DEMO_SEED = 1


def cache_root():
    return osp.abspath(osp.expanduser(os.environ.get("VLPEFT_CACHE", "~/.cache/vlpeft")))


def prepare(root=None):
    """Write the demo checkpoint and dataset under ``root`` once; return (checkpoint path, data root)."""
    from vlpeft.clip.testing import save_tiny_checkpoint
    from vlpeft.testing.layouts import make_layout

    root = root or osp.join(cache_root(), "demo")
    ckpt = osp.join(root, "tiny-random-clip.pt")
    data = osp.join(root, "data")
    if not osp.isfile(ckpt):
        os.makedirs(root, exist_ok=True)
        tmp = ckpt + ".tmp"
        save_tiny_checkpoint(tmp, seed=0, image_size=32, patch_size=8)
        os.replace(tmp, ckpt)
    if not osp.isfile(osp.join(data, "eurosat", "split_zhou_EuroSAT.json")):
        make_layout("EuroSAT", data, num_classes=10, per_class=(8, 4, 10), image_size=32, seed=0)
    return ckpt, data


def demo_argv(output_dir="output/demo/CoOp/seed1"):
    print("=" * 100)
    print("vlpeft demo: CoOp on a generated 10-class dataset (EuroSAT layout) with a RANDOMLY INITIALISED tiny CLIP.")
    print("No downloads. The numbers below test the pipeline, not CLIP. For real runs see README.md.")
    print("=" * 100)
    ckpt, data = prepare()
    return [
        "--root", data, "--seed", str(DEMO_SEED), "--trainer", "CoOp", "--output-dir", output_dir,
        "DATASET.NAME", "EuroSAT", "DATASET.NUM_SHOTS", "8",
        "MODEL.BACKBONE.NAME", "tiny-random", "MODEL.BACKBONE.PATH", ckpt,
        "INPUT.SIZE", "(32, 32)", "INPUT.INTERPOLATION", "bicubic",
        "INPUT.TRANSFORMS", "['random_flip', 'normalize']",
        "INPUT.PIXEL_MEAN", "[0.48145466, 0.4578275, 0.40821073]",
        "INPUT.PIXEL_STD", "[0.26862954, 0.26130258, 0.27577711]",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "DATALOADER.TEST.BATCH_SIZE", "50", "DATALOADER.NUM_WORKERS", "0",
        "OPTIM.NAME", "sgd", "OPTIM.LR", "0.002", "OPTIM.MAX_EPOCH", "20", "OPTIM.LR_SCHEDULER", "cosine",
        "OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "OPTIM.WARMUP_CONS_LR", "1e-5",
        "TRAIN.PRINT_FREQ", "5", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.CSC", "True", "TRAINER.COOP.PREC", "fp32",
    ]
