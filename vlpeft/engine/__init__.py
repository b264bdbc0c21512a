"""The Dassl API surface vlpeft's trainers, datasets and ``train.py`` use.

``VLPEFT_ENGINE`` chooses where the names come from:

* ``dassl``  - the installed Dassl.pytorch (``import dassl``); our trainers are then true Dassl trainers registered in
  Dassl's registries. :mod:`vlpeft.engine.dassl_compat` patches the two known breakages of Dassl 0.6.3 on torch >= 2.6.
* ``vlpeft`` - vlpeft's own implementation of the same behaviour (this package).
* ``auto`` (default) - Dassl when it imports, vlpeft's otherwise.

``ENGINE`` says which one is active; ``train.py`` logs it.
"""
import os

_choice = os.environ.get("VLPEFT_ENGINE", "auto").strip().lower()
if _choice not in ("auto", "dassl", "vlpeft"):
    raise ValueError(f'VLPEFT_ENGINE must be one of auto, dassl, vlpeft (got "{_choice}")')

_dassl_error = None
if _choice in ("auto", "dassl"):
    try:
        import dassl  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        _dassl_error = e
        if _choice == "dassl":
            raise ImportError(f"VLPEFT_ENGINE=dassl but Dassl could not be imported: {e}") from e

ENGINE = "dassl" if (_choice != "vlpeft" and _dassl_error is None) else "vlpeft"

if ENGINE == "dassl":
    from . import dassl_compat

    dassl_compat.apply()  # before the imports below, so they bind the patched functions

    from dassl.config import get_cfg_default
    from dassl.data import DataManager
    from dassl.data.data_manager import build_data_loader
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, build_dataset
    from dassl.data.transforms import build_transform
    from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from dassl.evaluation import EVALUATOR_REGISTRY, build_evaluator
    from dassl.optim import build_lr_scheduler, build_optimizer
    from dassl.utils import (
        collect_env_info,
        count_num_param,
        listdir_nohidden,
        load_checkpoint,
        load_pretrained_weights,
        mkdir_if_missing,
        read_json,
        save_checkpoint,
        set_random_seed,
        setup_logger,
        write_json,
    )
else:
    from .checkpoint import load_checkpoint, load_pretrained_weights, save_checkpoint
    from .config import get_cfg_default
    from .data import DatasetBase, Datum
    from .datamanager import DataManager, build_data_loader, build_dataset
    from .evaluator import build_evaluator
    from .optim import build_lr_scheduler, build_optimizer
    from .registry import DATASET_REGISTRY, EVALUATOR_REGISTRY, TRAINER_REGISTRY
    from .trainer import TrainerX, build_trainer
    from .transforms import build_transform
    from .utils import (
        collect_env_info,
        count_num_param,
        listdir_nohidden,
        mkdir_if_missing,
        read_json,
        set_random_seed,
        setup_logger,
        write_json,
    )


def _soft_register(registry, obj):
    """Register ``obj`` unless its name is taken; then keep the existing object and say so (never raise)."""
    name = obj.__name__
    existing = registry._obj_map.get(name)
    if existing is None:
        registry._obj_map[name] = obj
    elif existing is not obj:
        print(f'vlpeft: "{name}" is already registered (from {existing.__module__}); keeping it')
    return obj


def register_trainer(cls):
    """Class decorator: put a trainer into the active TRAINER_REGISTRY (Dassl's or vlpeft's)."""
    return _soft_register(TRAINER_REGISTRY, cls)


def register_dataset(cls):
    """Class decorator: put a dataset into the active DATASET_REGISTRY (Dassl's or vlpeft's)."""
    return _soft_register(DATASET_REGISTRY, cls)


__all__ = [
    "ENGINE", "get_cfg_default", "DataManager",
    "build_data_loader", "DATASET_REGISTRY", "DatasetBase", "Datum", "build_dataset",
    "build_transform", "TRAINER_REGISTRY", "TrainerX", "build_trainer", "EVALUATOR_REGISTRY", "build_evaluator",
    "build_lr_scheduler", "build_optimizer", "collect_env_info", "count_num_param", "listdir_nohidden",
    "load_checkpoint", "load_pretrained_weights", "mkdir_if_missing", "read_json", "save_checkpoint",
    "set_random_seed", "setup_logger", "write_json", "register_trainer", "register_dataset",
]
