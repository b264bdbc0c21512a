"""UCF101 middle frames (CoOp's ``UCF101``): ``ucf101/UCF-101-midframes/<Split_Camel_Name>/v_*.jpg``."""
import os.path as osp
import re

from vlpeft.engine import register_dataset

from . import base
from .base import CoOpDataset, make_datum


def split_camel(action):
    """"ApplyEyeMakeup" -> "Apply_Eye_Makeup" (the folder and class name CoOp uses)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@register_dataset
class UCF101(CoOpDataset):
    """Split from ``split_zhou_UCF101.json``; without it, ``ucfTrainTestlist/{classInd,trainlist01,testlist01}.txt``
    (the middle frame ``<video>.jpg`` of each listed ``<video>.avi``), trainlist split 80/20 per class, json written."""

    dataset_dir = "ucf101"

    def __init__(self, cfg):
        self.setup(cfg)
        self.image_dir = osp.join(self.dataset_dir, "UCF-101-midframes")
        self.split_path = osp.join(self.dataset_dir, "split_zhou_UCF101.json")
        self.require_dir(self.image_dir, "image folder")

        lists = osp.join(self.dataset_dir, "ucfTrainTestlist")
        raw = [osp.join(lists, f) for f in ("classInd.txt", "trainlist01.txt", "testlist01.txt")]
        if self.require_split(self.split_path, raw):
            train, val, test = self.read_split_json(self.split_path, self.image_dir)
        else:
            cname2lab = {}
            with open(raw[0], "r") as f:
                for line in f:
                    if not line.strip():
                        continue
                    label, classname = line.strip().split(" ")
                    cname2lab[classname] = int(label) - 1
            trainval = self.read_data(cname2lab, raw[1])
            test = self.read_data(cname2lab, raw[2])
            train, val = base.split_trainval(trainval)
            print(base._RANDOM_NOTE)
            base._save_split_if_possible(train, val, test, self.split_path, self.image_dir)

        self.finish(train, val, test)

    def read_data(self, cname2lab, text_file):
        items = []
        with open(text_file, "r") as f:
            for line in f:
                line = line.strip().split(" ")[0]  # trainlist lines carry a trailing label
                if not line:
                    continue
                action, filename = line.split("/")
                label = cname2lab[action]
                renamed_action = split_camel(action)
                filename = filename.replace(".avi", ".jpg")
                impath = osp.join(self.image_dir, renamed_action, filename)
                items.append(make_datum(impath, label, renamed_action, text_file, "UCF101"))
        return items
