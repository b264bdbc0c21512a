"""Oxford 102 Flowers (CoOp's ``OxfordFlowers``): ``oxford_flowers/jpg/image_%05d.jpg``."""
import os.path as osp
import random
from collections import defaultdict

from vlpeft.engine import Datum, read_json, register_dataset

from . import base
from .base import CoOpDataset


@register_dataset
class OxfordFlowers(CoOpDataset):
    """Split from ``split_zhou_OxfordFlowers.json``; without it, ``imagelabels.mat`` + ``cat_to_name.json`` split
    50/20/30 per class (classes in first-appearance order of the .mat labels) and the json written."""

    dataset_dir = "oxford_flowers"

    def __init__(self, cfg):
        self.setup(cfg)
        self.image_dir = osp.join(self.dataset_dir, "jpg")
        self.label_file = osp.join(self.dataset_dir, "imagelabels.mat")
        self.lab2cname_file = osp.join(self.dataset_dir, "cat_to_name.json")
        self.split_path = osp.join(self.dataset_dir, "split_zhou_OxfordFlowers.json")
        self.require_dir(self.image_dir, "image folder")

        if self.require_split(self.split_path, [self.label_file, self.lab2cname_file]):
            train, val, test = self.read_split_json(self.split_path, self.image_dir)
        else:
            train, val, test = self.read_data()
            print(base._RANDOM_NOTE)
            base._save_split_if_possible(train, val, test, self.split_path, self.image_dir)

        self.finish(train, val, test)

    def read_data(self):
        labels = base.loadmat(self.label_file, "OxfordFlowers")["labels"][0]
        lab2cname = read_json(self.lab2cname_file)
        tracker = defaultdict(list)
        for i, label in enumerate(labels):
            impath = osp.join(self.image_dir, f"image_{str(i + 1).zfill(5)}.jpg")
            base.require_file(impath, "OxfordFlowers", f"image (listed in {self.label_file})", self.root)
            tracker[int(label)].append(impath)

        for label, impaths in tracker.items():
            n_total = len(impaths)
            if not (round(n_total * 0.5) > 0 and round(n_total * 0.2) > 0 and n_total - round(n_total * 0.5)
                    - round(n_total * 0.2) > 0):
                raise ValueError(f"OxfordFlowers: class {label} has {n_total} images: too few for a 50/20/30 split")

        print("Splitting data into 50% train, 20% val, and 30% test")

        def _collate(ims, y, c):
            return [Datum(impath=im, label=y - 1, classname=c) for im in ims]

        train, val, test = [], [], []
        for label, impaths in tracker.items():
            random.shuffle(impaths)
            n_total = len(impaths)
            n_train = round(n_total * 0.5)
            n_val = round(n_total * 0.2)
            cname = lab2cname[str(label)]
            train.extend(_collate(impaths[:n_train], label, cname))
            val.extend(_collate(impaths[n_train:n_train + n_val], label, cname))
            test.extend(_collate(impaths[n_train + n_val:], label, cname))
        return train, val, test
