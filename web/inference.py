"""Hooks the serving core into the app: one model slot and one chain per process, and the
request's upload through them.

``init_app`` loads the configured model once for the process (after gunicorn
forks, since each worker builds its own app) and, before every request,
follows a reload that another worker of the server recorded. Views reach both
through ``get_slot`` and ``get_chain``. Every model is warmed with a dummy
batch through the chain's infer stage before it serves (the pair reader, once,
when the app is made), and every load is timed and counted. Parts that wrap
the chain's stages from outside (metrics, the request log) list their
wrappers in ``app.extensions["stage_wrappers"]`` before ``init_app`` runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from flask import Flask, current_app

import folder_paths
from imaging.decode import DecodeLimits
from imaging.normalise import INPUT_SHAPE
from imaging.pairs import PAIR_SHAPE
from model import DATA_CREDIT, DigitClassifier
from serving import chain as stages
from serving.chain import Chain, StageWrapper
from serving.metrics import record_model_load
from serving.reload import ModelSlot, SharedState
from web.errors import error_body_of
from web.uploads import read_uploads


def init_app(app: Flask) -> None:
    """Load the model with the app's settings and follow reloads before each request."""
    app.extensions["model_slot"] = create_model_slot(app.config)
    wrap = combined(app.extensions.get("stage_wrappers", []))
    app.extensions["chain"] = chain = create_chain(app.config, wrap)
    # The pair reader too is loaded and run once now, not by the first request to need it.
    chain.pair_digits.read([np.zeros(PAIR_SHAPE, dtype=np.float32)])
    app.before_request(follow_reloads)


def create_chain(config: Mapping[str, Any], wrap: StageWrapper) -> Chain:
    """The request chain with the configured limits and ``wrap`` around every stage,
    dynamically batching if configured."""
    delay = float(config["BATCH_MAX_DELAY_MS"]) / 1000 if config["DYNAMIC_BATCHING"] else None
    return Chain(int(config["MAX_IMAGE_PIXELS"]), wrap=wrap, limits=decode_limits(config),
                 batch_delay=delay, max_batch=int(config["BATCH_MAX_SIZE"]))


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

    loaded_once = False

    def load(weights: str, expected_sha256: str | None) -> DigitClassifier:
        nonlocal loaded_once
        kind = "reload" if loaded_once else "load"
        started = time.perf_counter()
        try:
            path = folder_paths.get_full_path("weights", weights)
            classifier = DigitClassifier(path, device, backend, threads, expected_sha256)
            warm_up(classifier)
        except Exception:
            record_model_load(kind, False, time.perf_counter() - started)
            raise
        record_model_load(kind, True, time.perf_counter() - started)
        loaded_once = True
        return classifier

    state = SharedState(config["STATE_DIR"]) if config["STATE_DIR"] else None
    return ModelSlot(load, config["WEIGHTS"], state)


def warm_up(classifier: DigitClassifier) -> None:
    """One dummy batch through the chain's infer and assess stages, so the first request pays
    no set-up (and a card whose trust policy cannot be read is refused here)."""
    outputs = stages.infer(classifier, np.zeros((1, *INPUT_SHAPE), dtype=np.float32))
    stages.assess(classifier, outputs)


def combined(wrappers: Sequence[StageWrapper]) -> StageWrapper:
    """One ``StageWrapper`` applying ``wrappers`` in order (the first is innermost)."""

    def wrap(name: str, stage: Callable[..., Any]) -> Callable[..., Any]:
        for wrapper in wrappers:
            stage = wrapper(name, stage)
        return stage

    return wrap


def get_slot() -> ModelSlot:
    """The slot holding this process's model; reloads go through it."""
    return current_app.extensions["model_slot"]


def get_chain() -> Chain:
    """The request chain of this app."""
    return current_app.extensions["chain"]


def follow_reloads() -> None:
    """Before each request: serve the weights another worker of this server reloaded."""
    get_slot().follow()


def predict_upload(include_input: bool = False, explained: bool = False) -> dict[str, object]:
    """The request's ``file`` uploads through the chain, as one batch; ``explained`` adds
    each answer's heatmap.

    One file answers with its prediction, or raises its error. Several answer
    ``{"results": [...]}`` in the order sent, each a prediction or the error
    shape of its own failure.
    """
    uploads = read_uploads(int(current_app.config["MAX_FILES"]))
    readable = [data for data in uploads if isinstance(data, bytes)]
    outcomes = iter(get_chain().run(get_slot().current, readable, include_input, explained))
    answers = [next(outcomes) if isinstance(data, bytes) else data for data in uploads]
    if len(answers) == 1:
        if isinstance(answers[0], Exception):
            raise answers[0]
        return answers[0]
    return {"results": [error_body_of(answer) if isinstance(answer, Exception) else answer
                        for answer in answers]}


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
        "threads": classifier.threads,
        "loaded_at": classifier.loaded_at.isoformat(),
        "data_credit": DATA_CREDIT,
    }
