"""Caltech-101 (CoOp's ``Caltech101``): ``caltech-101/101_ObjectCategories/<category>/*.jpg``."""
from vlpeft.engine import register_dataset

from .dtd import FolderSplitDataset

IGNORED = ["BACKGROUND_Google", "Faces_easy"]
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@register_dataset
class Caltech101(FolderSplitDataset):
    """100 classes: the background class and ``Faces_easy`` are left out; four plural folder names are renamed."""

    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_name = "Caltech101"
    ignored_categories = tuple(IGNORED)
    new_cnames = NEW_CNAMES
