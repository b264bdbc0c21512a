"""Shared machinery of vlpeft's CoOp-compatible dataset loaders.

Everything here reproduces the behaviour of the CoOp family's loaders (see ``docs/DATASETS.md``):

* the ``split_zhou_<Name>.json`` format (:func:`read_split` / :func:`save_split`),
* the fallback splits used when that json is missing (:func:`split_trainval`, :func:`read_and_split_data`), with the
  same calls on the global :mod:`random` module,
* the base-to-new protocol (:func:`subsample_classes`),
* the few-shot cache ``split_fewshot/shot_{K}-seed_{SEED}.pkl`` (:func:`fewshot_split`), which vlpeft writes
  atomically, can relocate to ``DATASET.FEWSHOT_CACHE_DIR`` when the dataset folder is read-only, reads pickles written
  by the real Dassl/CoOp, and never silently uses image paths that no longer exist.

Only the names Dassl also provides are taken from :mod:`vlpeft.engine`, so the loaders work unchanged on top of the
real Dassl.
"""
import math
import os
import os.path as osp
import pickle
import random
from collections import defaultdict

from vlpeft.engine import Datum, DatasetBase, listdir_nohidden, mkdir_if_missing, read_json, write_json
from vlpeft.engine.utils import atomic_write_bytes

__all__ = [
    "DOCS",
    "DatasetNotFoundError",
    "StaleCacheError",
    "docs_ref",
    "dataset_root",
    "cfg_value",
    "require_dir",
    "require_file",
    "require_split",
    "make_datum",
    "read_split",
    "save_split",
    "split_trainval",
    "read_and_split_data",
    "subsample_classes",
    "default_cache_root",
    "is_writable",
    "fewshot_dir",
    "fewshot_split",
    "load_pickle",
    "save_pickle",
    "relocate_items",
    "loadmat",
    "CoOpDataset",
]

DOCS = "docs/DATASETS.md"

