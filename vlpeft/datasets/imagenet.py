"""ImageNet-1k (CoOp's ``ImageNet``): ``imagenet/images/{train,val}/<wnid>/*``, plus the class-name helpers shared
with the four ImageNet variants."""
import os
import os.path as osp
from collections import OrderedDict

from vlpeft.engine import listdir_nohidden, register_dataset

from . import base
from .base import CoOpDataset, make_datum

#: the class-name file shipped with vlpeft ("<wnid> <name>", 1000 lines in sorted-wnid order, CLIP's names)
PACKAGED_CLASSNAMES = osp.join(osp.dirname(osp.abspath(__file__)), "imagenet_classnames.txt")


def read_classnames(text_file):
    """``OrderedDict`` wnid -> class name from lines "<wnid> <class name with spaces>" (CoOp's classnames.txt)."""
    classnames = OrderedDict()
    with open(text_file, "r") as f:
        for line in f:
            parts = line.strip().split(" ")
            if parts == [""]:
                continue
            classnames[parts[0]] = " ".join(parts[1:])
    return classnames


def load_classnames(dataset_dir):
    """``<dataset_dir>/classnames.txt`` when present (CoOp's layout), else vlpeft's packaged copy of the same list."""
    text_file = osp.join(dataset_dir, "classnames.txt")
    if osp.isfile(text_file):
        return read_classnames(text_file)
    print(f"{text_file} not found: using the ImageNet class names shipped with vlpeft ({PACKAGED_CLASSNAMES})")
    return read_classnames(PACKAGED_CLASSNAMES)


def classname_of(classnames, folder, name, where):
    try:
        return classnames[folder]
    except KeyError:
        raise ValueError(f'{name}: the folder "{folder}" in {where} is not a WordNet id listed in classnames.txt; '
                         f"see {base.docs_ref(name)}") from None


@register_dataset
class ImageNet(CoOpDataset):
    """Labels are the indices of the sorted wnid folders of ``images/train``; ``images/val`` (in the same folder
    layout) is the test set **and** the val set. The listing is cached in ``preprocessed.pkl`` (CoOp's name); its
    few-shot pickle holds only ``"train"``; base-to-new subsampling is applied to (train, test)."""

    dataset_dir = "imagenet"

    def __init__(self, cfg):
        self.setup(cfg)
        self.image_dir = osp.join(self.dataset_dir, "images")
        self.preprocessed, candidates = self._preprocessed_paths()
        found = next((p for p in candidates if osp.isfile(p)), None)

        if found is not None:
            print(f"Loading preprocessed ImageNet listing from {found}")
            data = base.load_pickle(found)
            train, n1 = base.relocate_items(data["train"], self.dataset_dir, found, check="sample")
            test, n2 = base.relocate_items(data["test"], self.dataset_dir, found, check="sample")
            if n1 or n2:
                self._save_preprocessed(train, test)
        else:
            self.require_dir(osp.join(self.image_dir, "train"), "image folder")
            self.require_dir(osp.join(self.image_dir, "val"), "image folder")
            classnames = load_classnames(self.dataset_dir)
            train = self.read_data(classnames, "train")
            # standard practice: evaluate on the val set, which also serves as the val set
            test = self.read_data(classnames, "val")
            self._save_preprocessed(train, test)

        full = train
        train, _ = base.fewshot_split(self, train, None, self.num_shots, self.seed, self.dataset_dir,
                                      self.fewshot_cache_dir)
        train, test, full = base.subsample_classes(train, test, full, subsample=self.subsample)
        base.DatasetBase.__init__(self, train_x=train, val=test, test=test)
        self.train_full = full  # the whole train split of the selected classes (DPC's negative pool)

    def _preprocessed_paths(self):
        beside = osp.join(self.dataset_dir, "preprocessed.pkl")
        if base.is_writable(self.dataset_dir):
            return beside, [beside]
        cache = self.fewshot_cache_dir or base.default_cache_root()
        alt = osp.join(osp.abspath(osp.expanduser(cache)), osp.basename(self.dataset_dir), "preprocessed.pkl")
        return alt, [beside, alt]

    def _save_preprocessed(self, train, test):
        try:
            base.save_pickle({"train": train, "test": test}, self.preprocessed)
            print(f"Saved the ImageNet listing to {self.preprocessed}")
        except OSError as e:
            print(f"Warning: could not save {self.preprocessed} ({e})")

    def read_data(self, classnames, split_dir):
        split_dir = osp.join(self.image_dir, split_dir)
        folders = sorted(f.name for f in os.scandir(split_dir) if f.is_dir())
        items = []
        for label, folder in enumerate(folders):
            classname = classname_of(classnames, folder, "ImageNet", split_dir)
            for imname in listdir_nohidden(osp.join(split_dir, folder)):
                items.append(make_datum(osp.join(split_dir, folder, imname), label, classname, None, "ImageNet"))
        return items

    read_classnames = staticmethod(read_classnames)
