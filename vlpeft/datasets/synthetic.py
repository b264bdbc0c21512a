"""Tiny synthetic copies of the 15 CoOp datasets, in their exact on-disk layout, for tests.

:func:`make_layout` writes small JPEG images (a solid per-class colour plus a per-class stripe pattern, so classes are
distinguishable; fully deterministic) with the folder names, file-name patterns, split files and metadata files the
loaders of :mod:`vlpeft.datasets` (and CoOp's) read. With ``with_split_json=False`` it writes the raw files from which
the loaders generate the split instead (folder-per-class datasets, OxfordPets' annotations, OxfordFlowers' and
StanfordCars' .mat files, SUN397's and UCF101's lists; the ImageNet family then has no ``classnames.txt``).

:func:`expected_classnames` and :func:`expected_counts` give what a loader should produce from such a layout.

Class names are synthetic except where the loaders map them (EuroSAT's folders, Caltech101's renamed and ignored
folders, DTD's textures, ImageNet's WordNet ids). Nothing here touches the global :mod:`random` module.
"""
import io
import json
import os
import os.path as osp
import random

import numpy as np
from PIL import Image

__all__ = ["LAYOUT_NAMES", "DEFAULT_CLASSES", "DEFAULT_PER_CLASS", "make_layout", "expected_classnames",
           "expected_counts", "dataset_folder", "imagenet_wnids", "class_indices"]

#: the 15 registry names
LAYOUT_NAMES = [
    "OxfordPets", "OxfordFlowers", "FGVCAircraft", "DescribableTextures", "EuroSAT", "StanfordCars", "Food101",
    "SUN397", "Caltech101", "UCF101", "ImageNet", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR",
]

#: the real number of classes of each dataset (the default of ``num_classes``)
DEFAULT_CLASSES = {
    "OxfordPets": 37, "OxfordFlowers": 102, "FGVCAircraft": 100, "DescribableTextures": 47, "EuroSAT": 10,
    "StanfordCars": 196, "Food101": 101, "SUN397": 397, "Caltech101": 100, "UCF101": 101, "ImageNet": 1000,
    "ImageNetV2": 1000, "ImageNetSketch": 1000, "ImageNetA": 200, "ImageNetR": 200,
}

#: images per class written for (train, val, test) by default
DEFAULT_PER_CLASS = (2, 1, 1)

_FOLDERS = {
    "OxfordPets": "oxford_pets", "OxfordFlowers": "oxford_flowers", "FGVCAircraft": "fgvc_aircraft",
    "DescribableTextures": "dtd", "EuroSAT": "eurosat", "StanfordCars": "stanford_cars", "Food101": "food-101",
    "SUN397": "sun397", "Caltech101": "caltech-101", "UCF101": "ucf101", "ImageNet": "imagenet",
    "ImageNetV2": "imagenetv2", "ImageNetSketch": "imagenet-sketch", "ImageNetA": "imagenet-adversarial",
    "ImageNetR": "imagenet-rendition",
}

_EUROSAT = [
    ("AnnualCrop", "Annual Crop Land"), ("Forest", "Forest"), ("HerbaceousVegetation", "Herbaceous Vegetation Land"),
    ("Highway", "Highway or Road"), ("Industrial", "Industrial Buildings"), ("Pasture", "Pasture Land"),
    ("PermanentCrop", "Permanent Crop Land"), ("Residential", "Residential Buildings"), ("River", "River"),
    ("SeaLake", "Sea or Lake"),
]

_DTD = (
    "banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline dotted fibrous flecked "
    "freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike lined marbled matted meshed paisley "
    "perforated pitted pleated polka-dotted porous potholed scaly smeared spiralled sprinkled stained stratified "
    "striped studded swirly veined waffled woven wrinkled zigzagged"
).split()

# Caltech101: the four folders CoOp renames come first; the two it ignores are always written in addition
_CALTECH_RENAMED = [("airplanes", "airplane"), ("Faces", "face"), ("Leopards", "leopard"), ("Motorbikes", "motorbike")]
_CALTECH_IGNORED = ["BACKGROUND_Google", "Faces_easy"]

_WORDS = ["Jump", "Rope", "Yo", "Band", "Marching", "Apply", "Lip", "Stick", "Ball", "Throw", "Ride", "Horse", "Ice"]

