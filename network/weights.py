"""Weights files: the ``state_dict`` training writes, the ONNX file exported beside it, and
loading them back into a network for the torch backends."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model import WeightsError, card_path, int8_path, onnx_path
from network.architectures import build_network
from network.features import with_features
from runtime.backends import build_runner, build_runner_or_eager, export_onnx
from runtime.files import file_sha256, write_atomically
from runtime.onnx_session import ArrayRunner
from runtime.threads import limit_threads


def save_weights(network: nn.Module, path: Path, card: dict,
                 calibration: np.ndarray | None = None) -> None:
    """Save the ``state_dict``, its ONNX export and the JSON card recording their sha256s.

    The export is of the served form (``network.features``): logits and features.
    It is checked against the network's own logits before it is
    written (``runtime.backends.check_runner``). With ``calibration`` inputs
    (training digits) its int8 form is written too (``runtime.quantize``).
    Each file is written atomically; the card last, so a reader never sees a
    card for files not yet there.
    """
    state = {name: tensor.detach().cpu() for name, tensor in network.state_dict().items()}
    on_cpu = build_network(card["architecture"])
    on_cpu.load_state_dict(state)
    on_cpu.eval()
    served = with_features(on_cpu)
    build_runner(served, "onnx", torch.device("cpu"), threads=1)  # raises if it disagrees
    # Saved through memory: torch.save names the archive inside after the file it writes
    # to, and a temporary file's random name would make equal weights hash differently.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomically(path, buffer.getvalue())
    exported = onnx_path(path)
    write_atomically(exported, export_onnx(served))
    card = {**card, "weights": path.name, "sha256": file_sha256(path),
            "onnx": exported.name, "onnx_sha256": file_sha256(exported)}
    if calibration is not None:
        from runtime.quantize import quantize_int8

        quantized = int8_path(path)
        write_atomically(quantized, quantize_int8(export_onnx(served), calibration))
        card.update(onnx_int8=quantized.name, onnx_int8_sha256=file_sha256(quantized),
                    int8_calibration_digits=len(calibration))
    write_atomically(card_path(path), json.dumps(card, indent=2) + "\n")


def load_network(data: bytes, architecture: str, device: str, name: str = "weights") -> nn.Module:
    """The network of ``architecture`` with the ``state_dict`` in ``data``, in eval mode.

    ``torch.load`` runs with ``weights_only=True``: a file holding code is refused.
    """
    try:
        network = build_network(architecture)
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except Exception as error:  # torch raises many types for a corrupt or mismatched file
        raise WeightsError(f"{name} cannot be loaded: {error}") from None
    return network.to(torch.device(device)).eval()


def torch_runner(network: nn.Module, backend: str, device: str,
                 threads: int) -> tuple[ArrayRunner, str]:
    """An array runner for ``network``'s served form (logits and features) on a torch backend,
    and the backend's name.

    A backend that cannot be built here falls back to eager mode (logged).
    """
    limit_threads(threads)
    served = with_features(network)
    runner, used = build_runner_or_eager(served, backend, torch.device(device), threads)

    def run(batch: np.ndarray) -> tuple[np.ndarray, ...]:
        with torch.inference_mode():
            outputs = runner(torch.from_numpy(batch).to(device))
            return tuple(output.float().cpu().numpy() for output in outputs)

    return run, used