# Module paths under which a pickled ``Datum`` may be referenced: Dassl's (pickles written by CoOp / MaPLe /
# PromptSRC) and vlpeft's own engine. Both are loaded as the *active* engine's Datum.
_DATUM_PATHS = {
    ("dassl.data.datasets.base_dataset", "Datum"),
    ("vlpeft.engine.data", "Datum"),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset folder, image folder or split file is missing. The message names the expected path."""


class StaleCacheError(RuntimeError):
    """A cached pickle lists images that do not exist under the current dataset folder."""


def docs_ref(name):
    """``docs/DATASETS.md#<name>``: the section of the dataset guide an error points to."""
    return f"{DOCS}#{name.lower()}"


def cfg_value(cfg, dotted_key, default=None):
    """``cfg.A.B`` or ``default`` when a key is absent (a plain Dassl cfg lacks vlpeft's keys)."""
    node = cfg
    for key in dotted_key.split("."):
        if isinstance(node, dict):
            if key not in node:
                return default
            node = node[key]
        elif hasattr(node, key):
            node = getattr(node, key)
        else:
            return default
    return node


def dataset_root(cfg):
    """``abspath(expanduser(cfg.DATASET.ROOT))``, as every CoOp loader computes it."""
    return osp.abspath(osp.expanduser(cfg.DATASET.ROOT))


def _hint(name, root=None):
    where = f" (DATASET.ROOT is {root})" if root else ""
    return f"{where}. See {docs_ref(name)} for how to obtain and lay out {name}."


def require_dir(path, name, what="folder", root=None):
    """Raise :class:`DatasetNotFoundError` naming ``path`` unless it is a directory."""
    if not osp.isdir(path):
        raise DatasetNotFoundError(f"{name}: expected the {what} {path}, which does not exist" + _hint(name, root))
    return path


def require_file(path, name, what="file", root=None):
    """Raise :class:`DatasetNotFoundError` naming ``path`` unless it is a file."""
    if not osp.isfile(path):
        raise DatasetNotFoundError(f"{name}: expected the {what} {path}, which does not exist" + _hint(name, root))
    return path


def require_split(split_path, raw_files, name, root=None):
    """True when the split json exists; False when it is missing but every file needed to generate it exists;
    otherwise raise :class:`DatasetNotFoundError` naming the json and the missing raw files."""
    if osp.isfile(split_path):
        return True
    missing = [p for p in raw_files if not osp.exists(p)]
    if not missing:
        return False
    raise DatasetNotFoundError(
        f"{name}: expected the split file {split_path}, which does not exist (nor does "
        f"{' / '.join(missing)}, from which it could be generated)" + _hint(name, root)
    )


def make_datum(impath, label, classname, source=None, name=None):
    """``Datum(impath, label, classname=...)``; a missing image raises :class:`DatasetNotFoundError` naming it."""
    try:
        return Datum(impath=impath, label=label, classname=classname)
    except (FileNotFoundError, AssertionError) as e:
        if osp.isfile(impath):  # not a missing file: something else went wrong
            raise
        src = f" (listed in {source})" if source else ""
        ref = f" See {docs_ref(name)}." if name else ""
        raise DatasetNotFoundError(f"{name + ': ' if name else ''}the image {impath}{src} does not exist.{ref}") from e


def loadmat(path, name):
    """``scipy.io.loadmat`` imported lazily: only the .mat fallbacks of StanfordCars / OxfordFlowers need scipy."""
    try:
        import scipy.io
    except ImportError as e:  # pragma: no cover - scipy is installed in the test environment
        raise ImportError(
            f"{name}: reading {path} needs scipy (pip install scipy); alternatively put the split json described in "
            f"{docs_ref(name)} into the dataset folder"
        ) from e
    return scipy.io.loadmat(path)


# ----------------------------------------------------------------------------------------------------------------
# split_zhou_<Name>.json
# ----------------------------------------------------------------------------------------------------------------
def read_split(filepath, path_prefix, name=None):
    """Read a ``split_zhou_*.json``: ``{"train"|"val"|"test": [[relpath, label, classname], ...]}``.

    Each entry becomes ``Datum(join(path_prefix, relpath), int(label), classname=classname)``.
    """
    print(f"Reading split from {filepath}")
    split = read_json(filepath)

    def _convert(items):
        return [make_datum(osp.join(path_prefix, impath), int(label), classname, filepath, name)
                for impath, label, classname in items]

    return _convert(split["train"]), _convert(split["val"]), _convert(split["test"])


def save_split(train, val, test, filepath, path_prefix):
    """Write a ``split_zhou_*.json`` whose paths are relative to ``path_prefix`` (Dassl's json format, atomic)."""

    def _extract(items):
        out = []
        for item in items:
            impath = item.impath.replace(path_prefix, "")
            if impath.startswith("/"):
                impath = impath[1:]
            out.append((impath, item.label, item.classname))
        return out

    split = {"train": _extract(train), "val": _extract(val), "test": _extract(test)}
    write_json(split, filepath)
    print(f"Saved split to {filepath}")


def _save_split_if_possible(train, val, test, filepath, path_prefix):
    try:
        save_split(train, val, test, filepath, path_prefix)
    except OSError as e:
        print(f"Warning: could not save the generated split to {filepath} ({e}); it will be generated again next time")


_RANDOM_NOTE = ("Note: generating the split used the global random module, so the few-shot sample of this run differs "
                "from later runs, which read the saved json (CoOp behaviour)")


def split_trainval(trainval, p_val=0.2):
    """Split ``trainval`` per class: shuffle each class's indices (``random.shuffle``), the first ``round(n*p_val)``
    go to val, the rest to train. Classes are visited in first-appearance order."""

    p_trn = 1 - p_val
    print(f"Splitting trainval into {p_trn:.0%} train and {p_val:.0%} val")
    tracker = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)

    for label, idxs in tracker.items():
        if round(len(idxs) * p_val) <= 0:
            raise ValueError(f"Class {label} has only {len(idxs)} trainval images: too few for a {p_val:.0%} val split")

    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=None, new_cnames=None, name=None):
    """Random split of a folder-per-class dataset (DTD style).

    Categories are the non-hidden sub-folders of ``image_dir`` minus ``ignored``, sorted; label = index. Each category's
    images (``listdir`` order, as CoOp) are shuffled with ``random.shuffle`` in category order, then cut into
    ``round(n*p_trn)`` train, ``round(n*p_val)`` val and the rest test. ``new_cnames`` renames categories.
    """

    ignored = ignored or []
    categories = [c for c in listdir_nohidden(image_dir) if c not in ignored]
    categories.sort()
    if not categories:
        who = name or "dataset"
        raise DatasetNotFoundError(f"{who}: expected one sub-folder per class in {image_dir}, found none"
                                   + (_hint(name) if name else ""))
    p_tst = 1 - p_trn - p_val
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {p_tst:.0%} test")

    # list (and validate) everything before the first random call
    listing = []
    for category in categories:
        category_dir = osp.join(image_dir, category)
        images = [osp.join(category_dir, im) for im in listdir_nohidden(category_dir)]
        n_total = len(images)
        n_train, n_val = round(n_total * p_trn), round(n_total * p_val)
        if not (n_train > 0 and n_val > 0 and n_total - n_train - n_val > 0):
            who = f"{name}: " if name else ""
            raise ValueError(f"{who}the class folder {category_dir} has {n_total} images: too few for a "
                             f"{p_trn:.0%}/{p_val:.0%}/{p_tst:.0%} split")
        listing.append((category, images))

    train, val, test = [], [], []
    for label, (category, images) in enumerate(listing):
        random.shuffle(images)
        n_total = len(images)
        n_train, n_val = round(n_total * p_trn), round(n_total * p_val)
        if new_cnames is not None and category in new_cnames:
            category = new_cnames[category]
        train.extend(Datum(impath=im, label=label, classname=category) for im in images[:n_train])
        val.extend(Datum(impath=im, label=label, classname=category) for im in images[n_train:n_train + n_val])
        test.extend(Datum(impath=im, label=label, classname=category) for im in images[n_train + n_val:])
    return train, val, test