_CLASSNAMES_FILE = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), "datasets", "imagenet_classnames.txt")


def dataset_folder(name):
    """The folder of ``name`` under ``DATASET.ROOT`` (e.g. ``"eurosat"``)."""
    return _FOLDERS[_check_name(name)]


def _check_name(name):
    if name not in _FOLDERS:
        raise ValueError(f'unknown dataset "{name}"; choose one of {", ".join(LAYOUT_NAMES)}')
    return name


def imagenet_wnids():
    """The 1000 (wnid, class name) pairs of the packaged ``imagenet_classnames.txt``, in sorted-wnid order."""
    pairs = []
    with open(_CLASSNAMES_FILE, "r") as f:
        for line in f:
            parts = line.strip().split(" ")
            if parts != [""]:
                pairs.append((parts[0], " ".join(parts[1:])))
    return pairs


def class_indices(num_classes, total=1000):
    """Which of the ``total`` ImageNet classes an ImageNet-family layout with ``num_classes`` classes holds: evenly
    spaced indices, first and last included (all of them when ``num_classes == total``)."""
    if not 1 <= num_classes <= total:
        raise ValueError(f"num_classes must be in 1..{total}")
    if num_classes == 1:
        return [0]
    return sorted({round(i * (total - 1) / (num_classes - 1)) for i in range(num_classes)})


# ----------------------------------------------------------------------------------------------------------------
# class lists: (raw name as on disk / in the raw files, display name the loader produces), in label order
# ----------------------------------------------------------------------------------------------------------------
def _pets(n):
    out = []
    for i in range(n):
        raw = f"Cat_Kind_{i:02d}" if i % 2 == 0 else f"dog_kind_{i:02d}"  # cats capitalised, dogs lower-case
        out.append((raw, raw.lower()))
    return out


def _aircraft(n):
    out = []
    for i in range(n):
        raw = (f"Jet {i}-200", f"F/A-{i}", f"A{i}B4")[i % 3]
        out.append((raw, raw))
    return out


def _cars(n):
    out = []
    for i in range(n):
        year = 1991 + (i * 7) % 22
        raw = f"Brand{i} Model {i} Sedan {year}"
        out.append((raw, f"{year} Brand{i} Model {i} Sedan"))
    return out


def _sun(n):
    out = []
    for i in range(n):
        letter = chr(ord("a") + i % 26)
        path = f"{letter}/{letter}place_{i:03d}"
        if i % 3 == 2:
            path += "/outdoor" if i % 2 else "/indoor"
        parts = path.split("/")[1:][::-1]
        out.append((path, " ".join(parts)))
    return out


