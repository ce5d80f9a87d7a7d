"""The network as it is served: its logits and the features its last layer reads.

The features (the input of the final linear layer: the penultimate layer) are
what tells a digit from something that is not one far better than the ten
logits alone (see ``training.calibrate``), so every served form of the network
answers both, in one run.
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


def with_features(network: nn.Module) -> WithFeatures:
    """The served form of ``network``, checked to give its own logits."""
    served = WithFeatures(network)
    check_same_logits(served, network)
    return served


def check_same_logits(served: WithFeatures, network: nn.Module) -> None:
    """Raise ``ValueError`` unless ``served`` gives ``network``'s logits on a fixed input."""
    device = next(network.parameters()).device
    probe = torch.randn(2, *network.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = network(probe.to(device))
        logits, _ = served(probe.to(device))
    if not torch.allclose(logits, expected, atol=1e-5, rtol=1e-5):
        raise ValueError(f"{type(network).__name__} does not end in its last linear layer; "
                         "its features cannot be read")
