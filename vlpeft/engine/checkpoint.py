"""Dassl's checkpoint layout: ``<dir>/<model name>/model.pth.tar-<epoch>`` plus a ``checkpoint`` text file naming
the latest one. Files are written atomically; they hold what ``state_dict()`` returns (vlpeft's prompt learners keep
only trainable tensors persistent)."""
import io
import os
import os.path as osp
import pickle
import shutil
from collections import OrderedDict

import torch

from .utils import atomic_write_bytes, atomic_write_text, mkdir_if_missing


def save_checkpoint(state, save_dir, is_best=False, remove_module_from_keys=True, model_name=""):
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state["state_dict"] = OrderedDict(
            (k[7:] if k.startswith("module.") else k, v) for k, v in state["state_dict"].items())
    if not model_name:
        model_name = f"model.pth.tar-{state['epoch']}"
    fpath = osp.join(save_dir, model_name)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(fpath, buffer.getvalue())
    print(f"Checkpoint saved to {fpath}")
    atomic_write_text(osp.join(save_dir, "checkpoint"), f"{osp.basename(fpath)}\n")
    if is_best:
        best_fpath = osp.join(osp.dirname(fpath), "model-best.pth.tar")
        shutil.copy(fpath, best_fpath)
        print(f'Best checkpoint saved to "{best_fpath}"')


def load_checkpoint(fpath):
    """Load a checkpoint on CPU. vlpeft's own files load with ``weights_only=True``; a checkpoint written by Dassl
    (which pickles its warm-up scheduler's successor object) needs full unpickling: only do that for your own files."""
    if fpath is None:
        raise ValueError("File path is None")
    if not osp.exists(fpath):
        raise FileNotFoundError(f'File is not found at "{fpath}"')
    try:
        try:
            return torch.load(fpath, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            if "weights_only" not in str(e) and "Weights only" not in str(e):
                raise
            print(f'Note: "{fpath}" holds pickled Python objects (a Dassl-written scheduler); loading it fully')
            return torch.load(fpath, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, pickle.UnpicklingError, ValueError, OSError) as e:
        raise CheckpointError(unreadable_message(fpath, e)) from e


class CheckpointError(RuntimeError):
    """A checkpoint file that exists but cannot be read (empty, truncated, not a checkpoint)."""


def saved_epochs(model_dir):
    """Epochs N of the ``model.pth.tar-N`` files in a model folder, sorted."""
    prefix = "model.pth.tar-"
    if not osp.isdir(model_dir):
        return []
    return sorted(int(f[len(prefix):]) for f in os.listdir(model_dir)
                  if f.startswith(prefix) and f[len(prefix):].isdigit())


def unreadable_message(fpath, error):
    size = osp.getsize(fpath)
    what = "empty" if size == 0 else f"{size:,} bytes, truncated or not a PyTorch checkpoint"
    msg = f'Cannot read the checkpoint "{fpath}" ({what}: {type(error).__name__}: {error}).'
    folder, name = osp.split(fpath)
    others = [e for e in saved_epochs(folder) if f"model.pth.tar-{e}" != name]
    readable = []
    for epoch in reversed(others):  # the newest readable one is what a user wants
        try:
            torch.load(osp.join(folder, f"model.pth.tar-{epoch}"), map_location="cpu", weights_only=False)
            readable.append(epoch)
            break
        except Exception:  # noqa: BLE001 - any failure means "not this one"
            continue
    if readable:
        msg += (f' The checkpoint of epoch {readable[0]} in the same folder is intact: evaluate it with --load-epoch '
                f'{readable[0]}, or resume training from it by deleting "{fpath}" and writing '
                f'"model.pth.tar-{readable[0]}" into "{osp.join(folder, "checkpoint")}".')
    elif others:
        msg += f" Other checkpoints in the folder (epochs {others}) are unreadable too."
    return msg


def resume_from_checkpoint(fdir, model, optimizer=None, scheduler=None):
    with open(osp.join(fdir, "checkpoint"), "r") as f:
        model_name = f.readlines()[0].strip("\n")
    fpath = osp.join(fdir, model_name)
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer") is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def load_pretrained_weights(model, weight_path):
    """Load the entries of ``weight_path`` whose name and shape match ``model`` (MODEL.INIT_WEIGHTS)."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in state_dict.items():
        k = k[7:] if k.startswith("module.") else k
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    if not matched:
        print(f'Warning: the pretrained weights "{weight_path}" cannot be loaded, please check the key names manually')
    else:
        print(f'Successfully loaded pretrained weights from "{weight_path}"')
        if discarded:
            print(f"** The following layers are discarded due to unmatched keys or layer size: {discarded}")
