"""scikit-learn's 8x8 handwritten digits: 1,797 images bundled with sklearn, so the default
image study runs offline in seconds."""
from __future__ import annotations

import torch

from ._base import ImageDataset, check_fractions, heldout_split


def load_digits(val_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 0) -> ImageDataset:
    """A seeded random train/val/test split (`heldout_split`); pixel values 0..16 are scaled to
    [0, 1] then standardised with the train split's statistics."""
    from sklearn.datasets import load_digits as _sk_load_digits

    check_fractions(val_fraction, test_fraction)
    bunch = _sk_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.uint8)[:, None]  # [N, 1, 8, 8], values 0..16
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    train, val, test = heldout_split(perm, val_fraction, test_fraction)
    return ImageDataset("digits", (images[train], labels[train]), (images[val], labels[val]),
                        (images[test], labels[test]), num_classes=10, scale=16.0,
                        class_names=[str(d) for d in range(10)])
