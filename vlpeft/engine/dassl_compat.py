"""Run-time fixes that let Dassl 0.6.3 work on a current torch and next to a host repository, applied without
editing Dassl (``docs/DASSL.md``):

1. its warm-up schedulers pass ``verbose`` to ``LRScheduler.__init__``, which torch >= 2.7 no longer accepts (every
   CoOp-family config uses ``WARMUP_EPOCH 1``, so nothing trains without this);
2. its warm-up schedulers' ``state_dict`` pickles the successor scheduler *object* (and through it the optimizer with
   its parameters), so no checkpoint Dassl writes loads with ``weights_only=True``. Patched to store the successor's
   ``state_dict`` instead, exactly as vlpeft's own engine does, so checkpoints are weights-only loadable and have the
   same format under both engines; ``load_state_dict`` accepts both forms (old Dassl checkpoints resume too);
3. its ``load_checkpoint`` calls ``torch.load`` without ``weights_only``; torch >= 2.6 then refuses the pickled
   scheduler inside checkpoints written by an unpatched Dassl (the official CoOp-family code): resume and
   ``--eval-only`` break. Patched to try ``weights_only=True`` first and to unpickle fully, with a note, only when that
   fails (as vlpeft's engine does);
4. its registries raise ``KeyError`` on a duplicate name. vlpeft registers its own trainers and datasets softly (a name
   already taken by the host repository is left alone, see ``vlpeft.engine.register_trainer``); this patch lets the
   host register a name *after* vlpeft took it, replacing vlpeft's entry, so the host's own ``CoOp`` / ``EuroSAT``
   wins whatever the import order. Duplicates between two non-vlpeft objects still raise, as in Dassl;
5. its data loaders read images with a bare ``Image.open``: a truncated file fails without its path. They read through
   vlpeft's ``read_image``, which names the file;
6. its stdout ``Logger`` closes the stream it wraps when it is closed or garbage-collected, so giving stdout back
   after an in-process run (``vlpeft.density --evaluate``, the testbed tables) closed the process's stdout. Patched
   to close only its log file.
Each patch is applied once; the first only where torch needs it.
"""
import inspect

import torch

_applied = False


def _patch_warmup_scheduler():
    from dassl.optim import lr_scheduler as dassl_sched

    base = dassl_sched._BaseWarmupScheduler
    if "verbose" in inspect.signature(torch.optim.lr_scheduler.LRScheduler.__init__).parameters:
        return

    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        torch.optim.lr_scheduler.LRScheduler.__init__(self, optimizer, last_epoch)

    base.__init__ = __init__


def _patch_warmup_state_dict():
    """Dassl's warm-up schedulers save their state like vlpeft's (the successor's state_dict, not the object)."""
    from dassl.optim import lr_scheduler as dassl_sched

    from .optim import _BaseWarmupScheduler

    dassl_sched._BaseWarmupScheduler.state_dict = _BaseWarmupScheduler.state_dict
    dassl_sched._BaseWarmupScheduler.load_state_dict = _BaseWarmupScheduler.load_state_dict


def _patch_load_checkpoint():
    import dassl.engine.trainer as dassl_trainer
    import dassl.utils as dassl_utils
    import dassl.utils.torchtools as torchtools

    from .checkpoint import load_checkpoint  # weights_only first, full unpickling only for old Dassl files

    for module in (torchtools, dassl_utils, dassl_trainer):
        if hasattr(module, "load_checkpoint"):
            module.load_checkpoint = load_checkpoint


def _patch_read_image():
    import dassl.data.data_manager as dassl_data

    from .datamanager import read_image

    dassl_data.read_image = read_image


def _patch_logger():
    from dassl.utils.logger import Logger

    def close(self):
        if self.file is not None and not self.file.closed:
            self.file.close()

    Logger.close = close


def _is_vlpeft(obj):
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "vlpeft"


def _patch_registry():
    from dassl.utils.registry import Registry

    original = Registry._do_register

    def _do_register(self, name, obj, force=False):
        existing = self._obj_map.get(name)
        if existing is None or force or existing is obj or not _is_vlpeft(existing) or _is_vlpeft(obj):
            return original(self, name, obj, force=force)  # Dassl's behaviour, KeyError on a real clash included
        print(f'vlpeft: "{name}" in the {self._name} registry now refers to {obj.__module__}.{name} '
              f"(replacing vlpeft's {existing.__module__}.{name})")
        self._obj_map[name] = obj

    Registry._do_register = _do_register


def apply():
    global _applied
    if _applied:
        return
    _patch_warmup_scheduler()
    _patch_warmup_state_dict()
    _patch_load_checkpoint()
    _patch_registry()
    _patch_read_image()
    _patch_logger()
    _applied = True
