"""``extend_cfg(cfg)``: the keys vlpeft adds to Dassl's defaults.

Each trainer owns its config node: its module calls :func:`trainer_config` with its defaults (e.g. ``TRAINER.COOP``),
and ``extend_cfg`` adds every registered node. Keys that already exist (because the host repository's own
``extend_cfg`` added them) are left untouched, so calling both is safe.
"""
from yacs.config import CfgNode as CN

# node name under cfg.TRAINER -> dict of defaults
TRAINER_CONFIGS = {}

# keys shared by every CoOp-family train.py, plus vlpeft's own additions
COMMON_KEYS = {
    "DATASET.SUBSAMPLE_CLASSES": "all",  # all / base / new (CoOp's base-to-new), pseudo_base / pseudo_new
    "DATASET.FEWSHOT_CACHE_DIR": "",  # where split_fewshot/ goes when the dataset folder is read-only ("" = beside the data)
    "MODEL.BACKBONE.PATH": "",  # explicit CLIP checkpoint; otherwise see vlpeft.clip.resolve_clip_weights
    # activation checkpointing of the frozen towers: recompute each block's activations in the backward pass instead
    # of keeping them (memory for time; the gradients are unchanged). TEXT matters for text-prompt methods on many
    # classes (ImageNet's 1,000 class prompts are encoded with gradients at every step).
    "MODEL.ACTIVATION_CHECKPOINTING.TEXT": False,
    "MODEL.ACTIVATION_CHECKPOINTING.VISION": False,
}


def trainer_config(node, **defaults):
    """Declare the defaults of ``cfg.TRAINER.<node>``; called at import time by the trainer module owning it."""
    return extend_trainer_config(node, **defaults)


def extend_trainer_config(node, **extra):
    """Add keys to a node another trainer declared (e.g. KgCoOp's ``TRAINER.COOP.W``, as in its official code)."""
    defaults = TRAINER_CONFIGS.setdefault(node, {})
    for key, value in extra.items():
        if key in defaults and defaults[key] != value:
            raise ValueError(f"TRAINER.{node}.{key} is declared twice with different defaults")
        defaults[key] = value
    return defaults


def common_config(**dotted):
    """Declare keys outside ``cfg.TRAINER`` that a trainer's official train.py adds (e.g. ProGrad's ``LOSS.*``)."""
    for key, value in dotted.items():
        if key in COMMON_KEYS and COMMON_KEYS[key] != value:
            raise ValueError(f"{key} is declared twice with different defaults")
        COMMON_KEYS[key] = value


def _set_missing(cfg, dotted_key, value):
    node = cfg
    *parents, leaf = dotted_key.split(".")
    for p in parents:
        if p not in node:
            node[p] = CN()
        node = node[p]
    if leaf not in node:
        node[leaf] = CN(value) if isinstance(value, dict) else value


def extend_cfg(cfg):
    """Add vlpeft's keys and every trainer's config node to ``cfg`` (a Dassl/vlpeft default config), in place."""
    import vlpeft.trainers  # noqa: F401  (registers every trainer and its config node)

    for key, value in COMMON_KEYS.items():
        _set_missing(cfg, key, value)
    for node, defaults in TRAINER_CONFIGS.items():
        for key, value in defaults.items():
            _set_missing(cfg, f"TRAINER.{node}.{key}", value)
    return cfg


def get_cfg():
    """Dassl defaults (of the active engine) extended with every vlpeft key."""
    from vlpeft.engine import get_cfg_default

    return extend_cfg(get_cfg_default())
