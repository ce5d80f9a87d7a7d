"""The service's settings: defaults in code, then ``DIGITS_*`` environment variables, then
the mapping a test (or an embedding program) passes to ``create_app``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from imaging.decode import (
    DEFAULT_FORMATS,
    DEFAULT_MAX_DECODED_BYTES,
    DEFAULT_MAX_HEIGHT,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_WIDTH,
)
from model import DEFAULT_WEIGHTS
from runtime.backend_names import DEFAULT_BACKEND
from runtime.devices import DEFAULT_DEVICE

ENV_PREFIX = "DIGITS"  # every setting can be overridden by a DIGITS_<NAME> variable
DEFAULT_CONFIG: dict[str, Any] = {
    "WEIGHTS": DEFAULT_WEIGHTS,  # file name inside weights/
    "DEVICE": DEFAULT_DEVICE,  # auto, cpu, cuda or cuda:N
    "BACKEND": DEFAULT_BACKEND,  # eager, onnx, torchscript or compile
    "MAX_CONTENT_LENGTH": 10 * 1024 * 1024,  # largest accepted request body, bytes
    "BODY_TIMEOUT": 10,  # seconds a read of a request body may wait (under gunicorn)
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_PIXELS,  # largest accepted image, width x height
    "MAX_FILES": 64,  # most file parts in one /predict request
    # Dynamic batching of concurrent requests in a worker: off, since with one request
    # at a time per worker on a CPU there is nothing to gather (see the README).
    "DYNAMIC_BATCHING": False,
    "BATCH_MAX_SIZE": 32,  # most inputs in one gathered batch
    "BATCH_MAX_DELAY_MS": 2.0,  # longest a request waits for others to join its batch
    "MAX_IMAGE_WIDTH": DEFAULT_MAX_WIDTH,  # widest accepted image, pixels
    "MAX_IMAGE_HEIGHT": DEFAULT_MAX_HEIGHT,  # tallest accepted image, pixels
    "MAX_DECODED_BYTES": DEFAULT_MAX_DECODED_BYTES,  # memory one image's decoding may take
    "IMAGE_FORMATS": ",".join(DEFAULT_FORMATS),  # the only formats decoded, comma-separated
    "TORCH_THREADS": 0,  # torch threads per process; 0 keeps torch's default
    "ADMIN_KEY": "",  # empty: /admin/ answers loopback clients only
    "API_KEY": "",  # set: /predict, /model, /metrics and /admin/ need it as a bearer token
    "RATE_LIMIT_PER_MINUTE": 0,  # requests per client per minute; 0 is no limit
    "RATE_LIMIT_STORAGE": "memory://",  # where counts are kept; memory:// is per worker
    "STATE_DIR": "",  # folder shared by one server's workers; empty: reloads stay in-process
    "METRICS_ACCESS": "loopback",  # who may read /metrics: loopback, open or key
    "METRICS_KEY": "",  # with METRICS_ACCESS=key, the bearer token /metrics needs
    "CORS_ORIGINS": "",  # origins whose pages may call the API, comma-separated; none by default
}
TRUE_WORDS = ("1", "true", "yes", "on")


def is_true(text: str | None) -> bool:
    """Whether a query or environment value says yes: ``1``, ``true``, ``yes`` or ``on``."""
    return (text or "").strip().lower() in TRUE_WORDS


def init_app(app: Flask, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill ``app.config``: the defaults, then the environment, then ``overrides``."""
    app.config.from_mapping(DEFAULT_CONFIG)
    app.config.from_prefixed_env(ENV_PREFIX)
    for key, default in DEFAULT_CONFIG.items():
        # from_prefixed_env parses values as JSON; a text setting (a file name, a key)
        # stays text even when it looks like a number.
        if isinstance(default, str) and f"{ENV_PREFIX}_{key}" in os.environ:
            app.config[key] = os.environ[f"{ENV_PREFIX}_{key}"]
    if overrides is not None:
        app.config.from_mapping(overrides)
