"""Oxford-IIIT Pets (CoOp's ``OxfordPets``): 37 breeds, ``oxford_pets/images/<Breed>_<n>.jpg``."""
import os.path as osp

from vlpeft.engine import register_dataset

from . import base
from .base import CoOpDataset, make_datum


@register_dataset
class OxfordPets(CoOpDataset):
    """Split from ``split_zhou_OxfordPets.json``; without it, ``annotations/{trainval,test}.txt`` with trainval split
    80/20 per class (:func:`vlpeft.datasets.base.split_trainval`) and the json written."""

    dataset_dir = "oxford_pets"

    def __init__(self, cfg):
        self.setup(cfg)
        self.image_dir = osp.join(self.dataset_dir, "images")
        self.anno_dir = osp.join(self.dataset_dir, "annotations")
        self.split_path = osp.join(self.dataset_dir, "split_zhou_OxfordPets.json")
        self.require_dir(self.image_dir, "image folder")

        raw = [osp.join(self.anno_dir, "trainval.txt"), osp.join(self.anno_dir, "test.txt")]
        if self.require_split(self.split_path, raw):
            train, val, test = self.read_split_json(self.split_path, self.image_dir)
        else:
            trainval = self.read_data("trainval.txt")
            test = self.read_data("test.txt")
            train, val = self.split_trainval(trainval)
            print(base._RANDOM_NOTE)
            base._save_split_if_possible(train, val, test, self.split_path, self.image_dir)

        self.finish(train, val, test)

    def read_data(self, split_file):
        """Lines "<Breed>_<n> <classid> <species> <breedid>"; class name = lower-cased breed, label = classid - 1."""
        filepath = osp.join(self.anno_dir, split_file)
        items = []
        with open(filepath, "r") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                imname, label, _species, _ = line.split(" ")
                breed = "_".join(imname.split("_")[:-1]).lower()
                impath = osp.join(self.image_dir, imname + ".jpg")
                items.append(make_datum(impath, int(label) - 1, breed, filepath, "OxfordPets"))
        return items

    # CoOp's other loaders call these as ``OxfordPets.<name>``; kept for code written against CoOp.
    split_trainval = staticmethod(base.split_trainval)
    save_split = staticmethod(base.save_split)
    read_split = staticmethod(base.read_split)
    subsample_classes = staticmethod(base.subsample_classes)
