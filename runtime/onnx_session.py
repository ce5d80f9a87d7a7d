"""ONNX Runtime sessions on NumPy arrays: the serving path that needs no torch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnxruntime

# A runner maps a float32 batch to the network's outputs, NumPy arrays: the served
# network's are its logits and its features (``network.features``).
ArrayRunner = Callable[[np.ndarray], tuple[np.ndarray, ...]]
CPU_PROVIDERS = ["CPUExecutionProvider"]


def onnx_session(model: bytes, threads: int, providers: list | None = None
                 ) -> onnxruntime.InferenceSession:
    """A session for a serialised ONNX model, on ``threads`` CPU threads."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1  # one small graph: nothing runs in parallel at graph level
    options.log_severity_level = 3  # errors only: the graph optimiser's notes are noise here
    return onnxruntime.InferenceSession(model, options, providers=providers or CPU_PROVIDERS)


def session_runner(session: onnxruntime.InferenceSession) -> ArrayRunner:
    """The session as a function from a float32 batch to its outputs, in the graph's order."""
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(session.run(None, {input_name: batch}))

    run.session = session  # for inspection: its options show the thread count
    return run
