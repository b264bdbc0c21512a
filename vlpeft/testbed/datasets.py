"""Downstream datasets of the testbed, in CoOp's on-disk format (``images/<class>/*.jpg`` + ``split_zhou_<Name>.json``),
generated deterministically on first use and registered like the real benchmarks.

* ``TestbedSketchShapes`` - 12 classes = shapes, rendered in the ``sketch`` style pretraining never saw (domain shift);
* ``TestbedHeldoutPairs`` - 16 classes = colour-shape pairs held out of pretraining ("red star"): compositional
  generalisation;
* ``TestbedFinePatterns`` - 12 classes = colour x pattern of one shape ("cyan dotted square"): fine-grained texture
  (telling stripes, dots and checks apart inside each colour);
* ``TestbedScenes`` - 12 classes = the background an object of any shape is shown on ("shape on a red
  background"), six of them never seen in pretraining and named by colour words it knows only as object colours:
  the class is the setting, not the object (a scene-recognition analogue, like SUN397 or EuroSAT); zero-shot
  naming is weak (58% on the base half) while the frozen image features separate the classes (a linear probe on
  the 16-shot base set: 90-96%), so a prompt learner has something to learn;
* ``TestbedShades`` - 12 classes = three shades of four object colours ("dark red shape", "red shape", "light red
  shape"; base: red, blue; new: green, purple), on objects of any shape: fine-grained attributes (subcategories of a
  category the model knows, as aircraft variants or flower species). The dark and light shades are not among
  pretraining's colours and its captions never use the words, so zero-shot gets the hue and guesses the shade;
* ``TestbedColourCast`` - 12 classes = the object colour ("red shape"), every image seen under a warm coloured light
  pretraining never showed (each channel scaled by :data:`~vlpeft.testbed.world.CAST_LIGHT`): domain shift, where
  the names are known but their appearance has moved;
* ``TestbedDarkShades`` - 12 classes = object colours, four of them also in a dark shade (:data:`DARK_SHADE_ORDER`:
  each half holds two colours with their dark twin and two colours alone): fine-grained attributes where zero-shot
  reads the hue and guesses between a colour and its dark twin;
* ``TestbedWarmLight`` - TestbedColourCast's classes under the same light at half strength
  (:data:`~vlpeft.testbed.world.WARM_LIGHT`): domain shift that moves the colours without hiding their names.

The proxy benchmark's datasets (:data:`PROXY_DATASETS`: TestbedScenes, TestbedDarkShades, TestbedWarmLight) have the
real suite's profile: a linear probe on the frozen 16-shot base features beats zero-shot by at least 15 points, and
zero-shot names both halves at least 3x better than chance (``python -m vlpeft.testbed.probe``). TestbedShades and
TestbedColourCast meet the first criterion only.

Each class has 32 train, 8 val and 50 test images (64x64), so 16-shot base-to-new runs have 6 new classes (8 on
TestbedHeldoutPairs).
``DATASET.ROOT`` empty -> generated under ``<vlpeft cache>/testbed`` (``$VLPEFT_CACHE_DIR``, default
``~/.cache/vlpeft``; see :func:`vlpeft.datasets.base.vlpeft_cache_dir`).
"""
import json
import os
import os.path as osp
import random
import shutil
import tempfile
from dataclasses import dataclass, replace
from typing import Callable, Optional

from vlpeft.datasets.base import CoOpDataset, read_split, vlpeft_cache_dir
from vlpeft.engine import register_dataset
from vlpeft.testbed.world import (COLOURS, HELD_OUT_PAIRS, PRETRAIN_STYLES, SHADE_HUES, SHAPES, WARM_LIGHT,
                                  cast_light, random_scene, render)

PER_CLASS = {"train": 32, "val": 8, "test": 50}
IMAGE_SIZE = 64
GENERATOR_VERSION = 3  # bump when the rendering of the datasets changes: cached copies are then regenerated

FINE_SHAPE = "square"
FINE_COLOURS = ["orange", "purple", "cyan", "pink"]  # base half: orange, purple; new half: cyan, pink
FINE_PATTERNS = ["striped", "dotted", "checkered"]


def _sketch_classes():
    return [(shape, lambda rng, s=shape: random_scene(rng, styles=["sketch"], exclude_pairs=(), shapes=[s]))
            for shape in SHAPES]


# class order of TestbedHeldoutPairs: the base half holds the four colours that occur twice (telling those pairs
# apart needs the shape); the new half holds eight pairs of distinct colours
PAIR_ORDER = [("red", "star"), ("red", "diamond"), ("blue", "heart"), ("blue", "cross"), ("green", "triangle"),
              ("green", "circle"), ("yellow", "square"), ("yellow", "star"),
              ("purple", "circle"), ("orange", "hexagon"), ("pink", "cross"), ("brown", "diamond"),
              ("cyan", "pentagon"), ("white", "arrow"), ("black", "crescent"), ("grey", "ring")]
