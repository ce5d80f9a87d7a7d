"""The ways a network can be run, by the names the settings use."""

from __future__ import annotations

BACKENDS = ("eager", "onnx", "onnx-int8", "torchscript", "compile")
# The fastest at batch 1 on the CPU (benchmarks/bench_backends.py) with the same
# held-out accuracy, and with "onnx" the only ones that need no torch to serve.
DEFAULT_BACKEND = "onnx-int8"
# The ONNX Runtime backends, run on the CPU from the files written beside the weights.
ONNX_FILE_BACKENDS = ("onnx", "onnx-int8")
BACKEND_CHOICES = ", ".join(BACKENDS)


def check_backend_name(backend: str) -> str:
    """The backend's canonical name, or ``ValueError`` naming the choices."""
    name = (backend or "").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not known; use {BACKEND_CHOICES}")
    return name
