"""ImageNet-R (CoOp's ``ImageNetR``): ``imagenet-rendition/imagenet-r/<wnid>/`` (200 classes)."""
from vlpeft.engine import register_dataset

from .imagenet_variants import ImageNetVariant


@register_dataset
class ImageNetR(ImageNetVariant):
    """The 200 present wnid folders, sorted, are labels 0..199 (the archive's README.txt is skipped)."""

    dataset_dir = "imagenet-rendition"
    image_subdir = "imagenet-r"
    ignored = ("README.txt",)
