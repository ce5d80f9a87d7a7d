"""Turn a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a ``torch.device``."""

from __future__ import annotations

import torch

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DEFAULT_DEVICE = "auto"


def resolve_device(setting: str = DEFAULT_DEVICE) -> torch.device:
    """The ``torch.device`` a setting names; ``ValueError`` for one that is not valid here.

    ``auto`` picks the first visible CUDA device when there is one, else the
    CPU. ``CUDA_VISIBLE_DEVICES`` is honoured because torch only sees the
    devices it lists.
    """
    choice = (setting or DEFAULT_DEVICE).strip().lower()
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda" or choice.startswith("cuda:"):
        index_text = choice.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ValueError(f"device {setting!r} is not valid; use {DEVICE_CHOICES}")
        if not torch.cuda.is_available():
            raise ValueError(f"device {setting!r} was asked for, but no CUDA device is visible")
        index = int(index_text)
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(f"device {setting!r} does not exist; {count} CUDA device(s) visible")
        return torch.device("cuda", index)
    raise ValueError(f"device {setting!r} is not valid; use {DEVICE_CHOICES}")
