"""The ways a network can be run, by the names the settings use."""

from __future__ import annotations

BACKENDS = ("eager", "onnx", "torchscript", "compile")
# The fastest at batch 1 on the CPU (benchmarks/bench_backends.py), and the only
# one that needs no torch in the serving process.
DEFAULT_BACKEND = "onnx"
BACKEND_CHOICES = ", ".join(BACKENDS)


def check_backend_name(backend: str) -> str:
    """The backend's canonical name, or ``ValueError`` naming the choices."""
    name = (backend or "").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not known; use {BACKEND_CHOICES}")
    return name
