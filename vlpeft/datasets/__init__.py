"""The 15 datasets of the CoOp family, with CoOp's registry names, folders, splits and few-shot cache.

Importing this package registers every loader in the active engine's DATASET_REGISTRY (Dassl's when Dassl is used).
See ``docs/DATASETS.md`` for the on-disk layout each loader expects.
"""
from .base import DatasetNotFoundError, StaleCacheError, fewshot_split, subsample_classes  # noqa: F401
from . import (  # noqa: F401  (registration at import)
    caltech101,
    dtd,
    eurosat,
    fgvc_aircraft,
    food101,
    imagenet,
    imagenet_a,
    imagenet_r,
    imagenet_sketch,
    imagenetv2,
    oxford_flowers,
    oxford_pets,
    stanford_cars,
    sun397,
    ucf101,
)
from .caltech101 import Caltech101  # noqa: F401
from .dtd import DescribableTextures  # noqa: F401
from .eurosat import EuroSAT  # noqa: F401
from .fgvc_aircraft import FGVCAircraft  # noqa: F401
from .food101 import Food101  # noqa: F401
from .imagenet import ImageNet  # noqa: F401
from .imagenet_a import ImageNetA  # noqa: F401
from .imagenet_r import ImageNetR  # noqa: F401
from .imagenet_sketch import ImageNetSketch  # noqa: F401
from .imagenetv2 import ImageNetV2  # noqa: F401
from .oxford_flowers import OxfordFlowers  # noqa: F401
from .oxford_pets import OxfordPets  # noqa: F401
from .stanford_cars import StanfordCars  # noqa: F401
from .sun397 import SUN397  # noqa: F401
from .ucf101 import UCF101  # noqa: F401

#: the registry names, in CoOp's order of its DATASETS.md
DATASET_NAMES = [
    "ImageNet", "Caltech101", "OxfordPets", "StanfordCars", "OxfordFlowers", "Food101", "FGVCAircraft", "SUN397",
    "DescribableTextures", "EuroSAT", "UCF101", "ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR",
]
