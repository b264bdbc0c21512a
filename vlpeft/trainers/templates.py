"""Hand-crafted prompt templates of the CoOp family: one per dataset (CoOp's zero-shot CLIP, KgCoOp's teacher), the
7-template ImageNet ensemble subset used by ``ZeroshotCLIP2`` and the 60-template set PromptSRC averages for its
frozen text teacher (a subset of CLIP's 80 ImageNet prompt-engineering templates; listed here alphabetically)."""

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
}

DEFAULT_TEMPLATE = "a photo of a {}."

IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


def dataset_template(dataset_name):
    """The dataset's hand-crafted template; datasets outside CoOp's list use ``"a photo of a {}."``."""
    return CUSTOM_TEMPLATES.get(dataset_name, DEFAULT_TEMPLATE)


# PromptSRC's textual-diversity teacher (PromptSRC §3.2.1): the mean of the frozen text features over these templates.
IMAGENET_TEMPLATES = sorted([
    "a bad photo of a {}.", "a bad photo of the {}.", "a black and white photo of the {}.",
    "a blurry photo of a {}.", "a blurry photo of the {}.", "a bright photo of a {}.", "a bright photo of the {}.",
    "a cartoon {}.", "a close-up photo of a {}.", "a close-up photo of the {}.", "a cropped photo of a {}.",
    "a cropped photo of the {}.", "a dark photo of the {}.", "a doodle of a {}.", "a doodle of the {}.",
    "a drawing of a {}.", "a embroidered {}.", "a good photo of the {}.", "a jpeg corrupted photo of a {}.",
    "a low resolution photo of a {}.", "a low resolution photo of the {}.", "a origami {}.", "a painting of a {}.",
    "a painting of the {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a photo of a hard to see {}.",
    "a photo of a large {}.", "a photo of a nice {}.", "a photo of a weird {}.", "a photo of a {}.",
    "a photo of many {}.", "a photo of my {}.", "a photo of one {}.", "a photo of the clean {}.",
    "a photo of the cool {}.", "a photo of the dirty {}.", "a photo of the hard to see {}.", "a photo of the {}.",
    "a pixelated photo of a {}.", "a pixelated photo of the {}.", "a plastic {}.", "a rendering of a {}.",
    "a rendering of the {}.", "a rendition of a {}.", "a rendition of the {}.", "a sculpture of a {}.",
    "a sculpture of the {}.", "a sketch of a {}.", "a sketch of the {}.", "a tattoo of a {}.",
    "a {} in a video game.", "art of a {}.", "graffiti of a {}.", "itap of the {}.", "the embroidered {}.",
    "the origami {}.", "the plastic {}.", "the toy {}.", "the {} in a video game.",
])
