"""ImageNet-Sketch (CoOp's ``ImageNetSketch``): ``imagenet-sketch/images/<wnid>/``."""
from vlpeft.engine import register_dataset

from .imagenet_variants import ImageNetVariant


@register_dataset
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
