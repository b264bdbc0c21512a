"""Food-101 (CoOp's ``Food101``): ``food-101/images/<dish>/*.jpg``."""
from vlpeft.engine import register_dataset

from .dtd import FolderSplitDataset


@register_dataset
class Food101(FolderSplitDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_name = "Food101"
