"""EuroSAT RGB (CoOp's ``EuroSAT``): ``eurosat/2750/<Class>/*.jpg`` with descriptive class names."""
from vlpeft.engine import register_dataset

from .dtd import FolderSplitDataset

# folder name -> class name used in the prompts (as in CoOp's split_zhou_EuroSAT.json)
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@register_dataset
class EuroSAT(FolderSplitDataset):
    dataset_dir = "eurosat"
    image_subdir = "2750"
    split_name = "EuroSAT"
    new_cnames = NEW_CNAMES
