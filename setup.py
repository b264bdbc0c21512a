from setuptools import find_packages, setup

setup(
    name="vlpeft",
    version="0.1.0",
    description="Parameter-efficient tuning methods for CLIP as Dassl trainers (CoOp / MaPLe / PromptSRC ecosystem)",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["vlpeft", "vlpeft.*"]),
    package_data={"vlpeft": ["datasets/*.txt", "testbed/*.pt", "testbed/*.json", "configs/*/*.yaml",
                              "configs/*/*/*.yaml"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=2.23",
        "yacs",
        "tabulate",
        "ftfy",
        "regex",
        "tqdm",
        "pillow",
        "numpy",
        "scipy",  # OxfordFlowers' and StanfordCars' .mat annotations
        "pyyaml",
        "safetensors",
        "huggingface_hub",
    ],
    entry_points={"console_scripts": ["vlpeft-train = vlpeft.cli:main"]},
    extras_require={
        "test": ["pytest", "setuptools>=70.1", "wheel", "submitit"],  # a wheel built offline; submitit: its local executor
        "plot": ["matplotlib"],
        "slurm": ["submitit"],
    },
)
