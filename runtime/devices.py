"""Turn a device setting (``auto``, ``cpu``, ``cuda``, ``cuda:N``) into a device name.

The names are torch's (``cpu``, ``cuda:0``); torch is imported only where a
CUDA device may be there to ask about, so a CPU server never loads it for this.
"""

from __future__ import annotations

import os
import sys

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DEFAULT_DEVICE = "auto"
# Present wherever an NVIDIA driver is loaded; without it there is no CUDA device.
NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def might_have_cuda() -> bool:
    """False when no CUDA device can be there; True when torch must be asked."""
    if "torch" in sys.modules:
        return True
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists(NVIDIA_DRIVER)


def resolve_device(setting: str = DEFAULT_DEVICE) -> str:
    """The device name a setting means here; ``ValueError`` for one that is not valid here.

    ``auto`` picks the first visible CUDA device when there is one, else the
    CPU. ``CUDA_VISIBLE_DEVICES`` is honoured because torch only sees the
    devices it lists.
    """
    choice = (setting or DEFAULT_DEVICE).strip().lower()
    if choice == "auto":
        return "cuda:0" if might_have_cuda() and cuda_device_count() > 0 else "cpu"
    if choice == "cpu":
        return "cpu"
    if choice == "cuda" or choice.startswith("cuda:"):
        index_text = choice.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise ValueError(f"device {setting!r} is not valid; use {DEVICE_CHOICES}")
        count = cuda_device_count() if might_have_cuda() else 0
        if count == 0:
            raise ValueError(f"device {setting!r} was asked for, but no CUDA device is visible")
        index = int(index_text)
        if index >= count:
            raise ValueError(f"device {setting!r} does not exist; {count} CUDA device(s) visible")
        return f"cuda:{index}"
    raise ValueError(f"device {setting!r} is not valid; use {DEVICE_CHOICES}")


def cuda_device_count() -> int:
    """How many CUDA devices torch sees (importing torch)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
