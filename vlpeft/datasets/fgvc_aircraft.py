"""FGVC-Aircraft 2013b (CoOp's ``FGVCAircraft``): ``fgvc_aircraft/`` is the archive's ``fgvc-aircraft-2013b/data``."""
import os.path as osp

from vlpeft.engine import register_dataset

from .base import CoOpDataset, make_datum


@register_dataset
class FGVCAircraft(CoOpDataset):
    """No split json: classes are the lines of ``variants.txt`` (label = line index) and the official
    ``images_variant_{train,val,test}.txt`` files ("<id> <variant name>") give the split."""

    dataset_dir = "fgvc_aircraft"

    def __init__(self, cfg):
        self.setup(cfg)
        self.image_dir = osp.join(self.dataset_dir, "images")
        self.require_dir(self.image_dir, "image folder")
        variants = osp.join(self.dataset_dir, "variants.txt")
        self.require_file(variants, "class list")
        for split in ("train", "val", "test"):
            self.require_file(osp.join(self.dataset_dir, f"images_variant_{split}.txt"), "split file")

        classnames = []
        with open(variants, "r") as f:
            for line in f:
                classnames.append(line.strip())
        cname2lab = {c: i for i, c in enumerate(classnames)}

        train = self.read_data(cname2lab, "images_variant_train.txt")
        val = self.read_data(cname2lab, "images_variant_val.txt")
        test = self.read_data(cname2lab, "images_variant_test.txt")
        self.finish(train, val, test)

    def read_data(self, cname2lab, split_file):
        filepath = osp.join(self.dataset_dir, split_file)
        items = []
        with open(filepath, "r") as f:
            for line in f:
                parts = line.strip().split(" ")
                if parts == [""]:
                    continue
                imname = parts[0] + ".jpg"
                classname = " ".join(parts[1:])
                if classname not in cname2lab:
                    raise ValueError(f'FGVCAircraft: {filepath} names the variant "{classname}", '
                                     f"which is not in variants.txt")
                impath = osp.join(self.image_dir, imname)
                items.append(make_datum(impath, cname2lab[classname], classname, filepath, "FGVCAircraft"))
        return items
