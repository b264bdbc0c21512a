"""Shared code of the four test-only ImageNet variants (``train_x = test = all images``; no few-shot, no
subsampling, as in CoOp)."""
import os.path as osp

from vlpeft.engine import DatasetBase, listdir_nohidden

from . import base
from .imagenet import classname_of, load_classnames


class ImageNetVariant(DatasetBase):
    dataset_dir = ""
    image_subdir = ""
    ignored = ()

    def __init__(self, cfg):
        self.root = base.dataset_root(cfg)
        self.dataset_dir = osp.join(self.root, type(self).dataset_dir)
        self.image_dir = osp.join(self.dataset_dir, self.image_subdir)
        name = type(self).__name__
        base.require_dir(self.dataset_dir, name, "dataset folder", self.root)
        base.require_dir(self.image_dir, name, "image folder", self.root)
        classnames = load_classnames(self.dataset_dir)
        data = self.read_data(classnames)
        DatasetBase.__init__(self, train_x=data, test=data)
        self.train_full = data

    def class_folders(self):
        """Sorted non-hidden sub-folders of the image folder, minus ``ignored``; label = index."""
        return [f for f in listdir_nohidden(self.image_dir, sort=True)
                if f not in self.ignored and osp.isdir(osp.join(self.image_dir, f))]

    def read_data(self, classnames):
        name = type(self).__name__
        items = []
        for label, folder in enumerate(self.class_folders()):
            classname = classname_of(classnames, folder, name, self.image_dir)
            class_dir = osp.join(self.image_dir, folder)
            for imname in listdir_nohidden(class_dir):
                items.append(base.make_datum(osp.join(class_dir, imname), label, classname, None, name))
        return items
