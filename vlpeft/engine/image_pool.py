"""Images requested during training (DPC's negative images), loaded in background threads.

:class:`ImagePool` indexes a list of ``Datum`` once (label -> image paths) and serves requests of (path, seed)
pairs: each image is decoded in a thread (decoded images are kept in a bounded LRU cache, so after the first epoch
a small pool is served from memory) and transformed there with the training transform drawn from its own seeded
generator (:class:`SeededTrainTransform`). Results therefore do not depend on thread timing, and the global random
states are never touched by the workers: a run is reproducible and resumes exactly.
"""
import math
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import torch
import torchvision.transforms.functional as TF

from .datamanager import read_image
from .transforms import INTERPOLATION_MODES

# the training transforms SeededTrainTransform reproduces; any other choice runs the engine's own transform in the
# calling thread instead (correct, only not in the background)
SEEDED_CHOICES = ("random_resized_crop", "random_flip", "normalize")


def resized_crop_params(height, width, scale, ratio, generator):
    """(top, left, h, w) of a random crop with area fraction in ``scale`` and log-uniform aspect ratio in ``ratio``;
    10 tries, then the largest centred crop within the ratio bounds. The draws (two uniforms then two integers per
    try) are those of torchvision's ``RandomResizedCrop``, so one seed gives the same crop."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * torch.empty(1).uniform_(scale[0], scale[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = torch.randint(0, height - h + 1, size=(1,), generator=generator).item()
            left = torch.randint(0, width - w + 1, size=(1,), generator=generator).item()
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class SeededTrainTransform:
    """The engine's training transform for ``INPUT.TRANSFORMS`` within :data:`SEEDED_CHOICES`, with every random
    draw taken from a generator seeded per call: resize to ``INPUT.SIZE`` (no crop) or random resized crop
    (``INPUT.RRCROP_SCALE``), horizontal flip with probability 0.5, to tensor, normalise."""

    def __init__(self, cfg):
        choices = list(cfg.INPUT.TRANSFORMS)
        unsupported = [c for c in choices if c not in SEEDED_CHOICES]
        if unsupported or cfg.INPUT.NO_TRANSFORM:
            raise ValueError(f"SeededTrainTransform supports {list(SEEDED_CHOICES)}, got {choices}")
        self.size = list(cfg.INPUT.SIZE)
        self.interpolation = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        self.crop = "random_resized_crop" in choices
        self.scale = tuple(cfg.INPUT.RRCROP_SCALE)
        self.ratio = (3.0 / 4.0, 4.0 / 3.0)
        self.flip = "random_flip" in choices
        self.normalize = (list(cfg.INPUT.PIXEL_MEAN), list(cfg.INPUT.PIXEL_STD)) if "normalize" in choices else None

    @staticmethod
    def supports(cfg):
        return not cfg.INPUT.NO_TRANSFORM and all(c in SEEDED_CHOICES for c in cfg.INPUT.TRANSFORMS)

    def __call__(self, image, seed):
        generator = torch.Generator().manual_seed(seed)
        if self.crop:
            width, height = image.size
            top, left, h, w = resized_crop_params(height, width, self.scale, self.ratio, generator)
            image = TF.resized_crop(image, top, left, h, w, self.size, self.interpolation, antialias=True)
        else:
            image = TF.resize(image, self.size, self.interpolation, antialias=True)
        if self.flip and torch.rand(1, generator=generator).item() < 0.5:
            image = TF.hflip(image)
        tensor = TF.to_tensor(image)
        if self.normalize is not None:
            tensor = TF.normalize(tensor, *self.normalize)
        return tensor


def _nbytes(image):
    return image.width * image.height * len(image.getbands())


class DecodedImageCache:
    """Thread-safe LRU cache of decoded RGB images, bounded by their pixel bytes (``max_bytes`` 0: no cache)."""

    def __init__(self, max_bytes):
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._images = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path):
        with self._lock:
            image = self._images.get(path)
            if image is not None:
                self._images.move_to_end(path)
                self.hits += 1
                return image
            self.misses += 1
        image = read_image(path)
        size = _nbytes(image)
        if size <= self.max_bytes:
            with self._lock:
                if path not in self._images:
                    self._images[path] = image
                    self.bytes += size
                    while self.bytes > self.max_bytes:
                        _, old = self._images.popitem(last=False)
                        self.bytes -= _nbytes(old)
        return image


class ImagePool:
    """Images of ``items`` (Datum) by label, loaded on request in ``workers`` background threads.

    ``request([(path, seed), ...])`` returns a handle whose ``result()`` is the list of transformed image tensors in
    request order. ``transform`` is a :class:`SeededTrainTransform`, or any callable ``image -> tensor`` (then the
    transform runs in the thread calling ``result()``, which keeps global random draws in a fixed order).
    """

    def __init__(self, items, transform, workers=4, cache_mb=1024):
        self.paths = {}
        for item in items:
            self.paths.setdefault(item.label, []).append(item.impath)
        self.transform = transform
        self.seeded = isinstance(transform, SeededTrainTransform)
        self.cache = DecodedImageCache(int(cache_mb * 2 ** 20))
        self._executor = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vlpeft-pool")

    def __len__(self):
        return sum(len(v) for v in self.paths.values())

    def labels(self):
        return sorted(self.paths)

    def _load(self, path, seed):
        image = self.cache.get(path)
        return self.transform(image, seed) if self.seeded else image

    def request(self, requests):
        return _Pending([self._executor.submit(self._load, path, seed) for path, seed in requests],
                        None if self.seeded else self.transform)

    def close(self):
        self._executor.shutdown(wait=True, cancel_futures=True)


class _Pending:
    def __init__(self, futures, transform):
        self.futures = futures
        self.transform = transform

    def done(self):
        return all(f.done() for f in self.futures)

    def result(self):
        images = [f.result() for f in self.futures]
        return images if self.transform is None else [self.transform(image) for image in images]