# ----------------------------------------------------------------------------------------------------------------
# base-to-new
# ----------------------------------------------------------------------------------------------------------------
SUBSAMPLE_CHOICES = ("all", "base", "new", "pseudo_base", "pseudo_new")


def subsample_classes(*args, subsample="all"):
    """CoOp's base-to-new protocol.

    ``all`` returns the inputs unchanged. Otherwise the sorted label set of the **first** dataset is cut at
    ``m = ceil(n/2)``: ``base`` keeps the first ``m`` labels, ``new`` the rest; every dataset is filtered to the kept
    labels, which are relabelled to their index in the kept list (new ``Datum`` objects, domain 0).

    ``pseudo_base`` / ``pseudo_new`` (vlpeft's, for selection) apply the same cut to the base labels: the first
    ``ceil(m/2)`` base labels, and the other base labels. Training on ``pseudo_base`` and scoring ``pseudo_new`` is a
    base-to-new split that needs no new class, so base-to-new hyperparameters can be selected before the new classes
    are seen (``python -m vlpeft.sweep --objective h``).
    """
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f'DATASET.SUBSAMPLE_CLASSES is "{subsample}"; '
                         f'it must be one of {", ".join(SUBSAMPLE_CHOICES)}')
    if subsample == "all":
        return args

    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    labels = sorted({item.label for item in args[0]})
    if subsample.startswith("pseudo_"):
        labels = labels[:math.ceil(len(labels) / 2)]
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample.endswith("base") else labels[m:]
    relabeler = {y: y_new for y_new, y in enumerate(selected)}

    output = []
    for dataset in args:
        output.append([Datum(impath=item.impath, label=relabeler[item.label], classname=item.classname)
                       for item in dataset if item.label in relabeler])
    return output


# ----------------------------------------------------------------------------------------------------------------
# pickles (few-shot cache, ImageNet's preprocessed.pkl)
# ----------------------------------------------------------------------------------------------------------------
class _DatumUnpickler(pickle.Unpickler):
    """Loads ``Datum`` objects referenced as Dassl's or vlpeft's as the active engine's ``Datum``."""

    def find_class(self, module, name):
        if (module, name) in _DATUM_PATHS:
            return Datum
        return super().find_class(module, name)


def load_pickle(path):
    """Unpickle ``path``; works for pickles written by the real Dassl/CoOp even when ``dassl`` is not installed."""
    with open(path, "rb") as f:
        return _DatumUnpickler(f).load()


def save_pickle(obj, path):
    """Pickle ``obj`` (HIGHEST_PROTOCOL) to ``path`` atomically (temporary file in the same folder + ``os.replace``)."""
    atomic_write_bytes(path, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))


def _stale(source, impath, dataset_dir, moved=True):
    if moved:
        why = (f"which is outside the current dataset folder {dataset_dir} (was the dataset root moved?), and no file "
               f"with its relative path exists there")
    else:
        why = "which does not exist (were images removed or renamed?)"
    return StaleCacheError(f"{source} lists the image {impath}, {why}. Delete {source} so that it is rebuilt.")


