"""Datasets for the search: embedded ones that run offline (`digits`, `pytext`) and loaders for
the paper's (`cifar10`, `cifar100`, `wikitext103`, `wikitext2`) from local files.

    ds = load_dataset("digits")
    space = get_space("vit", **ds.space_options())
    x, y = ds.batch("train", 64, torch.Generator().manual_seed(0))
"""
from ._base import Dataset, ImageDataset, TextDataset
from ._registry import DATASETS, dataset_options, load_dataset

__all__ = ["Dataset", "ImageDataset", "TextDataset", "DATASETS", "dataset_options", "load_dataset"]
