"""``DataManager`` and ``DatasetWrapper`` with Dassl's loaders, batch items and summary table."""
import torch
from PIL import Image
from tabulate import tabulate
from torch.utils.data import DataLoader, Dataset, RandomSampler, SequentialSampler
from torchvision.transforms import Compose, Normalize, Resize, ToTensor

from .registry import DATASET_REGISTRY, check_availability
from .transforms import INTERPOLATION_MODES, build_transform

SAMPLERS = {"RandomSampler": RandomSampler, "SequentialSampler": SequentialSampler}


def build_dataset(cfg):
    check_availability(cfg.DATASET.NAME, DATASET_REGISTRY.registered_names(), kind="dataset")
    if cfg.VERBOSE:
        print(f"Loading dataset: {cfg.DATASET.NAME}")
    return DATASET_REGISTRY.get(cfg.DATASET.NAME)(cfg)


def read_image(path):
    """The image as RGB; a missing, truncated or undecodable file raises ``OSError`` naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as e:
        raise OSError(f'Cannot read image "{path}": {e}') from e


def build_data_loader(cfg, sampler_type="SequentialSampler", data_source=None, batch_size=64, tfm=None,
                      is_train=True, dataset_wrapper=None):
    if sampler_type not in SAMPLERS:
        raise ValueError(f'Sampler "{sampler_type}" is not supported; choose from {list(SAMPLERS)}')
    wrapper = (dataset_wrapper or DatasetWrapper)(cfg, data_source, transform=tfm, is_train=is_train)
    sampler = SAMPLERS[sampler_type](wrapper)
    loader = DataLoader(
        wrapper,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        drop_last=is_train and len(data_source) >= batch_size,
        pin_memory=(torch.cuda.is_available() and cfg.USE_CUDA),
    )
    assert len(loader) > 0
    return loader


class DataManager:
    def __init__(self, cfg, custom_tfm_train=None, custom_tfm_test=None, dataset_wrapper=None):
        dataset = build_dataset(cfg)
        tfm_train = custom_tfm_train if custom_tfm_train is not None else build_transform(cfg, is_train=True)
        tfm_test = custom_tfm_test if custom_tfm_test is not None else build_transform(cfg, is_train=False)

        self.train_loader_x = build_data_loader(
            cfg, sampler_type=cfg.DATALOADER.TRAIN_X.SAMPLER, data_source=dataset.train_x,
            batch_size=cfg.DATALOADER.TRAIN_X.BATCH_SIZE, tfm=tfm_train, is_train=True,
            dataset_wrapper=dataset_wrapper)
        self.train_loader_u = None
        if dataset.train_u:
            ucfg = cfg.DATALOADER.TRAIN_U
            sampler_type = cfg.DATALOADER.TRAIN_X.SAMPLER if ucfg.SAME_AS_X else ucfg.SAMPLER
            batch_size = cfg.DATALOADER.TRAIN_X.BATCH_SIZE if ucfg.SAME_AS_X else ucfg.BATCH_SIZE
            self.train_loader_u = build_data_loader(
                cfg, sampler_type=sampler_type, data_source=dataset.train_u, batch_size=batch_size,
                tfm=tfm_train, is_train=True, dataset_wrapper=dataset_wrapper)
        self.val_loader = None
        if dataset.val:
            self.val_loader = build_data_loader(
                cfg, sampler_type=cfg.DATALOADER.TEST.SAMPLER, data_source=dataset.val,
                batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=tfm_test, is_train=False,
                dataset_wrapper=dataset_wrapper)
        self.test_loader = build_data_loader(
            cfg, sampler_type=cfg.DATALOADER.TEST.SAMPLER, data_source=dataset.test,
            batch_size=cfg.DATALOADER.TEST.BATCH_SIZE, tfm=tfm_test, is_train=False,
            dataset_wrapper=dataset_wrapper)

        self._num_classes = dataset.num_classes
        self._num_source_domains = len(cfg.DATASET.SOURCE_DOMAINS)
        self._lab2cname = dataset.lab2cname
        self.dataset = dataset
        self.tfm_train = tfm_train
        self.tfm_test = tfm_test
        if cfg.VERBOSE:
            self.show_dataset_summary(cfg)

    @property
    def num_classes(self):
        return self._num_classes

    @property
    def num_source_domains(self):
        return self._num_source_domains

    @property
    def lab2cname(self):
        return self._lab2cname

    def show_dataset_summary(self, cfg):
        table = [["Dataset", cfg.DATASET.NAME]]
        if cfg.DATASET.SOURCE_DOMAINS:
            table.append(["Source", cfg.DATASET.SOURCE_DOMAINS])
        if cfg.DATASET.TARGET_DOMAINS:
            table.append(["Target", cfg.DATASET.TARGET_DOMAINS])
        table.append(["# classes", f"{self.num_classes:,}"])
        table.append(["# train_x", f"{len(self.dataset.train_x):,}"])
        if self.dataset.train_u:
            table.append(["# train_u", f"{len(self.dataset.train_u):,}"])
        if self.dataset.val:
            table.append(["# val", f"{len(self.dataset.val):,}"])
        table.append(["# test", f"{len(self.dataset.test):,}"])
        print(tabulate(table))


class DatasetWrapper(Dataset):
    """Items are dicts: ``label``, ``domain``, ``impath``, ``index``, ``img`` (``img2``... for a list of
    transforms; a list of K views when ``DATALOADER.K_TRANSFORMS`` > 1 in training), ``img0`` with RETURN_IMG0."""

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        self.cfg = cfg
        self.data_source = data_source
        self.transform = transform
        self.is_train = is_train
        self.k_tfm = cfg.DATALOADER.K_TRANSFORMS if is_train else 1
        self.return_img0 = cfg.DATALOADER.RETURN_IMG0
        if self.k_tfm > 1 and transform is None:
            raise ValueError(f"Cannot augment the image {self.k_tfm} times because transform is None")
        interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
        to_tensor = [Resize(tuple(cfg.INPUT.SIZE), interpolation=interp), ToTensor()]
        if "normalize" in cfg.INPUT.TRANSFORMS:
            to_tensor.append(Normalize(mean=cfg.INPUT.PIXEL_MEAN, std=cfg.INPUT.PIXEL_STD))
        self.to_tensor = Compose(to_tensor)

    def __len__(self):
        return len(self.data_source)

    def __getitem__(self, idx):
        item = self.data_source[idx]
        output = {"label": item.label, "domain": item.domain, "impath": item.impath, "index": idx}
        img0 = read_image(item.impath)
        if self.transform is None:
            output["img"] = img0
        elif isinstance(self.transform, (list, tuple)):
            for i, tfm in enumerate(self.transform):
                output["img" if i == 0 else f"img{i + 1}"] = self._transform_image(tfm, img0)
        else:
            output["img"] = self._transform_image(self.transform, img0)
        if self.return_img0:
            output["img0"] = self.to_tensor(img0)
        return output

    def _transform_image(self, tfm, img0):
        views = [tfm(img0) for _ in range(self.k_tfm)]
        return views[0] if len(views) == 1 else views
