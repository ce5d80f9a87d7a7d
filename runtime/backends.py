"""Ways to run a loaded network: eager PyTorch, ONNX Runtime, TorchScript or torch.compile.

Each backend turns an eval-mode network into a *runner*: a function from a
float32 batch ``(N, *network.input_shape)`` on the network's device to its
logits. The network names the shape of one input in its ``input_shape``.
Compiled forms are built at load time, in memory, from the loaded weights;
nothing compiled is ever written beside the weights. Before a runner is used
it must give the same logits as the eager network (``check_runner``).
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from runtime.backend_names import check_backend_name
from runtime.onnx_session import CPU_PROVIDERS, onnx_session, session_runner

# A runner answers what the network answers: its logits, or a tuple of outputs.
Runner = Callable[[torch.Tensor], torch.Tensor | tuple[torch.Tensor, ...]]
# Compiled runners may reorder floating-point sums; anything beyond this is a real difference.
LOGIT_TOLERANCE = 1e-3

log = logging.getLogger(__name__)


class BackendError(RuntimeError):
    """A backend that cannot be built here or that disagrees with eager mode."""


def eager_runner(network: nn.Module, device: torch.device, threads: int) -> Runner:
    """The network itself, run by PyTorch op by op."""
    return network


def onnx_runner(network: nn.Module, device: torch.device, threads: int) -> Runner:
    """The network exported to ONNX in memory and run by ONNX Runtime.

    On the CPU the session uses ``threads`` threads, the same share of the
    cores as torch gets. CUDA needs the onnxruntime-gpu package.
    """
    import onnxruntime

    providers = CPU_PROVIDERS
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            raise BackendError("the onnx backend on CUDA needs the onnxruntime-gpu package")
        providers = [("CUDAExecutionProvider", {"device_id": device.index or 0}), *CPU_PROVIDERS]
    run_arrays = session_runner(onnx_session(export_onnx(network), threads, providers))

    def run(batch: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = tuple(torch.from_numpy(output).to(batch.device)
                        for output in run_arrays(batch.detach().cpu().numpy()))
        return outputs[0] if len(outputs) == 1 else outputs

    run.session = run_arrays.session  # for inspection: its options show the thread count
    return run


def export_onnx(network: nn.Module) -> bytes:
    """The network as a serialised ONNX model with a dynamic batch size.

    An export takes seconds, so the last few are kept by the network's content:
    loading the same weights again in a process (a reload of an unchanged file,
    several apps in one process) reuses the export.
    """
    key = network_fingerprint(network)
    if key not in _recent_exports:
        _recent_exports[key] = export_onnx_uncached(network)
        while len(_recent_exports) > RECENT_EXPORTS:
            _recent_exports.popitem(last=False)
    return _recent_exports[key]


RECENT_EXPORTS = 4
_recent_exports: OrderedDict[str, bytes] = OrderedDict()


def network_fingerprint(network: nn.Module) -> str:
    """A sha256 of the network's class and every parameter and buffer (names, shapes, values)."""
    digest = hashlib.sha256(type(network).__qualname__.encode())
    for name, tensor in network.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def export_onnx_uncached(network: nn.Module) -> bytes:
    """Export with ``torch.onnx.export`` (the dynamo exporter), in memory."""
    example = torch.zeros(2, *network.input_shape, device=next(network.parameters()).device)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(network, (example,), dynamo=True, verbose=False,
                                dynamic_shapes=({0: batch},))
    return program.model_proto.SerializeToString()


def torchscript_runner(network: nn.Module, device: torch.device, threads: int) -> Runner:
    """The network scripted and frozen by TorchScript (constants folded, batch norm fused)."""
    with warnings.catch_warnings():
        # TorchScript still works but now warns that it is deprecated; this is the only filter.
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated",
                                category=FutureWarning)
        return torch.jit.freeze(torch.jit.script(network).eval())


def compile_runner(network: nn.Module, device: torch.device, threads: int) -> Runner:
    """The network compiled by ``torch.compile`` (inductor); the first calls compile it.

    ``check_runner`` makes those first calls at load time, with a batch of one
    and of two, so requests never wait for a compilation.
    """
    return torch.compile(network)


BUILDERS: dict[str, Callable[[nn.Module, torch.device, int], Runner]] = {
    "eager": eager_runner,
    "onnx": onnx_runner,
    "torchscript": torchscript_runner,
    "compile": compile_runner,
}


def probe_batches(network: nn.Module, device: torch.device) -> list[torch.Tensor]:
    """Fixed pseudo-random inputs of batch size 1 and 2 to compare runners on."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(size, *network.input_shape, generator=generator).to(device)
            for size in (1, 2)]


def check_runner(runner: Runner, network: nn.Module, device: torch.device) -> None:
    """Raise ``BackendError`` unless ``runner`` gives the eager network's logits."""
    with torch.inference_mode():
        for batch in probe_batches(network, device):
            expected, actual = as_outputs(network(batch)), as_outputs(runner(batch))
            if len(actual) != len(expected):
                raise BackendError(f"the runner gives {len(actual)} outputs, "
                                   f"not {len(expected)}")
            for want, got in zip(expected, actual, strict=True):
                if got.shape != want.shape:
                    shapes = f"{tuple(got.shape)} instead of {tuple(want.shape)}"
                    raise BackendError(f"the runner's output has the shape {shapes}")
                difference = float((got.float() - want).abs().max())
                if difference > LOGIT_TOLERANCE:
                    raise BackendError(f"outputs differ from eager mode by up to "
                                       f"{difference:.2e}")


def as_outputs(answer: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """A network's answer as a tuple of outputs, however many it has."""
    return answer if isinstance(answer, tuple) else (answer,)


def build_runner(network: nn.Module, backend: str, device: torch.device,
                 threads: int | None = None) -> Runner:
    """A checked runner for ``backend``; ``BackendError`` when it cannot be built or disagrees."""
    name = check_backend_name(backend)
    threads = threads or torch.get_num_threads()
    try:
        runner = BUILDERS[name](network, device, threads)
        check_runner(runner, network, device)
    except BackendError:
        raise
    except Exception as error:  # exporters and compilers fail in many ways (no C++ compiler...)
        raise BackendError(f"the {name} backend cannot be built: {error}") from error
    return runner


def build_runner_or_eager(network: nn.Module, backend: str, device: torch.device,
                          threads: int | None = None) -> tuple[Runner, str]:
    """The runner for ``backend`` and its name; eager mode, logged, if it cannot be built.

    A service with a working network keeps serving even where a compiled form
    is unavailable; ``/model`` reports the backend actually used.
    """
    try:
        return build_runner(network, backend, device, threads), check_backend_name(backend)
    except BackendError as error:
        log.warning("falling back to eager mode: %s", error)
        return network, "eager"
