"""Run-time fixes that let Dassl 0.6.3 work on a current torch, applied without editing Dassl
(``DASSL_CONTRACT.md`` §4, §6):

1. its warm-up schedulers pass ``verbose`` to ``LRScheduler.__init__``, which torch >= 2.7 no longer accepts;
2. its ``load_checkpoint`` calls ``torch.load`` without ``weights_only``; torch >= 2.6 then refuses the pickled
   scheduler inside every Dassl checkpoint (resume and ``--eval-only`` break);
3. its registries raise on a duplicate name; vlpeft keeps the first object and logs the clash instead, so a host
   repository's own ``CoOp`` and vlpeft's can be imported in either order.
Each patch is applied once and only where needed.
"""
import inspect
import os.path as osp
import pickle

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


def _patch_load_checkpoint():
    import dassl.engine.trainer as dassl_trainer
    import dassl.utils as dassl_utils
    import dassl.utils.torchtools as torchtools

    def load_checkpoint(fpath):
        if fpath is None:
            raise ValueError("File path is None")
        if not osp.exists(fpath):
            raise FileNotFoundError(f'File is not found at "{fpath}"')
        try:
            return torch.load(fpath, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            return torch.load(fpath, map_location="cpu", weights_only=False)

    for module in (torchtools, dassl_utils, dassl_trainer):
        if hasattr(module, "load_checkpoint"):
            module.load_checkpoint = load_checkpoint


def _patch_registry():
    from dassl.utils.registry import Registry

    def _do_register(self, name, obj, force=False):
        if name in self._obj_map and not force:
            if self._obj_map[name] is not obj:
                print(f'vlpeft: "{name}" is already registered in the {self._name} registry '
                      f"(from {getattr(self._obj_map[name], '__module__', '?')}); keeping it")
            return
        self._obj_map[name] = obj

    Registry._do_register = _do_register


def apply():
    global _applied
    if _applied:
        return
    _patch_warmup_scheduler()
    _patch_load_checkpoint()
    _patch_registry()
    _applied = True