assert sorted(PAIR_ORDER) == sorted(HELD_OUT_PAIRS)


def _pair_classes():
    return [(f"{colour} {shape}",
             lambda rng, c=colour, s=shape: random_scene(rng, styles=PRETRAIN_STYLES, exclude_pairs=(), shapes=[s],
                                                          colours=[c]))
            for colour, shape in PAIR_ORDER]


def _fine_classes():
    return [(f"{colour} {pattern} {FINE_SHAPE}",
             lambda rng, c=colour, p=pattern: random_scene(rng, styles=PRETRAIN_STYLES, exclude_pairs=HELD_OUT_PAIRS,
                                                           shapes=[FINE_SHAPE], colours=[c], patterns=[p]))
            for colour in FINE_COLOURS for pattern in FINE_PATTERNS]


# class order of TestbedScenes: each half holds three pretraining backgrounds and three unseen ones
SCENE_ORDER = ["grey", "red", "blue", "yellow", "sand", "purple", "white", "orange", "green", "pink", "black", "cyan"]


def _scene_classes():
    def sample(rng, background):
        while True:  # a random pretraining-style object whose colour differs from the background's name
            scene = random_scene(rng)
            if scene.colour != background:
                return replace(scene, background=background)

    return [(f"shape on a {b} background", lambda rng, b=b: sample(rng, b)) for b in SCENE_ORDER]


def _shaded_scene(rng, colour):
    """A random scene of any shape, pattern and background whose object has ``colour`` ("red", "dark red", ...)."""
    hue = colour.split(" ")[-1]
    return replace(random_scene(rng, exclude_pairs=(), colours=[hue]), colour=colour)


def _shade_classes():
    return [(f"{colour} shape", lambda rng, c=colour: _shaded_scene(rng, c))
            for hue in SHADE_HUES for colour in (f"dark {hue}", hue, f"light {hue}")]


def _cast_classes():
    return [(f"{colour} shape", lambda rng, c=colour: random_scene(rng, exclude_pairs=(), colours=[c]))
            for colour in CAST_ORDER]


# class order of TestbedColourCast: the first six are the base half, the last six the new half
CAST_ORDER = ["red", "blue", "white", "green", "purple", "grey", "orange", "cyan", "yellow", "black", "pink", "brown"]
assert sorted(CAST_ORDER) == sorted(COLOURS)

# class order of TestbedDarkShades: in each half, two colours with their dark twin and two colours alone
DARK_SHADE_ORDER = ["red", "dark red", "blue", "dark blue", "green", "white",
                    "purple", "dark purple", "yellow", "dark yellow", "orange", "cyan"]


def _dark_shade_classes():
    return [(f"{c} shape", lambda rng, c=c: _shaded_scene(rng, c)) for c in DARK_SHADE_ORDER]


def _warm_light(image):
    return cast_light(image, WARM_LIGHT)


@dataclass(frozen=True)
class Spec:
    """How a testbed dataset is generated: its folder, its classes (name, scene sampler), the generator seed, and
    an optional function applied to every rendered image (the dataset's domain)."""
    folder: str
    classes: Callable
    seed: int
    post: Optional[Callable] = None


SPECS = {
    "TestbedSketchShapes": Spec("testbed_sketch_shapes", _sketch_classes, 101),
    "TestbedHeldoutPairs": Spec("testbed_heldout_pairs", _pair_classes, 202),
    "TestbedFinePatterns": Spec("testbed_fine_patterns", _fine_classes, 303),
    "TestbedScenes": Spec("testbed_scenes", _scene_classes, 404),
    "TestbedShades": Spec("testbed_shades", _shade_classes, 505),
    "TestbedColourCast": Spec("testbed_colour_cast", _cast_classes, 606, post=cast_light),
    "TestbedDarkShades": Spec("testbed_dark_shades", _dark_shade_classes, 707),
    "TestbedWarmLight": Spec("testbed_warm_light", _cast_classes, 808, post=_warm_light),
}

#: the proxy benchmark's datasets (``python -m vlpeft.testbed.bench --proxy``), one per kind of the real suite, each
#: with the real suite's profile: room to learn (a linear probe on the frozen 16-shot base features at least 15
#: points above zero-shot) and transfer (zero-shot at least 3x chance on both halves); ``python -m
#: vlpeft.testbed.probe`` measures both
PROXY_DATASETS = {"TestbedScenes": "scene / setting", "TestbedDarkShades": "fine-grained attribute",
                  "TestbedWarmLight": "domain shift"}


