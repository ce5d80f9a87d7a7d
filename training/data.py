"""The digits to train and validate on: the MNIST subset with its fixed held-out part, or
torchvision's MNIST files where a user has them.

Every tenth digit of the subset (indices 9, 19, 29, ...; 1,000 digits, all ten
classes, since the subset is sorted by label) is never trained on: those
digits are the validation set, and every test fixture made from digits comes
from them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import folder_paths

SUBSET_NAME = "mnist_train_subset.npz"
HELD_OUT_EVERY = 10  # digit i is held out when i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1

Split = tuple[np.ndarray, np.ndarray]  # images (N, 28, 28) uint8 and labels (N,) int64


def default_subset() -> Path:
    """Where the MNIST subset lies: ``shared/data`` beside the project."""
    return folder_paths.shared_data_path(SUBSET_NAME)


def load_digits(path: Path) -> Split:
    """Every image (uint8, white on black) and label of an ``.npz`` holding both."""
    with np.load(path) as data:
        return data["images"], data["labels"].astype(np.int64)


def held_out_mask(count: int) -> np.ndarray:
    """True for the subset's fixed held-out digits (every tenth one)."""
    return np.arange(count) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def split_subset(images: np.ndarray, labels: np.ndarray) -> tuple[Split, Split]:
    """The training part and the fixed held-out part of the subset."""
    held = held_out_mask(len(images))
    return (images[~held], labels[~held]), (images[held], labels[held])


def load_torchvision_mnist(root: Path) -> tuple[Split, Split]:
    """torchvision's MNIST train split for training and its test split for validation."""
    from torchvision.datasets import MNIST

    train = MNIST(str(root), train=True, download=False)
    test = MNIST(str(root), train=False, download=False)
    return (
        (train.data.numpy(), train.targets.numpy().astype(np.int64)),
        (test.data.numpy(), test.targets.numpy().astype(np.int64)),
    )


def training_splits(mnist_root: Path | None, subset: Path) -> tuple[Split, Split, str]:
    """The training and validation digits, and how the card names them: torchvision's
    MNIST under ``mnist_root`` where given, else the subset with its held-out part."""
    if mnist_root:
        train, validation = load_torchvision_mnist(mnist_root)
        return train, validation, (f"torchvision MNIST in {mnist_root} "
                                   "(train split; validated on test split)")
    train, validation = split_subset(*load_digits(subset))
    return train, validation, (f"{subset.name}: digits with index % {HELD_OUT_EVERY} == "
                               f"{HELD_OUT_EVERY - 1} held out for validation")
