"""The 15 CoOp dataset loaders on synthetic layouts: splits, class names, base-to-new, few-shot cache, errors."""
import importlib.util
import json
import os
import os.path as osp
import pickle
import random
import shutil
import sys
import types
from collections import OrderedDict

import pytest

from vlpeft.config import get_cfg
from vlpeft.datasets import base as dbase
from vlpeft.datasets.base import DatasetNotFoundError, StaleCacheError
from vlpeft.engine import DATASET_REGISTRY, Datum
from vlpeft.datasets.synthetic import (
    DEFAULT_CLASSES,
    LAYOUT_NAMES,
    class_indices,
    dataset_folder,
    expected_classnames,
    expected_counts,
    imagenet_wnids,
    make_layout,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANTS = ["ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR"]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Keep the default few-shot cache (used when a dataset folder is read-only) inside the test's tmp dir."""
    monkeypatch.setenv("VLPEFT_CACHE_DIR", str(tmp_path / "default_cache"))


def build(name, root, shots=-1, seed=1, subsample="all", cache_dir=""):
    cfg = get_cfg()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.SEED = seed
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.FEWSHOT_CACHE_DIR = str(cache_dir)
    return DATASET_REGISTRY.get(name)(cfg)


def paths(items):
    return [d.impath for d in items]


def triples(items):
    return [(d.impath, d.label, d.classname) for d in items]


def check_items(items, ds, dataset_dir):
    for d in items:
        assert isinstance(d, Datum)
        assert osp.isfile(d.impath), d.impath
        assert d.impath.startswith(dataset_dir + os.sep)
        assert isinstance(d.label, int)
        assert d.classname == ds.lab2cname[d.label]


def reference_fewshot(data_source, k):
    """Dassl's sampling, re-implemented: label groups in first-appearance order, ``random.sample`` per group."""
    groups = OrderedDict()
    for item in data_source:
        groups.setdefault(item.label, []).append(item)
    out = []
    for items in groups.values():
        out.extend(random.sample(items, k) if len(items) >= k else items)
    return out


# ----------------------------------------------------------------------------------------------------------------
# all 15 datasets
# ----------------------------------------------------------------------------------------------------------------
def test_registry_has_the_15_names():
    for name in LAYOUT_NAMES:
        assert DATASET_REGISTRY.get(name).__name__ == name
    assert len(set(LAYOUT_NAMES)) == 15


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_layout_loads_with_split_json(name, tmp_path):
    ddir = make_layout(name, tmp_path)
    assert ddir == str(tmp_path / dataset_folder(name))
    ds = build(name, tmp_path)

    exp = expected_counts(name)
    assert len(ds.train_x) == exp["train"]
    assert len(ds.test) == exp["test"]
    assert (ds.val is None) if exp["val"] is None else (len(ds.val) == exp["val"])
    names = expected_classnames(name)
    assert ds.classnames == names
    if name == "ImageNetV2":  # folder i is class i of the 1000-class list
        assert sorted(ds.lab2cname) == class_indices(DEFAULT_CLASSES[name])
    else:
        assert ds.num_classes == len(names) == DEFAULT_CLASSES[name]
        assert sorted({d.label for d in ds.test}) == list(range(len(names)))
    for split in (ds.train_x, ds.val or [], ds.test):
        check_items(split, ds, ddir)
    if name == "ImageNet":
        assert ds.val is ds.test
    if name in VARIANTS:
        assert ds.train_x is ds.test


def test_mapped_class_names(tmp_path):
    make_layout("EuroSAT", tmp_path)
    make_layout("Caltech101", tmp_path, num_classes=6)
    make_layout("StanfordCars", tmp_path, num_classes=3)
    make_layout("SUN397", tmp_path, num_classes=3)
    make_layout("UCF101", tmp_path, num_classes=2)
    make_layout("OxfordPets", tmp_path, num_classes=2)
    eurosat = build("EuroSAT", tmp_path)
    assert eurosat.classnames == [
        "Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road", "Industrial Buildings",
        "Pasture Land", "Permanent Crop Land", "Residential Buildings", "River", "Sea or Lake",
    ]
    cal = build("Caltech101", tmp_path)
    # case-sensitive sort of the folders; BACKGROUND_Google and Faces_easy are left out
    assert cal.classnames == ["face", "leopard", "motorbike", "airplane", "object_000", "object_001"]
    assert not any("BACKGROUND_Google" in p or "Faces_easy" in p for p in paths(cal.train_x + cal.val + cal.test))
    assert build("StanfordCars", tmp_path).classnames[1] == "1998 Brand1 Model 1 Sedan"
    assert build("SUN397", tmp_path).classnames[2] == "indoor cplace_002"
    ucf = build("UCF101", tmp_path)
    assert ucf.classnames == ["Act000_Jump_Band", "Act001_Rope_Band"]
    assert all(osp.basename(osp.dirname(p)) == "Act000_Jump_Band" for p in paths(ucf.test) if "Act000" in p)
    assert build("OxfordPets", tmp_path).classnames == ["cat_kind_00", "dog_kind_01"]


FALLBACK_SMALL = {
    "OxfordPets": 5, "OxfordFlowers": 6, "FGVCAircraft": 5, "DescribableTextures": 6, "EuroSAT": 10,
    "StanfordCars": 5, "Food101": 5, "SUN397": 7, "Caltech101": 7, "UCF101": 5, "ImageNet": 5, "ImageNetV2": 4,
    "ImageNetSketch": 5, "ImageNetA": 5, "ImageNetR": 5,
}
SPLIT_JSON = {
    "OxfordPets": "split_zhou_OxfordPets.json", "OxfordFlowers": "split_zhou_OxfordFlowers.json",
    "DescribableTextures": "split_zhou_DescribableTextures.json", "EuroSAT": "split_zhou_EuroSAT.json",
    "StanfordCars": "split_zhou_StanfordCars.json", "Food101": "split_zhou_Food101.json",
    "SUN397": "split_zhou_SUN397.json", "Caltech101": "split_zhou_Caltech101.json",
    "UCF101": "split_zhou_UCF101.json",
}


@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_layout_loads_without_split_json(name, tmp_path, capsys):
    n = FALLBACK_SMALL[name]
    ddir = make_layout(name, tmp_path, num_classes=n, per_class=(3, 1, 2), with_split_json=False)
    random.seed(0)
    ds = build(name, tmp_path)
    out = capsys.readouterr().out
    exp = expected_counts(name, num_classes=n, per_class=(3, 1, 2), with_split_json=False)
    assert len(ds.train_x) == exp["train"] and len(ds.test) == exp["test"]
    assert (ds.val is None) if exp["val"] is None else (len(ds.val) == exp["val"])
    assert ds.classnames == expected_classnames(name, n)
    for split in (ds.train_x, ds.val or [], ds.test):
        check_items(split, ds, ddir)
    if name.startswith("ImageNet"):  # no classnames.txt in the layout: the packaged list is used
        assert "shipped with vlpeft" in out
    if name in SPLIT_JSON:
        json_path = osp.join(ddir, SPLIT_JSON[name])
        assert osp.isfile(json_path) and f"Saved split to {json_path}" in out
        # the json is read back (no random call) and gives the same split
        state = random.getstate()
        again = build(name, tmp_path)
        assert random.getstate() == state
        for a, b in ((ds.train_x, again.train_x), (ds.val, again.val), (ds.test, again.test)):
            assert triples(a) == triples(b)


def test_fallback_split_is_coops_50_20_30(tmp_path):
    ddir = make_layout("EuroSAT", tmp_path, num_classes=4, per_class=(5, 2, 3), with_split_json=False)
    image_dir = osp.join(ddir, "2750")
    random.seed(7)
    ds = build("EuroSAT", tmp_path)

    # independent re-implementation: sorted categories, listdir order, one random.shuffle per category
    random.seed(7)
    ref = {"train": [], "val": [], "test": []}
    for label, cat in enumerate(sorted(c for c in os.listdir(image_dir) if not c.startswith("."))):
        ims = [osp.join(image_dir, cat, f) for f in os.listdir(osp.join(image_dir, cat)) if not f.startswith(".")]
        random.shuffle(ims)
        ref["train"] += ims[:5]
        ref["val"] += ims[5:7]
        ref["test"] += ims[7:]
    assert paths(ds.train_x) == ref["train"] and paths(ds.val) == ref["val"] and paths(ds.test) == ref["test"]

    split = json.load(open(osp.join(ddir, "split_zhou_EuroSAT.json")))
    assert [len(split[k]) for k in ("train", "val", "test")] == [20, 8, 12]
    relpath, label, cname = split["train"][0]
    assert not relpath.startswith("/") and relpath.startswith("AnnualCrop/")
    assert (label, cname) == (0, "Annual Crop Land")
    assert {c for _, _, c in split["test"]} == {"Annual Crop Land", "Forest", "Herbaceous Vegetation Land",
                                                 "Highway or Road"}
    raw = open(osp.join(ddir, "split_zhou_EuroSAT.json")).read()
    assert raw.startswith('{\n    "train": [\n')  # Dassl's write_json format (indent 4)


def test_fallback_trainval_split_is_coops_80_20(tmp_path):
    ddir = make_layout("OxfordPets", tmp_path, num_classes=3, per_class=(7, 3, 2), with_split_json=False)
    random.seed(3)
    ds = build("OxfordPets", tmp_path)
    random.seed(3)
    lines = open(osp.join(ddir, "annotations", "trainval.txt")).read().split("\n")
    trainval = [(osp.join(ddir, "images", ln.split(" ")[0] + ".jpg"), int(ln.split(" ")[1]) - 1) for ln in lines if ln]
    groups = OrderedDict()
    for i, (_, y) in enumerate(trainval):
        groups.setdefault(y, []).append(i)
    ref_train, ref_val = [], []
    for idxs in groups.values():
        random.shuffle(idxs)
        for n, i in enumerate(idxs):
            (ref_val if n < round(len(idxs) * 0.2) else ref_train).append(trainval[i][0])
    assert paths(ds.train_x) == ref_train and paths(ds.val) == ref_val
    assert len(ds.val) == 3 * 2 and len(ds.test) == 3 * 2


def test_oxford_flowers_fallback_follows_label_first_appearance(tmp_path):
    pytest.importorskip("scipy")
    make_layout("OxfordFlowers", tmp_path, num_classes=3, per_class=(2, 1, 1), with_split_json=False)
    ds = build("OxfordFlowers", tmp_path)
    # the layout interleaves the images with the classes in reverse order, as the .mat order drives the split
    assert [d.label for d in ds.train_x][:2] == [2, 2]
    assert ds.classnames == ["flower kind 0", "flower kind 1", "flower kind 2"]


# ----------------------------------------------------------------------------------------------------------------
# base-to-new
# ----------------------------------------------------------------------------------------------------------------
def test_subsample_base_new_eurosat(tmp_path, capsys):
    make_layout("EuroSAT", tmp_path, per_class=(3, 2, 2))
    full = build("EuroSAT", tmp_path)
    base_ds = build("EuroSAT", tmp_path, subsample="base")
    assert "SUBSAMPLE BASE CLASSES!" in capsys.readouterr().out
    new_ds = build("EuroSAT", tmp_path, subsample="new")
    assert "SUBSAMPLE NEW CLASSES!" in capsys.readouterr().out

    assert base_ds.num_classes == 5 and new_ds.num_classes == 5
    assert base_ds.classnames == full.classnames[:5]
    assert new_ds.classnames == full.classnames[5:]
    for ds, offset in ((base_ds, 0), (new_ds, 5)):
        for split, full_split in ((ds.train_x, full.train_x), (ds.val, full.val), (ds.test, full.test)):
            assert sorted({d.label for d in split}) == [0, 1, 2, 3, 4]
            kept = [d for d in full_split if offset <= d.label < offset + 5]
            assert [(d.impath, d.label - offset, d.classname) for d in kept] == triples(split)
            assert all(d.domain == 0 for d in split)


def test_subsample_odd_count_uses_ceil(tmp_path):
    make_layout("DescribableTextures", tmp_path, num_classes=7)
    assert build("DescribableTextures", tmp_path, subsample="base").num_classes == 4
    new = build("DescribableTextures", tmp_path, subsample="new")
    assert new.num_classes == 3
    assert new.classnames == expected_classnames("DescribableTextures", 7)[4:]


def test_subsample_classes_uses_labels_of_first_dataset(tmp_path):
    ims = []
    for i in range(5):
        p = tmp_path / f"{i}.jpg"
        p.write_bytes(b"x")
        ims.append(str(p))
    first = [Datum(impath=ims[y], label=y, domain=3, classname=f"c{y}") for y in (4, 0, 2)]
    second = [Datum(impath=ims[y], label=y, classname=f"c{y}") for y in range(5)]
    assert dbase.subsample_classes(first, second, subsample="all") == (first, second)
    b1, b2 = dbase.subsample_classes(first, second, subsample="base")  # labels [0, 2, 4] -> base [0, 2]
    assert [(d.label, d.classname, d.domain) for d in b1] == [(0, "c0", 0), (1, "c2", 0)]
    assert [(d.label, d.classname) for d in b2] == [(0, "c0"), (1, "c2")]
    n1, n2 = dbase.subsample_classes(first, second, subsample="new")
    assert [(d.label, d.classname) for d in n1] == [(0, "c4")] == [(d.label, d.classname) for d in n2]
    with pytest.raises(ValueError, match="pseudo_base"):
        dbase.subsample_classes(first, subsample="novel")


def test_pseudo_subsample_cuts_the_base_classes_in_two():
    labels = list(range(13))  # base: 0-6 (ceil(13/2) = 7); pseudo-base: 0-3 (ceil(7/2) = 4); pseudo-new: 4-6
    items = [Datum(impath=__file__, label=y, classname=f"c{y}") for y in reversed(labels)]
    (pb,) = dbase.subsample_classes(items, subsample="pseudo_base")
    (pn,) = dbase.subsample_classes(items, subsample="pseudo_new")
    (base,) = dbase.subsample_classes(items, subsample="base")
    assert sorted((d.label, d.classname) for d in pb) == [(i, f"c{i}") for i in range(4)]
    assert sorted((d.label, d.classname) for d in pn) == [(i, f"c{i + 4}") for i in range(3)]
    assert sorted(d.classname for d in pb + pn) == sorted(d.classname for d in base)


def test_imagenet_subsample_and_fewshot(tmp_path):
    ddir = make_layout("ImageNet", tmp_path, num_classes=5, per_class=(6, 0, 2))
    random.seed(2)
    ds = build("ImageNet", tmp_path, shots=4, seed=2, subsample="new")
    assert ds.num_classes == 2 and ds.val is ds.test
    assert len(ds.train_x) == 2 * 4 and len(ds.test) == 2 * 2
    names = expected_classnames("ImageNet", 5)
    assert ds.classnames == names[3:]
    data = pickle.load(open(osp.join(ddir, "split_fewshot", "shot_4-seed_2.pkl"), "rb"))
    assert list(data) == ["train"] and len(data["train"]) == 5 * 4  # all classes, before subsampling


# ----------------------------------------------------------------------------------------------------------------
# few-shot sampling and its cache
# ----------------------------------------------------------------------------------------------------------------
def test_fewshot_matches_dassl_sampling_and_is_deterministic(tmp_path):
    make_layout("EuroSAT", tmp_path / "data", per_class=(8, 5, 3))
    full = build("EuroSAT", tmp_path / "data")

    def sample(seed, cache):
        random.seed(seed)
        ds = build("EuroSAT", tmp_path / "data", shots=3, seed=seed, cache_dir=tmp_path / cache)
        return paths(ds.train_x), paths(ds.val), ds

    tr1, va1, ds = sample(5, "c1")
    tr2, va2, _ = sample(5, "c2")  # fresh cache: sampled again
    tr3, va3, _ = sample(6, "c3")
    assert (tr1, va1) == (tr2, va2)
    assert tr1 != tr3
    assert len(tr1) == 10 * 3 and len(va1) == 10 * 3 and len(ds.test) == 10 * 3

    random.seed(5)
    assert tr1 == paths(reference_fewshot(full.train_x, 3))
    assert va1 == paths(reference_fewshot(full.val, min(3, 4)))


def test_fewshot_cache_written_and_reread_without_random(tmp_path, capsys):
    ddir = make_layout("EuroSAT", tmp_path, per_class=(6, 5, 1))
    ds0 = build("EuroSAT", tmp_path)
    assert os.listdir(osp.join(ddir, "split_fewshot")) == []  # created on every construction, as CoOp

    random.seed(1)
    ds = build("EuroSAT", tmp_path, shots=8, seed=1)  # 6 < 8 train images: all are kept; val: 4 of 5
    pkl = osp.join(ddir, "split_fewshot", "shot_8-seed_1.pkl")
    assert f"Saving preprocessed few-shot data to {pkl}" in capsys.readouterr().out
    assert sorted(os.listdir(osp.join(ddir, "split_fewshot"))) == ["shot_8-seed_1.pkl"]  # no temp file left
    raw = open(pkl, "rb").read()
    assert raw[:2] == bytes([0x80, pickle.HIGHEST_PROTOCOL])
    data = pickle.loads(raw)
    assert sorted(data) == ["train", "val"]
    assert paths(data["train"]) == paths(ds.train_x) == paths(ds0.train_x)
    assert len(data["val"]) == 10 * 4

    random.seed(12345)
    state = random.getstate()
    again = build("EuroSAT", tmp_path, shots=8, seed=1)
    assert random.getstate() == state
    assert f"Loading preprocessed few-shot data from {pkl}" in capsys.readouterr().out
    assert triples(again.train_x) == triples(ds.train_x) and triples(again.val) == triples(ds.val)

    build("EuroSAT", tmp_path, shots=1, seed=-1)
    assert osp.isfile(osp.join(ddir, "split_fewshot", "shot_1-seed_-1.pkl"))


def test_fewshot_cache_dir_setting(tmp_path, capsys):
    ddir = make_layout("EuroSAT", tmp_path / "data", per_class=(4, 2, 1))
    random.seed(1)
    build("EuroSAT", tmp_path / "data", shots=2, seed=1, cache_dir=tmp_path / "cache")
    expected = tmp_path / "cache" / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl"
    assert expected.is_file()
    assert not osp.exists(osp.join(ddir, "split_fewshot"))
    assert f"cached in {expected.parent}" in capsys.readouterr().out
    state = random.getstate()
    build("EuroSAT", tmp_path / "data", shots=2, seed=1, cache_dir=tmp_path / "cache")
    assert random.getstate() == state


def test_fewshot_not_writable_detection(tmp_path, monkeypatch, capsys):
    ddir = make_layout("EuroSAT", tmp_path / "data", per_class=(4, 2, 1))
    real_access = os.access

    def no_write_in_data(path, mode, *args, **kwargs):
        if str(path).startswith(ddir) and mode & os.W_OK:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", no_write_in_data)
    random.seed(1)
    ds = build("EuroSAT", tmp_path / "data", shots=2, seed=1)
    cached = tmp_path / "default_cache" / "fewshot" / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl"
    assert cached.is_file()
    assert not osp.exists(osp.join(ddir, "split_fewshot"))
    assert "is not writable" in capsys.readouterr().out
    state = random.getstate()
    assert paths(build("EuroSAT", tmp_path / "data", shots=2, seed=1).train_x) == paths(ds.train_x)
    assert random.getstate() == state


def test_read_only_dataset_still_reads_pickle_beside_data(tmp_path, monkeypatch):
    ddir = make_layout("EuroSAT", tmp_path / "data", per_class=(4, 2, 1))
    random.seed(1)
    ds = build("EuroSAT", tmp_path / "data", shots=2, seed=1)  # written beside the data
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, *a, **k: False if str(p).startswith(ddir) and m & os.W_OK
                        else real_access(p, m, *a, **k))
    state = random.getstate()
    again = build("EuroSAT", tmp_path / "data", shots=2, seed=1)
    assert random.getstate() == state and paths(again.train_x) == paths(ds.train_x)
    assert not (tmp_path / "default_cache" / "fewshot" / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl").exists()


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_fewshot_read_only_dataset_chmod(tmp_path):
    ddir = make_layout("EuroSAT", tmp_path / "data", per_class=(4, 2, 1))
    os.chmod(ddir, 0o555)
    try:
        random.seed(1)
        build("EuroSAT", tmp_path / "data", shots=2, seed=1)
    finally:
        os.chmod(ddir, 0o755)
    assert (tmp_path / "default_cache" / "fewshot" / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl").is_file()


def _dassl_pickle(obj_spec, monkeypatch):
    """Pickle bytes whose Datum objects reference ``dassl.data.datasets.base_dataset.Datum`` (as CoOp's do)."""

    class FakeDatum:
        def __init__(self, impath, label, domain, classname):
            self._impath, self._label, self._domain, self._classname = impath, label, domain, classname

    FakeDatum.__module__ = "dassl.data.datasets.base_dataset"
    FakeDatum.__qualname__ = FakeDatum.__name__ = "Datum"
    with monkeypatch.context() as m:
        for mod in ("dassl", "dassl.data", "dassl.data.datasets", "dassl.data.datasets.base_dataset"):
            m.setitem(sys.modules, mod, types.ModuleType(mod))
        sys.modules["dassl.data.datasets.base_dataset"].Datum = FakeDatum
        obj = {k: [FakeDatum(*t) for t in v] for k, v in obj_spec.items()}
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    assert b"dassl.data.datasets.base_dataset" in data
    return data


def test_pickle_written_by_dassl_loads(tmp_path, monkeypatch):
    if importlib.util.find_spec("dassl") is not None:
        pytest.skip("the real Dassl is installed")
    ddir = make_layout("EuroSAT", tmp_path, num_classes=3, per_class=(4, 2, 1))
    full = build("EuroSAT", tmp_path)
    spec = {
        "train": [(d.impath, d.label, 0, d.classname) for d in full.train_x[::4]],
        "val": [(d.impath, d.label, 0, d.classname) for d in full.val[::2]],
    }
    pkl = osp.join(ddir, "split_fewshot", "shot_1-seed_3.pkl")
    with open(pkl, "wb") as f:
        f.write(_dassl_pickle(spec, monkeypatch))
    assert "dassl" not in sys.modules

    state = random.getstate()
    ds = build("EuroSAT", tmp_path, shots=1, seed=3)
    assert random.getstate() == state
    assert all(type(d) is Datum for d in ds.train_x + ds.val)
    assert [(d.impath, d.label, d.domain, d.classname) for d in ds.train_x] == spec["train"]
    assert [(d.impath, d.label, d.domain, d.classname) for d in ds.val] == spec["val"]


def test_moved_root_is_remapped(tmp_path, capsys):
    make_layout("EuroSAT", tmp_path / "old", per_class=(4, 2, 1))
    random.seed(1)
    ds = build("EuroSAT", tmp_path / "old", shots=2, seed=1)
    rel = [osp.relpath(p, str(tmp_path / "old")) for p in paths(ds.train_x)]
    os.rename(tmp_path / "old", tmp_path / "new")

    state = random.getstate()
    moved = build("EuroSAT", tmp_path / "new", shots=2, seed=1)
    assert random.getstate() == state
    assert "Remapped" in capsys.readouterr().out
    assert paths(moved.train_x) == [osp.join(str(tmp_path / "new"), r) for r in rel]
    assert all(osp.isfile(p) for p in paths(moved.train_x) + paths(moved.val))

    # a listed image that exists neither at its old path nor under the new root: a clear error, never a silent use
    pkl = str(tmp_path / "new" / "eurosat" / "split_fewshot" / "shot_2-seed_1.pkl")
    ghost = tmp_path / "gone" / "eurosat" / "2750" / "AnnualCrop" / "ghost.jpg"
    ghost.parent.mkdir(parents=True)
    ghost.write_bytes(b"x")
    data = pickle.load(open(pkl, "rb"))
    data["train"][0] = Datum(impath=str(ghost), label=0, classname="Annual Crop Land")
    ghost.unlink()
    pickle.dump(data, open(pkl, "wb"), protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(StaleCacheError) as e:
        build("EuroSAT", tmp_path / "new", shots=2, seed=1)
    assert pkl in str(e.value) and "Delete" in str(e.value)


def test_imagenet_preprocessed_cache_and_moved_root(tmp_path):
    ddir = make_layout("ImageNet", tmp_path / "a", num_classes=4, per_class=(2, 0, 1))
    ds = build("ImageNet", tmp_path / "a")
    pkl = osp.join(ddir, "preprocessed.pkl")
    assert osp.isfile(pkl)
    assert [f for f in os.listdir(ddir) if f.endswith(".tmp")] == []
    # a later run reads the cached listing: an added class folder is not seen
    wnid = imagenet_wnids()[500][0]
    os.makedirs(osp.join(ddir, "images", "train", wnid))
    shutil.copy(paths(ds.train_x)[0], osp.join(ddir, "images", "train", wnid, f"{wnid}_1.JPEG"))
    assert len(build("ImageNet", tmp_path / "a").train_x) == len(ds.train_x) == 8

    os.rename(tmp_path / "a", tmp_path / "b")
    moved = build("ImageNet", tmp_path / "b")
    new_dir = str(tmp_path / "b" / "imagenet")
    assert all(p.startswith(new_dir + os.sep) for p in paths(moved.train_x) + paths(moved.test))
    assert [osp.relpath(p, new_dir) for p in paths(moved.train_x)] == \
        [osp.relpath(p, str(tmp_path / "a" / "imagenet")) for p in paths(ds.train_x)]
    rewritten = pickle.load(open(osp.join(new_dir, "preprocessed.pkl"), "rb"))
    assert paths(rewritten["train"]) == paths(moved.train_x)


# ----------------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", LAYOUT_NAMES)
def test_missing_dataset_folder_error(name, tmp_path):
    random.seed(0)
    state = random.getstate()
    with pytest.raises(DatasetNotFoundError) as e:
        build(name, tmp_path)
    assert isinstance(e.value, FileNotFoundError)
    msg = str(e.value)
    assert str(tmp_path / dataset_folder(name)) in msg
    assert f"docs/DATASETS.md#{name.lower()}" in msg
    assert random.getstate() == state


def test_missing_image_folder_and_split_file_errors(tmp_path):
    os.makedirs(tmp_path / "eurosat")
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "eurosat" / "2750")):
        build("EuroSAT", tmp_path)

    make_layout("OxfordPets", tmp_path, num_classes=2)
    os.remove(tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json")
    state = random.getstate()
    with pytest.raises(DatasetNotFoundError) as e:
        build("OxfordPets", tmp_path)
    assert random.getstate() == state
    assert str(tmp_path / "oxford_pets" / "split_zhou_OxfordPets.json") in str(e.value)
    assert str(tmp_path / "oxford_pets" / "annotations" / "trainval.txt") in str(e.value)

    make_layout("FGVCAircraft", tmp_path, num_classes=2)
    os.remove(tmp_path / "fgvc_aircraft" / "images_variant_val.txt")
    with pytest.raises(DatasetNotFoundError, match="images_variant_val.txt"):
        build("FGVCAircraft", tmp_path)

    make_layout("ImageNetV2", tmp_path, num_classes=2)
    os.rmdir(tmp_path / "imagenetv2" / "imagenetv2-matched-frequency-format-val" / "500")
    with pytest.raises(DatasetNotFoundError, match=r"imagenetv2-matched-frequency-format-val/500"):
        build("ImageNetV2", tmp_path)

    make_layout("DescribableTextures", tmp_path, num_classes=2)
    victim = tmp_path / "dtd" / "images" / "banded" / "banded_0003.jpg"
    os.remove(victim)
    with pytest.raises(DatasetNotFoundError) as e:
        build("DescribableTextures", tmp_path)
    assert str(victim) in str(e.value) and "split_zhou_DescribableTextures.json" in str(e.value)


def test_docs_have_an_anchor_per_dataset():
    text = open(osp.join(REPO, "docs", "DATASETS.md")).read()
    for name in LAYOUT_NAMES:
        assert f'<a id="{name.lower()}"></a>' in text, name


# ----------------------------------------------------------------------------------------------------------------
# ImageNet class names and the variants
# ----------------------------------------------------------------------------------------------------------------
def test_packaged_imagenet_classnames():
    from vlpeft.datasets.imagenet import PACKAGED_CLASSNAMES, read_classnames

    names = read_classnames(PACKAGED_CLASSNAMES)
    assert len(names) == 1000
    assert list(names) == sorted(names) and all(w.startswith("n") and len(w) == 9 for w in names)
    assert names["n01440764"] == "tench"
    assert names["n15075141"] == "toilet paper"
    assert names["n02099601"] == "Golden Retriever"
    with open(PACKAGED_CLASSNAMES) as f:
        assert len(f.read().splitlines()) == 1000


def test_classnames_txt_is_preferred(tmp_path):
    ddir = make_layout("ImageNetSketch", tmp_path, num_classes=3, with_split_json=False)
    wnids = [w for w, _ in imagenet_wnids()]
    with open(osp.join(ddir, "classnames.txt"), "w") as f:
        f.write("".join(f"{w} custom {i}\n" for i, w in enumerate(wnids)))
    ds = build("ImageNetSketch", tmp_path)
    assert ds.classnames == [f"custom {i}" for i in class_indices(3)]


@pytest.mark.parametrize("name", ["ImageNetA", "ImageNetR"])
def test_imagenet_a_r_labels(name, tmp_path):
    ddir = make_layout(name, tmp_path, num_classes=6, per_class=(0, 0, 2))
    image_dir = osp.join(ddir, "imagenet-a" if name == "ImageNetA" else "imagenet-r")
    assert osp.isfile(osp.join(image_dir, "README.txt"))
    ds = build(name, tmp_path, shots=2, subsample="base")  # test-only: neither is applied
    pairs = imagenet_wnids()
    present = sorted(f for f in os.listdir(image_dir) if f != "README.txt")
    assert ds.num_classes == 6
    assert ds.classnames == [dict(pairs)[w] for w in present]
    for d in ds.test:
        assert present[d.label] == osp.basename(osp.dirname(d.impath))
    assert len(ds.test) == 12 and ds.train_x is ds.test and ds.val is None


def test_cfg_without_vlpeft_keys(tmp_path):
    """A plain Dassl cfg (no SUBSAMPLE_CLASSES / FEWSHOT_CACHE_DIR) still works."""
    from vlpeft.engine import get_cfg_default

    make_layout("EuroSAT", tmp_path, num_classes=2)
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(tmp_path)
    ds = DATASET_REGISTRY.get("EuroSAT")(cfg)
    assert ds.num_classes == 2


def test_mat_fallback_without_scipy_is_a_clear_error(tmp_path, monkeypatch):
    pytest.importorskip("scipy")
    make_layout("StanfordCars", tmp_path, num_classes=2, with_split_json=False)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # import scipy.io now raises ImportError
    with pytest.raises(ImportError, match=r"needs scipy .*split_zhou_StanfordCars.json|docs/DATASETS.md#stanfordcars"):
        build("StanfordCars", tmp_path)


def test_empty_image_folder_without_json(tmp_path):
    os.makedirs(tmp_path / "food-101" / "images")
    with pytest.raises(DatasetNotFoundError, match="one sub-folder per class"):
        build("Food101", tmp_path)
