import os
import sys

import pytest

os.environ.setdefault("VLPEFT_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLPEFT_ENGINE", "vlpeft")


@pytest.fixture(autouse=True)
def _restore_stdout():
    """train.py tees stdout into log.txt; undo that after every test that ran it in-process."""
    original = sys.stdout
    yield
    from vlpeft.engine.utils import close_logger

    close_logger()
    sys.stdout = original


@pytest.fixture(scope="session")
def tiny_clip_path(tmp_path_factory):
    from vlpeft.clip.random_weights import save_tiny_checkpoint

    path = tmp_path_factory.mktemp("clip") / "tiny.pt"
    save_tiny_checkpoint(path, seed=0, image_size=32, patch_size=8)
    return str(path)


@pytest.fixture(scope="session")
def eurosat_root(tmp_path_factory):
    from vlpeft.datasets.synthetic import make_layout

    root = tmp_path_factory.mktemp("data")
    make_layout("EuroSAT", root, num_classes=10, per_class=(4, 2, 3), image_size=32, seed=0)
    return str(root)


def tiny_opts(clip_path, **overrides):
    """KEY VALUE opts that run any trainer quickly on the tiny CLIP and 32x32 images."""
    opts = {
        "MODEL.BACKBONE.NAME": "tiny", "MODEL.BACKBONE.PATH": clip_path,
        "INPUT.SIZE": "(32, 32)", "INPUT.INTERPOLATION": "bicubic",
        "INPUT.TRANSFORMS": "['random_resized_crop', 'random_flip', 'normalize']",
        "INPUT.PIXEL_MEAN": "[0.48145466, 0.4578275, 0.40821073]",
        "INPUT.PIXEL_STD": "[0.26862954, 0.26130258, 0.27577711]",
        "DATALOADER.NUM_WORKERS": "0", "DATALOADER.TRAIN_X.BATCH_SIZE": "8", "DATALOADER.TEST.BATCH_SIZE": "16",
        "OPTIM.NAME": "sgd", "OPTIM.LR": "0.002", "OPTIM.MAX_EPOCH": "2", "OPTIM.LR_SCHEDULER": "cosine",
        "OPTIM.WARMUP_EPOCH": "1", "OPTIM.WARMUP_TYPE": "constant", "OPTIM.WARMUP_CONS_LR": "1e-5",
        "TRAIN.PRINT_FREQ": "1",
    }
    opts.update({k: str(v) for k, v in overrides.items()})
    return [x for kv in opts.items() for x in kv]


def cfg_with(**kv):
    """vlpeft's default config with dotted ``KEY=value`` overrides (values set as given, no parsing)."""
    from vlpeft.config import get_cfg

    cfg = get_cfg()
    for key, value in kv.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def build_seeded(cfg, seed=1):
    """The registered trainer of ``cfg`` built after ``set_random_seed(seed)`` (as train.py does)."""
    import vlpeft.trainers  # noqa: F401
    from vlpeft.engine import build_trainer, set_random_seed

    set_random_seed(seed)
    return build_trainer(cfg)
