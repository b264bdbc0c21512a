"""ImageNet-A (CoOp's ``ImageNetA``): ``imagenet-adversarial/imagenet-a/<wnid>/`` (200 classes)."""
from vlpeft.engine import register_dataset

from .imagenet_variants import ImageNetVariant


@register_dataset
class ImageNetA(ImageNetVariant):
    """The 200 present wnid folders, sorted, are labels 0..199 (the archive's README.txt is skipped)."""

    dataset_dir = "imagenet-adversarial"
    image_subdir = "imagenet-a"
    ignored = ("README.txt",)
