"""The network as it is served: its logits and the features that tell a digit from a non-digit.

The features are what the network's last layer reads (the penultimate layer)
and, for a network that shows its last feature map (``forward_parts``), that
map averaged over each quarter of the picture: the global average alone says
which strokes are there but not where, and where they are tells a letter or a
drawing from a digit far better (see ``training.calibrate``). Every served
form of the network answers logits and features in one run.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def final_linear_name(network: nn.Module) -> str:
    """The name of the network's last ``nn.Linear``, the layer that makes its logits."""
    names = [name for name, module in network.named_modules() if isinstance(module, nn.Linear)]
    if not names:
        raise ValueError(f"{type(network).__name__} has no linear layer to read features from")
    return names[-1]


def quarter_means(maps: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` feature maps averaged over each quarter (overlapping by the middle row
    and column when a side is odd, as ``adaptive_avg_pool2d(maps, 2)``): ``(N, 4 * C)``,
    channel by channel (top left, top right, bottom left, bottom right)."""
    height, width = maps.shape[2], maps.shape[3]
    rows, cols = (height + 1) // 2, (width + 1) // 2
    top, bottom = maps[:, :, :rows], maps[:, :, height - rows:]
    quarters = [top[:, :, :, :cols].mean(dim=(2, 3)), top[:, :, :, width - cols:].mean(dim=(2, 3)),
                bottom[:, :, :, :cols].mean(dim=(2, 3)),
                bottom[:, :, :, width - cols:].mean(dim=(2, 3))]
    return torch.stack(quarters, dim=2).flatten(1)


class WithFeatures(nn.Module):
    """``network`` answering ``(logits, features)``: the same logits, and what its last layer read.

    The network is copied with its final linear layer replaced by the identity,
    so the copy ends in the features; that layer then turns them into the
    logits. This holds for any network whose last step is that layer (checked
    by ``check_same_logits``).
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        name = final_linear_name(network)
        self.body = copy.deepcopy(network)
        self.head = self.body.get_submodule(name)
        self.body.set_submodule(name, nn.Identity())
        self.input_shape = network.input_shape
        self.feature_count = self.head.in_features
        self.train(network.training)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)
        return self.head(features), features


class WithLayout(nn.Module):
    """A network with ``forward_parts`` answering ``(logits, features)``: its own logits, and
    what its last layer read followed by its last feature map's ``quarter_means``."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.body = copy.deepcopy(network)
        self.input_shape = network.input_shape
        probe = torch.zeros(1, *self.input_shape, device=next(network.parameters()).device)
        with torch.inference_mode():
            _, pooled, maps = self.body.eval().forward_parts(probe)
        self.feature_count = pooled.shape[1] + quarter_means(maps).shape[1]
        self.train(network.training)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, pooled, maps = self.body.forward_parts(x)
        return logits, torch.cat([pooled, quarter_means(maps)], dim=1)


def with_features(network: nn.Module) -> WithFeatures | WithLayout:
    """The served form of ``network`` (``WithLayout`` where it shows its last feature map),
    checked to give its own logits."""
    served = WithLayout(network) if hasattr(network, "forward_parts") else WithFeatures(network)
    check_same_logits(served, network)
    return served


def check_same_logits(served: WithFeatures | WithLayout, network: nn.Module) -> None:
    """Raise ``ValueError`` unless ``served`` gives ``network``'s logits on a fixed input."""
    device = next(network.parameters()).device
    probe = torch.randn(2, *network.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = network(probe.to(device))
        logits, _ = served(probe.to(device))
    if not torch.allclose(logits, expected, atol=1e-5, rtol=1e-5):
        raise ValueError(f"{type(network).__name__} does not end in its last linear layer; "
                         "its features cannot be read")