def default_root():
    return osp.join(vlpeft_cache_dir(), "testbed")


def generate(name, root):
    """Write dataset ``name`` under ``root`` (atomically: a temporary folder renamed into place); return its folder."""
    spec = SPECS[name]
    folder, seed = spec.folder, spec.seed
    target = osp.join(root, folder)
    marker = osp.join(target, "generator.json")
    if osp.isfile(marker) and json.load(open(marker)).get("version") == GENERATOR_VERSION:
        return target
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{folder}.", dir=root)
    try:
        split = {"train": [], "val": [], "test": []}
        for label, (classname, sample) in enumerate(spec.classes()):
            cdir = classname.replace(" ", "_")
            os.makedirs(osp.join(tmp, "images", cdir))
            rng = random.Random(seed * 1000 + label)
            for part, count in PER_CLASS.items():
                for i in range(count):
                    rel = f"{cdir}/{part}_{i:03d}.jpg"
                    image = render(sample(rng), IMAGE_SIZE, seed=rng.randrange(2**31))
                    (spec.post(image) if spec.post else image).save(osp.join(tmp, "images", rel), quality=95)
                    split[part].append([rel, label, classname])
        with open(osp.join(tmp, f"split_zhou_{name}.json"), "w") as f:
            json.dump(split, f, indent=4, separators=(",", ": "))
        with open(osp.join(tmp, "generator.json"), "w") as f:
            json.dump({"version": GENERATOR_VERSION, "dataset": name, "per_class": PER_CLASS}, f)
        if osp.isdir(target):
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if osp.isdir(tmp):
            shutil.rmtree(tmp)
    print(f"Generated {name} in {target}")
    return target


class TestbedDataset(CoOpDataset):
    """A generated testbed dataset; the CoOp few-shot cache and base/new split apply as for the real ones."""

    def __init__(self, cfg):
        name = type(self).__name__
        root = cfg.DATASET.ROOT or default_root()
        folder = generate(name, osp.abspath(osp.expanduser(root)))
        if not cfg.DATASET.ROOT:  # CoOpDataset.setup reads DATASET.ROOT; point it at the cache without mutating cfg
            cfg = cfg.clone()
            cfg.defrost()
            cfg.DATASET.ROOT = osp.dirname(folder)
        self.setup(cfg)
        train, val, test = read_split(osp.join(folder, f"split_zhou_{name}.json"), osp.join(folder, "images"), name)
        self.finish(train, val, test)


def _register_all():
    """One registered class per :data:`SPECS` entry (``TestbedScenes`` etc.), defined in this module."""
    for name, spec in SPECS.items():
        globals()[name] = register_dataset(type(name, (TestbedDataset,), {
            "dataset_dir": spec.folder, "__module__": __name__,
            "__doc__": f"The generated testbed dataset {name} (see the module docstring)."}))


_register_all()


def zeroshot_report(model, root=None, split="test"):
    """Zero-shot accuracy of an open_clip ``model`` on all / base / new classes of every testbed dataset (printed)."""
    import torch
    from PIL import Image

    from vlpeft.clip import tokenize
    from vlpeft.testbed.pretrain import to_input
    from vlpeft.trainers.templates import dataset_template
    import numpy as np

    model.eval()
    root = root or default_root()
    out = {}
    for name, spec in SPECS.items():
        folder = generate(name, root)
        items = json.load(open(osp.join(folder, f"split_zhou_{name}.json")))[split]
        classes = [c for c, _ in spec.classes()]
        with torch.no_grad():
            template = dataset_template(name)
            txt = model.encode_text(tokenize([template.format(c) for c in classes]), normalize=True)
            imgs = np.stack([np.asarray(Image.open(osp.join(folder, "images", rel)).convert("RGB")) for rel, _, _ in items])
            img = model.encode_image(to_input(imgs), normalize=True)
        labels = torch.tensor([lab for _, lab, _ in items])
        m = (len(classes) + 1) // 2
        res = {}
        for part, keep in (("all", range(len(classes))), ("base", range(m)), ("new", range(m, len(classes)))):
            keep = list(keep)
            sel = torch.isin(labels, torch.tensor(keep))
            pred = torch.tensor(keep)[(img[sel] @ txt[keep].t()).argmax(-1)]
            res[part] = (pred == labels[sel]).float().mean().item() * 100
            res[f"{part}_chance"] = 100.0 / len(keep)
        out[name] = res
        print(f"zero-shot {name}: all {res['all']:.1f}% (chance {res['all_chance']:.1f}) | base {res['base']:.1f}% | "
              f"new {res['new']:.1f}% (chance {res['new_chance']:.1f})", flush=True)
    return out
