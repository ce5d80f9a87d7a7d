"""TorchServe handler for the classic network with the plain preprocessing, one image a request.

Packed by torch-model-archiver with ``classic_net.py`` as an extra file and the
seeded weights as the serialized file; both land in the model directory.
"""

from __future__ import annotations

import json
import os
import sys

import torch


class ClassicHandler:
    """The ``initialize``/``handle`` pair TorchServe calls in each worker."""

    def __init__(self) -> None:
        self.network = None
        self.answer = None
        self.plain_input = None

    def initialize(self, context) -> None:
        """Load the network from the model directory, with one torch thread per worker."""
        torch.set_num_threads(1)
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        sys.path.insert(0, model_dir)
        from classic_net import answer, build_network, plain_input

        serialized = context.manifest["model"].get("serializedFile")
        state = torch.load(os.path.join(model_dir, serialized), weights_only=True)
        self.network = build_network(state)
        self.answer, self.plain_input = answer, plain_input

    def handle(self, data: list[dict], context) -> list[str]:
        """One JSON answer per request in the (size 1) batch."""
        answers = []
        for row in data:
            payload = row.get("data") or row.get("file") or row.get("body")
            answers.append(json.dumps(self.answer(self.network, self.plain_input(payload))))
        return answers
