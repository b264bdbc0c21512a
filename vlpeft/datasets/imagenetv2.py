"""ImageNetV2 matched-frequency (CoOp's ``ImageNetV2``):
``imagenetv2/imagenetv2-matched-frequency-format-val/<0..999>/``."""
import os.path as osp

from vlpeft.engine import listdir_nohidden, register_dataset

from . import base
from .imagenet_variants import ImageNetVariant


@register_dataset
class ImageNetV2(ImageNetVariant):
    """Folder ``i`` holds class ``i`` of the sorted-wnid list; all 1000 folders must exist (CoOp iterates
    ``range(1000)``)."""

    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"

    def read_data(self, classnames):
        folders = list(classnames.keys())
        if len(folders) != 1000:
            raise ValueError(f"ImageNetV2: expected 1000 class names, got {len(folders)}")
        for label in range(1000):
            base.require_dir(osp.join(self.image_dir, str(label)), "ImageNetV2", "class folder", self.root)
        items = []
        for label in range(1000):
            class_dir = osp.join(self.image_dir, str(label))
            classname = classnames[folders[label]]
            for imname in listdir_nohidden(class_dir):
                items.append(base.make_datum(osp.join(class_dir, imname), label, classname, None, "ImageNetV2"))
        return items
