"""Stanford Cars (CoOp's ``StanfordCars``): ``stanford_cars/{cars_train,cars_test}/*.jpg``."""
import os.path as osp

from vlpeft.engine import register_dataset

from . import base
from .base import CoOpDataset, make_datum


def year_first(classname):
    """"AM General Hummer SUV 2000" -> "2000 AM General Hummer SUV" (the last word moved to the front)."""
    names = classname.split(" ")
    year = names.pop(-1)
    names.insert(0, year)
    return " ".join(names)


@register_dataset
class StanfordCars(CoOpDataset):
    """Split from ``split_zhou_StanfordCars.json``, whose paths are relative to the dataset folder itself; without it,
    the devkit's .mat files (``devkit/cars_train_annos.mat``, ``devkit/cars_meta.mat`` and
    ``cars_test_annos_withlabels.mat``), trainval split 80/20 per class, and the json written."""

    dataset_dir = "stanford_cars"

    def __init__(self, cfg):
        self.setup(cfg)
        self.split_path = osp.join(self.dataset_dir, "split_zhou_StanfordCars.json")
        self.require_dir(osp.join(self.dataset_dir, "cars_train"), "image folder")
        self.require_dir(osp.join(self.dataset_dir, "cars_test"), "image folder")

        trainval_file = osp.join(self.dataset_dir, "devkit", "cars_train_annos.mat")
        test_file = osp.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
        meta_file = osp.join(self.dataset_dir, "devkit", "cars_meta.mat")
        if self.require_split(self.split_path, [trainval_file, meta_file, test_file]):
            train, val, test = self.read_split_json(self.split_path, self.dataset_dir)
        else:
            trainval = self.read_data("cars_train", trainval_file, meta_file)
            test = self.read_data("cars_test", test_file, meta_file)
            train, val = base.split_trainval(trainval)
            print(base._RANDOM_NOTE)
            base._save_split_if_possible(train, val, test, self.split_path, self.dataset_dir)

        self.finish(train, val, test)

    def read_data(self, image_dir, anno_file, meta_file):
        annos = base.loadmat(anno_file, "StanfordCars")["annotations"][0]
        class_names = base.loadmat(meta_file, "StanfordCars")["class_names"][0]
        items = []
        for i in range(len(annos)):
            imname = str(annos[i]["fname"][0])
            impath = osp.join(self.dataset_dir, image_dir, imname)
            label = int(annos[i]["class"][0, 0]) - 1
            classname = year_first(str(class_names[label][0]))
            items.append(make_datum(impath, label, classname, anno_file, "StanfordCars"))
        return items
