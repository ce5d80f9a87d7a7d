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
    # Idle intra-op threads sleep instead of spinning: a worker's other threads (reading,
    # decoding) and the other workers need those cores between runs. With two threads,
    # spinning cost 14% more CPU at batch 1 and 27% more at batch 64 on two shared cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: the graph optimiser's notes are noise here
    return onnxruntime.InferenceSession(model, options, providers=providers or CPU_PROVIDERS)


def session_runner(session: onnxruntime.InferenceSession) -> ArrayRunner:
    """The session as a function from a float32 batch to its outputs, in the graph's order."""
    input_name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return tuple(session.run(None, {input_name: batch}))

    run.session = session  # for inspection: its options show the thread count
    return run
