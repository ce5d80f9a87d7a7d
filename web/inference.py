"""Hooks the serving core into the app: one model slot and one chain per process, and the
request's upload through them.

``init_app`` loads the configured model once for the process (after gunicorn
forks, since each worker builds its own app) and, before every request,
follows a reload that another worker of the server recorded. Views reach both
through ``get_slot`` and ``get_chain``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from flask import Flask, current_app

import folder_paths
from imaging.decode import DecodeLimits
from model import DATA_CREDIT, DigitClassifier
from runtime.threads import limit_threads
from serving.chain import Chain
from serving.reload import ModelSlot, SharedState
from web.uploads import read_upload


def init_app(app: Flask) -> None:
    """Load the model with the app's settings and follow reloads before each request."""
    limit_threads(int(app.config["TORCH_THREADS"]))
    app.extensions["model_slot"] = create_model_slot(app.config)
    app.extensions["chain"] = Chain(int(app.config["MAX_IMAGE_PIXELS"]),
                                    limits=decode_limits(app.config))
    app.before_request(follow_reloads)


def decode_limits(config: Mapping[str, Any]) -> DecodeLimits:
    """The decoding limits the settings name: formats, width, height, decoded bytes."""
    formats = config["IMAGE_FORMATS"]
    if isinstance(formats, str):
        formats = [name.strip() for name in formats.split(",") if name.strip()]
    return DecodeLimits(tuple(formats), int(config["MAX_IMAGE_WIDTH"]),
                        int(config["MAX_IMAGE_HEIGHT"]), int(config["MAX_DECODED_BYTES"]))


def create_model_slot(config: Mapping[str, Any]) -> ModelSlot:
    """The process's model, loaded with the configured device, backend and threads."""
    device, backend = config["DEVICE"], config["BACKEND"]
    threads = int(config["TORCH_THREADS"]) or None

    def load(weights: str, expected_sha256: str | None) -> DigitClassifier:
        path = folder_paths.get_full_path("weights", weights)
        return DigitClassifier(path, device, backend, threads, expected_sha256)

    state = SharedState(config["STATE_DIR"]) if config["STATE_DIR"] else None
    return ModelSlot(load, config["WEIGHTS"], state)


def get_slot() -> ModelSlot:
    """The slot holding this process's model; reloads go through it."""
    return current_app.extensions["model_slot"]


def get_chain() -> Chain:
    """The request chain of this app."""
    return current_app.extensions["chain"]


def follow_reloads() -> None:
    """Before each request: serve the weights another worker of this server reloaded."""
    get_slot().follow()


def predict_upload(include_input: bool = False) -> dict[str, object]:
    """The request's ``file`` upload through the chain: its JSON body, or its error raised."""
    (outcome,) = get_chain().run(get_slot().current, [read_upload()], include_input)
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def describe_model() -> dict[str, object]:
    """What model this process serves, as ``/model`` answers it."""
    weights, classifier = get_slot().served
    return {
        "architecture": classifier.architecture,
        "weights": weights,
        "sha256": classifier.sha256,
        "backend": classifier.backend,
        "accuracy": classifier.card.validation_accuracy,
        "device": str(classifier.device),
        "threads": torch.get_num_threads(),
        "loaded_at": classifier.loaded_at.isoformat(),
        "data_credit": DATA_CREDIT,
    }
