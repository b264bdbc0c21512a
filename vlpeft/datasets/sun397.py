"""SUN397 (CoOp's ``SUN397``): ``sun397/SUN397/<letter>/<scene>[/<sub>]/*.jpg``."""
import os.path as osp

from vlpeft.engine import register_dataset

from . import base
from .base import CoOpDataset, make_datum


def scene_name(class_path):
    """"a/apartment_building/outdoor" -> "outdoor apartment_building": drop the letter, reverse the parts."""
    return " ".join(class_path.split("/")[1:][::-1])


@register_dataset
class SUN397(CoOpDataset):
    """Split from ``split_zhou_SUN397.json``; without it, ``ClassName.txt`` (label = line index) plus the official
    ``Training_01.txt`` / ``Testing_01.txt`` partition, training split 80/20 per class, and the json written."""

    dataset_dir = "sun397"

    def __init__(self, cfg):
        self.setup(cfg)
        self.image_dir = osp.join(self.dataset_dir, "SUN397")
        self.split_path = osp.join(self.dataset_dir, "split_zhou_SUN397.json")
        self.require_dir(self.image_dir, "image folder")

        raw = [osp.join(self.dataset_dir, f) for f in ("ClassName.txt", "Training_01.txt", "Testing_01.txt")]
        if self.require_split(self.split_path, raw):
            train, val, test = self.read_split_json(self.split_path, self.image_dir)
        else:
            classnames = []
            with open(raw[0], "r") as f:
                for line in f:
                    line = line.strip()
                    if line:
                        classnames.append(line[1:])  # drop the leading "/"
            cname2lab = {c: i for i, c in enumerate(classnames)}
            trainval = self.read_data(cname2lab, "Training_01.txt")
            test = self.read_data(cname2lab, "Testing_01.txt")
            train, val = base.split_trainval(trainval)
            print(base._RANDOM_NOTE)
            base._save_split_if_possible(train, val, test, self.split_path, self.image_dir)

        self.finish(train, val, test)

    def read_data(self, cname2lab, text_file):
        text_file = osp.join(self.dataset_dir, text_file)
        items = []
        with open(text_file, "r") as f:
            for line in f:
                imname = line.strip()[1:]  # drop the leading "/"
                if not imname:
                    continue
                class_path = osp.dirname(imname)
                label = cname2lab[class_path]
                impath = osp.join(self.image_dir, imname)
                items.append(make_datum(impath, label, scene_name(class_path), text_file, "SUN397"))
        return items
