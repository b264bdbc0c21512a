"""Small utilities with Dassl's names and behaviour (seeding, logging tee, json, meters, env info)."""
import errno
import json
import os
import os.path as osp
import random
import sys
import tempfile
import time
from collections import defaultdict

import numpy as np
import torch


def mkdir_if_missing(dirname):
    if not osp.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` through a temporary file and ``os.replace`` (never a half-written file)."""
    dirname = osp.dirname(osp.abspath(path))
    mkdir_if_missing(dirname)
    fd, tmp = tempfile.mkstemp(dir=dirname, prefix="." + osp.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(fpath):
    with open(fpath, "r") as f:
        return json.load(f)


def write_json(obj, fpath):
    """Dassl's format (indent 4, separators (',', ': ')), written atomically."""
    atomic_write_text(fpath, json.dumps(obj, indent=4, separators=(",", ": ")))


def listdir_nohidden(path, sort=False):
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def set_random_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def count_num_param(model=None, params=None):
    if model is not None:
        return sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in params)


class _Tee:
    """stdout replacement writing to the console and to a log file, flushing (and fsyncing) each write."""

    def __init__(self, fpath, mode):
        self.console = sys.stdout
        self.file = open(fpath, mode)

    def write(self, msg):
        self.console.write(msg)
        self.file.write(msg)
        if "\n" in msg:  # keep log.txt current line by line (a crashed run still leaves its log)
            self.file.flush()

    def flush(self):
        self.console.flush()
        self.file.flush()
        os.fsync(self.file.fileno())

    def isatty(self):
        return False

    def close(self):
        self.file.close()


def setup_logger(output=None):
    """Tee stdout into ``<output>/log.txt``.

    Unlike Dassl, an existing ``log.txt`` is never renamed: the new run is appended after a separator line, so
    ``parse_test_res.py`` (which takes the last match) reads the latest result from the file it expects.
    """
    if output is None:
        return
    if output.endswith(".txt") or output.endswith(".log"):
        fpath = output
    else:
        fpath = osp.join(output, "log.txt")
    mkdir_if_missing(osp.dirname(osp.abspath(fpath)))
    close_logger()  # a second run in the same process: finish the previous log first
    existed = osp.exists(fpath) and osp.getsize(fpath) > 0
    sys.stdout = _Tee(fpath, "a")
    if existed:
        print(f"\n{'=' * 30} new run appended at {time.strftime('%Y-%m-%d %H:%M:%S')} {'=' * 30}")
    return fpath


def close_logger():
    """Undo :func:`setup_logger` (vlpeft's, or Dassl's ``Logger``): flush and close every log tee and give stdout back
    to what it wrapped."""
    while hasattr(sys.stdout, "console") and hasattr(sys.stdout, "file"):
        tee = sys.stdout
        tee.flush()
        if tee.file is not None and not tee.file.closed:
            tee.file.close()
        sys.stdout = tee.console


def collect_env_info():
    import platform

    import PIL
    import torchvision

    lines = [
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__} (CUDA available: {torch.cuda.is_available()}, "
        f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version() if torch.cuda.is_available() else None})",
        f"torchvision: {torchvision.__version__}",
        f"Pillow: {PIL.__version__}",
        f"numpy: {np.__version__}",
    ]
    try:
        import open_clip
        lines.append(f"open_clip: {open_clip.__version__}")
    except Exception as e:  # pragma: no cover - reported, not fatal
        lines.append(f"open_clip: unavailable ({e})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            lines.append(f"GPU {i}: {torch.cuda.get_device_name(i)}")
    lines.append(f"CPU threads: {torch.get_num_threads()}")
    return "\n".join(lines)


class AverageMeter:
    def __init__(self, ema=False):
        self.ema = ema
        self.reset()

    def reset(self):
        self.val = 0
        self.avg = 0
        self.sum = 0
        self.count = 0

    def update(self, val, n=1):
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        if self.ema:
            self.avg = self.avg * 0.9 + self.val * 0.1
        else:
            self.avg = self.sum / self.count


class MetricMeter:
    """Prints ``name val (avg)`` for each entry, as Dassl does."""

    def __init__(self, delimiter=" "):
        self.meters = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict):
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            if isinstance(v, torch.Tensor):
                v = v.item()
            self.meters[k].update(v)

    def __str__(self):
        return self.delimiter.join(f"{name} {meter.val:.4f} ({meter.avg:.4f})" for name, meter in self.meters.items())


def capture_rng_state():
    """The random-number states a training run draws from (python, numpy, torch CPU and CUDA; the data loaders'
    samplers and workers draw their seeds from torch's), as tensors and plain values that load with
    ``torch.load(weights_only=True)``."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state):
    """Inverse of :func:`capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