def _ucf(n):
    out = []
    for i in range(n):
        w1, w2 = _WORDS[i % len(_WORDS)], _WORDS[(i // len(_WORDS) + 3) % len(_WORDS)]
        raw = f"Act{i:03d}{w1}{w2}"
        out.append((raw, f"Act{i:03d}_{w1}_{w2}"))
    return out


def _caltech(n):
    named = _CALTECH_RENAMED[:n] + [(f"object_{i:03d}", f"object_{i:03d}") for i in range(max(0, n - 4))]
    return sorted(named)  # label = index of the sorted folder name (case-sensitive, as CoOp's sort)


def _class_list(name, n):
    if name == "OxfordPets":
        return _pets(n)
    if name == "OxfordFlowers":
        return [(f"flower kind {i}", f"flower kind {i}") for i in range(n)]
    if name == "FGVCAircraft":
        return _aircraft(n)
    if name == "DescribableTextures":
        names = (_DTD + [f"texture{i}" for i in range(len(_DTD), n)])[:n]
        return [(c, c) for c in sorted(names)]
    if name == "EuroSAT":
        if n > len(_EUROSAT):
            raise ValueError("EuroSAT has 10 classes")
        return list(_EUROSAT[:n])
    if name == "StanfordCars":
        return _cars(n)
    if name == "Food101":
        return [(f"dish_name_{i:03d}", f"dish_name_{i:03d}") for i in range(n)]
    if name == "SUN397":
        return _sun(n)
    if name == "Caltech101":
        return _caltech(n)
    if name == "UCF101":
        return _ucf(n)
    # ImageNet family: (wnid, name) of the chosen classes, sorted by wnid
    pairs = imagenet_wnids()
    return [pairs[i] for i in class_indices(n)]


def expected_classnames(name, num_classes=None):
    """The class names (label order) a loader gives for the layout of ``name`` with ``num_classes`` classes."""
    name = _check_name(name)
    n = DEFAULT_CLASSES[name] if num_classes is None else num_classes
    return [display for _, display in _class_list(name, n)]


def _fallback_counts(total):
    n_train, n_val = round(total * 0.5), round(total * 0.2)
    return n_train, n_val, total - n_train - n_val


def expected_counts(name, num_classes=None, per_class=None, with_split_json=True):
    """``{"train": ..., "val": ..., "test": ...}`` sizes the loader gives for the layout (no few-shot, all classes).

    ImageNet's val is its test set; the variants have train = test and no val (``None``).
    """
    name = _check_name(name)
    n = DEFAULT_CLASSES[name] if num_classes is None else num_classes
    tr, va, te = DEFAULT_PER_CLASS if per_class is None else per_class
    if name == "ImageNet":
        return {"train": n * tr, "val": n * te, "test": n * te}
    if name.startswith("ImageNet"):
        return {"train": n * te, "val": None, "test": n * te}
    if with_split_json or name == "FGVCAircraft":
        return {"train": n * tr, "val": n * va, "test": n * te}
    if name in ("DescribableTextures", "EuroSAT", "Food101", "Caltech101", "OxfordFlowers"):
        a, b, c = _fallback_counts(tr + va + te)
        return {"train": n * a, "val": n * b, "test": n * c}
    # trainval split 80/20 per class, official test list
    n_val = round((tr + va) * 0.2)
    return {"train": n * (tr + va - n_val), "val": n * n_val, "test": n * te}


# ----------------------------------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------------------------------
def _colour(c):
    # well-separated hues (golden-ratio walk) with a class-dependent value
    h = (c * 0.618033988749895) % 1.0
    v = 0.55 + 0.4 * ((c * 7) % 5) / 4
    i = int(h * 6)
    f = h * 6 - i
    p, q, t = 0.2 * v, v * (1 - 0.8 * f), v * (0.2 + 0.8 * f)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return np.array([r, g, b]) * 255


class _Writer:
    def __init__(self, image_size, seed):
        self.size = int(image_size)
        self.seed = int(seed)
        self.count = 0

    def image(self, path, c, k):
        """Write the k-th image of class c: solid colour, stripes whose period/orientation encode c, small jitter."""
        s = self.size
        img = np.empty((s, s, 3), dtype=np.float64)
        img[:] = _colour(c)
        period = 2 + (c // 4) % 7
        yy, xx = np.mgrid[0:s, 0:s]
        coord = (xx, yy, xx + yy, xx - yy + s)[c % 4]
        stripes = (coord // period) % 2 == 0
        img[stripes] *= 0.45
        img += ((k * 13 + self.seed * 7) % 21) - 10  # deterministic per-image brightness jitter
        arr = np.clip(img, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=90)
        os.makedirs(osp.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        self.count += 1


def _write_text(path, lines):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def _write_json(path, obj):
    os.makedirs(osp.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def _write_split(path, split):
    """``split``: {"train"|"val"|"test": [(relpath, label, classname)]}, as CoOp's split_zhou json."""
    _write_json(path, {k: [[p, int(y), c] for p, y, c in split[k]] for k in ("train", "val", "test")})


def _parts(per_class):
    tr, va, te = per_class
    return ["train"] * tr + ["val"] * va + ["test"] * te


def make_layout(name, root, num_classes=None, per_class=None, image_size=32, seed=0, with_split_json=True):
    """Write a small copy of dataset ``name`` (a registry name) under ``root``; return its dataset folder.

    ``per_class`` = images per class for (train, val, test) (default :data:`DEFAULT_PER_CLASS`); the ImageNet
    family uses ``train`` for ImageNet's ``images/train`` and ``test`` for the evaluation images (ImageNet's
    ``images/val`` and the variants' folders). ImageNetV2 always gets its 1000 folders ``0..999``; only the
    ``num_classes`` chosen by :func:`class_indices` hold images. ImageNet-A/R also get a ``README.txt``.
    """
    name = _check_name(name)
    n = DEFAULT_CLASSES[name] if num_classes is None else int(num_classes)
    if n < 1:
        raise ValueError("num_classes must be >= 1")
    per_class = tuple(DEFAULT_PER_CLASS if per_class is None else per_class)
    if len(per_class) != 3 or min(per_class) < 0:
        raise ValueError("per_class must be (train, val, test) image counts")
    root = osp.abspath(osp.expanduser(str(root)))
    ddir = osp.join(root, _FOLDERS[name])
    os.makedirs(ddir, exist_ok=True)
    writer = _Writer(image_size, seed)
    rng = random.Random(seed)  # a private generator: the global random module is never touched
    classes = _class_list(name, n)
    builder = _BUILDERS[name]
    builder(ddir, classes, per_class, writer, rng, with_split_json)
    return ddir


def _folder_dataset(image_subdir, split_name, fname, extra_folders=()):
    """DTD / EuroSAT / Food101 / Caltech101: ``<image_subdir>/<folder>/<file>`` plus an optional json."""

    def build(ddir, classes, per_class, w, rng, with_json):
        image_dir = osp.join(ddir, image_subdir)
        split = {"train": [], "val": [], "test": []}
        for label, (folder, display) in enumerate(classes):
            for k, part in enumerate(_parts(per_class)):
                rel = f"{folder}/{fname(folder, k, rng)}"
                w.image(osp.join(image_dir, rel), label, k)
                split[part].append((rel, label, display))
        for j, folder in enumerate(extra_folders):  # e.g. Caltech101's ignored folders
            for k in range(sum(per_class)):
                w.image(osp.join(image_dir, folder, fname(folder, k, rng)), 900 + j, k)
        if with_json:
            _write_split(osp.join(ddir, f"split_zhou_{split_name}.json"), split)

    return build


def _hexname(rng, n=16):
    return "".join(rng.choice("0123456789abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _build_pets(ddir, classes, per_class, w, rng, with_json):
    image_dir = osp.join(ddir, "images")
    split = {"train": [], "val": [], "test": []}
    lines = {"trainval": [], "test": []}
    for label, (breed, display) in enumerate(classes):
        species = 1 if breed[0].isupper() else 2
        for k, part in enumerate(_parts(per_class)):
            stem = f"{breed}_{k + 1}"
            w.image(osp.join(image_dir, stem + ".jpg"), label, k)
            split[part].append((stem + ".jpg", label, display))
            lines["test" if part == "test" else "trainval"].append(f"{stem} {label + 1} {species} {label + 1}")
    if with_json:
        _write_split(osp.join(ddir, "split_zhou_OxfordPets.json"), split)
    else:
        _write_text(osp.join(ddir, "annotations", "trainval.txt"), lines["trainval"])
        _write_text(osp.join(ddir, "annotations", "test.txt"), lines["test"])


def _build_flowers(ddir, classes, per_class, w, rng, with_json):
    image_dir = osp.join(ddir, "jpg")
    split = {"train": [], "val": [], "test": []}
    parts = _parts(per_class)
    labels = []  # imagelabels.mat: 1-based class of image_00001, image_00002, ...
    idx = 0
    # images are interleaved across classes, classes visited in reverse order, so that the first-appearance order
    # of the labels (which the .mat fallback follows) is not the label order
    for k, part in enumerate(parts):
        for label in reversed(range(len(classes))):
            idx += 1
            imname = f"image_{idx:05d}.jpg"
            w.image(osp.join(image_dir, imname), label, k)
            split[part].append((imname, label, classes[label][1]))
            labels.append(label + 1)
    if with_json:
        _write_split(osp.join(ddir, "split_zhou_OxfordFlowers.json"), split)
    else:
        import scipy.io

        scipy.io.savemat(osp.join(ddir, "imagelabels.mat"), {"labels": np.array([labels], dtype=np.uint8
                                                                                 if len(classes) < 256 else np.int32)})
        _write_json(osp.join(ddir, "cat_to_name.json"), {str(i + 1): c for i, (c, _) in enumerate(classes)})


def _build_aircraft(ddir, classes, per_class, w, rng, with_json):
    # the split always comes from the official variant lists (CoOp has no json for FGVCAircraft)
    image_dir = osp.join(ddir, "images")
    lines = {"train": [], "val": [], "test": []}
    next_id = 1000000
    for k, part in enumerate(_parts(per_class)):
        for label, (variant, _) in enumerate(classes):
            next_id += 37
            w.image(osp.join(image_dir, f"{next_id:07d}.jpg"), label, k)
            lines[part].append(f"{next_id:07d} {variant}")
    _write_text(osp.join(ddir, "variants.txt"), [v for v, _ in classes])
    for part, ls in lines.items():
        _write_text(osp.join(ddir, f"images_variant_{part}.txt"), ls)


def _build_cars(ddir, classes, per_class, w, rng, with_json):
    split = {"train": [], "val": [], "test": []}
    annos = {"train": [], "test": []}
    counters = {"cars_train": 0, "cars_test": 0}
    for k, part in enumerate(_parts(per_class)):
        for label, (_, display) in enumerate(classes):
            sub = "cars_test" if part == "test" else "cars_train"
            counters[sub] += 1
            imname = f"{counters[sub]:05d}.jpg"
            w.image(osp.join(ddir, sub, imname), label, k)
            split[part].append((f"{sub}/{imname}", label, display))
            annos["test" if part == "test" else "train"].append((imname, label + 1))
    os.makedirs(osp.join(ddir, "cars_train"), exist_ok=True)
    os.makedirs(osp.join(ddir, "cars_test"), exist_ok=True)
    if with_json:
        _write_split(osp.join(ddir, "split_zhou_StanfordCars.json"), split)
        return
    import scipy.io

    def _annos(items):
        arr = np.zeros((1, len(items)), dtype=[("bbox_x1", "O"), ("bbox_y1", "O"), ("bbox_x2", "O"),
                                               ("bbox_y2", "O"), ("class", "O"), ("fname", "O")])
        for i, (fname, cls) in enumerate(items):
            arr[0, i] = (np.array([[1]], dtype=np.uint8), np.array([[1]], dtype=np.uint8),
                         np.array([[30]], dtype=np.uint8), np.array([[30]], dtype=np.uint8),
                         np.array([[cls]], dtype=np.uint16), np.array([fname]))
        return {"annotations": arr}

    os.makedirs(osp.join(ddir, "devkit"), exist_ok=True)
    scipy.io.savemat(osp.join(ddir, "devkit", "cars_train_annos.mat"), _annos(annos["train"]))
    scipy.io.savemat(osp.join(ddir, "cars_test_annos_withlabels.mat"), _annos(annos["test"]))
    names = np.empty((1, len(classes)), dtype=object)
    for i, (raw, _) in enumerate(classes):
        names[0, i] = np.array([raw])
    scipy.io.savemat(osp.join(ddir, "devkit", "cars_meta.mat"), {"class_names": names})


def _build_sun(ddir, classes, per_class, w, rng, with_json):
    image_dir = osp.join(ddir, "SUN397")
    split = {"train": [], "val": [], "test": []}
    lists = {"train": [], "test": []}
    for label, (path, display) in enumerate(classes):
        for k, part in enumerate(_parts(per_class)):
            rel = f"{path}/sun_{_hexname(rng)}.jpg"
            w.image(osp.join(image_dir, rel), label, k)
            split[part].append((rel, label, display))
            lists["test" if part == "test" else "train"].append("/" + rel)
    if with_json:
        _write_split(osp.join(ddir, "split_zhou_SUN397.json"), split)
    else:
        _write_text(osp.join(ddir, "ClassName.txt"), ["/" + p for p, _ in classes])
        _write_text(osp.join(ddir, "Training_01.txt"), lists["train"])
        _write_text(osp.join(ddir, "Testing_01.txt"), lists["test"])


def _build_ucf(ddir, classes, per_class, w, rng, with_json):
    image_dir = osp.join(ddir, "UCF-101-midframes")
    split = {"train": [], "val": [], "test": []}
    lists = {"train": [], "test": []}
    for label, (action, display) in enumerate(classes):
        for k, part in enumerate(_parts(per_class)):
            video = f"v_{action}_g{k // 4 + 1:02d}_c{k % 4 + 1:02d}"
            rel = f"{display}/{video}.jpg"
            w.image(osp.join(image_dir, rel), label, k)
            split[part].append((rel, label, display))
            if part == "test":
                lists["test"].append(f"{action}/{video}.avi")
            else:
                lists["train"].append(f"{action}/{video}.avi {label + 1}")
    if with_json:
        _write_split(osp.join(ddir, "split_zhou_UCF101.json"), split)
    else:
        lst = osp.join(ddir, "ucfTrainTestlist")
        _write_text(osp.join(lst, "classInd.txt"), [f"{i + 1} {a}" for i, (a, _) in enumerate(classes)])
        _write_text(osp.join(lst, "trainlist01.txt"), lists["train"])
        _write_text(osp.join(lst, "testlist01.txt"), lists["test"])


def _write_classnames(ddir, with_json):
    if with_json:
        _write_text(osp.join(ddir, "classnames.txt"), [f"{wnid} {name}" for wnid, name in imagenet_wnids()])


def _build_imagenet(ddir, classes, per_class, w, rng, with_json):
    tr, _, te = per_class
    val_id = 0
    for label, (wnid, _) in enumerate(classes):
        for k in range(tr):
            w.image(osp.join(ddir, "images", "train", wnid, f"{wnid}_{k + 1}.JPEG"), label, k)
        for k in range(te):
            val_id += 1
            w.image(osp.join(ddir, "images", "val", wnid, f"ILSVRC2012_val_{val_id:08d}.JPEG"), label, tr + k)
    os.makedirs(osp.join(ddir, "images", "train"), exist_ok=True)
    os.makedirs(osp.join(ddir, "images", "val"), exist_ok=True)
    _write_classnames(ddir, with_json)


def _build_v2(ddir, classes, per_class, w, rng, with_json):
    image_dir = osp.join(ddir, "imagenetv2-matched-frequency-format-val")
    chosen = set(class_indices(len(classes)))
    for idx in range(1000):
        os.makedirs(osp.join(image_dir, str(idx)), exist_ok=True)
        if idx in chosen:
            for k in range(per_class[2]):
                w.image(osp.join(image_dir, str(idx), f"{_hexname(rng, 40)}.jpeg"), idx, k)
    _write_classnames(ddir, with_json)


def _variant(image_subdir, fname, readme):
    def build(ddir, classes, per_class, w, rng, with_json):
        image_dir = osp.join(ddir, image_subdir)
        os.makedirs(image_dir, exist_ok=True)
        for label, (wnid, _) in enumerate(classes):
            for k in range(per_class[2]):
                w.image(osp.join(image_dir, wnid, fname(k, rng)), label, k)
        if readme:
            _write_text(osp.join(image_dir, "README.txt"), ["Synthetic stand-in for the dataset's README."])
        _write_classnames(ddir, with_json)

    return build


_BUILDERS = {
    "OxfordPets": _build_pets,
    "OxfordFlowers": _build_flowers,
    "FGVCAircraft": _build_aircraft,
    "DescribableTextures": _folder_dataset("images", "DescribableTextures", lambda f, k, r: f"{f}_{k + 1:04d}.jpg"),
    "EuroSAT": _folder_dataset("2750", "EuroSAT", lambda f, k, r: f"{f}_{k + 1}.jpg"),
    "StanfordCars": _build_cars,
    "Food101": _folder_dataset("images", "Food101", lambda f, k, r: f"{100000 + 7919 * k}.jpg"),
    "SUN397": _build_sun,
    "Caltech101": _folder_dataset("101_ObjectCategories", "Caltech101", lambda f, k, r: f"image_{k + 1:04d}.jpg",
                                  extra_folders=_CALTECH_IGNORED),
    "UCF101": _build_ucf,
    "ImageNet": _build_imagenet,
    "ImageNetV2": _build_v2,
    "ImageNetSketch": _variant("images", lambda k, r: f"sketch_{k + 1}.JPEG", readme=False),
    "ImageNetA": _variant("imagenet-a", lambda k, r: f"{_hexname(r, 8)}_{k}.jpg", readme=True),
    "ImageNetR": _variant("imagenet-r", lambda k, r: f"art_{k}.jpg", readme=True),
}