def relocate_items(items, dataset_dir, source, check="all"):
    """Make the absolute image paths of cached ``items`` point into ``dataset_dir``.

    Pickles hold absolute paths. A path outside ``dataset_dir`` (the root was moved or renamed) is remapped to
    ``dataset_dir/<relative part>`` when that file exists, the relative part being what follows the last
    ``/<basename(dataset_dir)>/`` of the old path; otherwise :class:`StaleCacheError` asks to delete ``source``.
    ``check="all"`` stats every path kept as is; ``"sample"`` stats at most 64 of them (ImageNet's 1.3M-image cache).

    Returns ``(items, n_remapped)``; unchanged items are the same objects.
    """
    dataset_dir = osp.abspath(dataset_dir)
    prefix = dataset_dir.rstrip(os.sep) + os.sep
    marker = os.sep + osp.basename(dataset_dir.rstrip(os.sep)) + os.sep
    old_prefixes = []  # old dataset-dir prefixes found so far (with the trailing separator)

    def _remap(impath):
        for old in old_prefixes:
            if impath.startswith(old):
                cand = osp.join(dataset_dir, impath[len(old):])
                if osp.isfile(cand):
                    return cand
        pos = impath.rfind(marker)
        while pos >= 0:
            cand = osp.join(dataset_dir, impath[pos + len(marker):])
            if osp.isfile(cand):
                old_prefixes.insert(0, impath[:pos + len(marker)])
                return cand
            pos = impath.rfind(marker, 0, pos)
        raise _stale(source, impath, dataset_dir)

    kept = [i for i, item in enumerate(items) if item.impath.startswith(prefix)]
    if check == "all":
        to_check = kept
    else:
        step = max(1, len(kept) // 64)
        to_check = kept[::step][:64] + kept[-1:]
    for i in to_check:
        if not osp.isfile(items[i].impath):
            raise _stale(source, items[i].impath, dataset_dir, moved=False)

    out, n_remapped = [], 0
    for item in items:
        if item.impath.startswith(prefix):
            out.append(item)
            continue
        new_path = _remap(item.impath)
        out.append(Datum(impath=new_path, label=item.label, domain=item.domain, classname=item.classname))
        n_remapped += 1
    if n_remapped:
        print(f"Remapped {n_remapped} image paths of {source} to {dataset_dir} (the dataset root was moved)")
    return out, n_remapped


# ----------------------------------------------------------------------------------------------------------------
# few-shot cache
# ----------------------------------------------------------------------------------------------------------------
def vlpeft_cache_dir():
    """vlpeft's cache folder: ``$VLPEFT_CACHE_DIR``, else ``$XDG_CACHE_HOME/vlpeft``, else ``~/.cache/vlpeft``."""
    env = os.environ.get("VLPEFT_CACHE_DIR")
    if env:
        return osp.abspath(osp.expanduser(env))
    xdg = os.environ.get("XDG_CACHE_HOME") or osp.join(osp.expanduser("~"), ".cache")
    return osp.join(osp.abspath(xdg), "vlpeft")


def default_cache_root():
    """Where few-shot pickles go when the dataset folder is read-only and ``DATASET.FEWSHOT_CACHE_DIR`` is unset:
    ``<vlpeft_cache_dir()>/fewshot``."""
    return osp.join(vlpeft_cache_dir(), "fewshot")


def is_writable(path):
    """Whether files can be created in ``path`` (or, if it does not exist yet, in its nearest existing parent)."""
    path = osp.abspath(path)
    while not osp.exists(path):
        parent = osp.dirname(path)
        if parent == path:
            return False
        path = parent
    return osp.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def fewshot_dir(dataset_dir, cache_dir="", create=True, verbose=True):
    """The ``split_fewshot`` folder of a dataset.

    CoOp's ``<dataset_dir>/split_fewshot`` (created, as CoOp does on every construction) unless ``cache_dir``
    (``DATASET.FEWSHOT_CACHE_DIR``) is set or the dataset folder is not writable; then
    ``<cache_dir or default_cache_root()>/<basename(dataset_dir)>/split_fewshot``.
    """
    dataset_dir = osp.abspath(dataset_dir)
    default = osp.join(dataset_dir, "split_fewshot")
    if cache_dir:
        base, why = osp.abspath(osp.expanduser(cache_dir)), "DATASET.FEWSHOT_CACHE_DIR is set"
    elif is_writable(default):
        if create:
            mkdir_if_missing(default)
        return default
    else:
        base, why = default_cache_root(), f"{dataset_dir} is not writable"
    path = osp.join(base, osp.basename(dataset_dir), "split_fewshot")
    if verbose:
        print(f"Few-shot splits are cached in {path} ({why})")
    return path


def fewshot_split(dataset, train, val, num_shots, seed, dataset_dir, cache_dir=""):
    """CoOp's few-shot step with its pickle cache; returns ``(train, val)``.

    With ``num_shots >= 1`` the file ``split_fewshot/shot_{K}-seed_{SEED}.pkl`` is loaded if present (this does not
    touch :mod:`random`); otherwise ``dataset.generate_fewshot_dataset(train, num_shots=K)`` and then, unless ``val``
    is None (ImageNet, whose pickle holds only ``"train"``), ``generate_fewshot_dataset(val, num_shots=min(K, 4))``
    are drawn and written atomically. Paths of a loaded pickle are checked/remapped by :func:`relocate_items`.

    The folder is :func:`fewshot_dir` (stored as ``dataset.split_fewshot_dir``); when the dataset folder is read-only
    and no cache dir is given, a pickle already present beside the data (e.g. made by CoOp) is still read.
    """
    folder = fewshot_dir(dataset_dir, cache_dir, verbose=num_shots >= 1)
    try:
        dataset.split_fewshot_dir = folder  # CoOp's attribute name
    except AttributeError:  # pragma: no cover
        pass
    if num_shots < 1:
        return train, val

    fname = f"shot_{num_shots}-seed_{seed}.pkl"
    path = osp.join(folder, fname)
    beside_data = osp.join(osp.abspath(dataset_dir), "split_fewshot", fname)
    if not cache_dir and not osp.isfile(path) and osp.isfile(beside_data):
        path = beside_data

    if osp.isfile(path):
        print(f"Loading preprocessed few-shot data from {path}")
        data = load_pickle(path)
        keys = ["train"] + ([] if val is None else ["val"])
        missing = [k for k in keys if k not in data]
        if missing:
            raise StaleCacheError(f"{path} has no {missing} entry; delete it so that it is rebuilt")
        train = relocate_items(data["train"], dataset_dir, path)[0]
        if val is not None:
            val = relocate_items(data["val"], dataset_dir, path)[0]
        return train, val

    train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    data = {"train": train}
    if val is not None:
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        data["val"] = val
    print(f"Saving preprocessed few-shot data to {path}")
    save_pickle(data, path)
    return train, val


# ----------------------------------------------------------------------------------------------------------------
# common loader skeleton
# ----------------------------------------------------------------------------------------------------------------
class CoOpDataset(DatasetBase):
    """Base of the 11 CoOp datasets with a train/val/test split: cfg parsing, few-shot step, base-to-new step.

    Subclasses set ``dataset_dir`` (the folder name under ``DATASET.ROOT``), call :meth:`setup` first and
    :meth:`finish` with the full split last.
    """

    dataset_dir = ""

    def setup(self, cfg):
        self.root = dataset_root(cfg)
        self.dataset_dir = osp.join(self.root, type(self).dataset_dir)
        self.num_shots = cfg_value(cfg, "DATASET.NUM_SHOTS", -1)
        self.seed = cfg_value(cfg, "SEED", -1)
        self.subsample = cfg_value(cfg, "DATASET.SUBSAMPLE_CLASSES", "all") or "all"
        self.fewshot_cache_dir = cfg_value(cfg, "DATASET.FEWSHOT_CACHE_DIR", "") or ""
        self.require_dir(self.dataset_dir, "dataset folder")

    def require_dir(self, path, what="folder"):
        return require_dir(path, type(self).__name__, what, self.root)

    def require_file(self, path, what="file"):
        return require_file(path, type(self).__name__, what, self.root)

    def require_split(self, split_path, raw_files=()):
        return require_split(split_path, raw_files, type(self).__name__, self.root)

    def read_split_json(self, filepath, path_prefix):
        return read_split(filepath, path_prefix, name=type(self).__name__)

    def finish(self, train, val, test):
        """Few-shot step, then the class subset; ``train_full`` keeps the whole train split of the selected classes
        (what DPC's negative-image pool ``split_train`` draws from)."""
        full = train
        train, val = fewshot_split(self, train, val, self.num_shots, self.seed, self.dataset_dir,
                                   self.fewshot_cache_dir)
        train, val, test, full = subsample_classes(train, val, test, full, subsample=self.subsample)
        DatasetBase.__init__(self, train_x=train, val=val, test=test)
        self.train_full = full
