"""Shared fixtures: apps built with test settings, their test client, held-out digits."""

from __future__ import annotations

import numpy as np
import pytest

import folder_paths
from app import create_app

HELDOUT_FIXTURE = "fixtures/heldout_digits.npz"
HELDOUT_ALL_FIXTURE = "fixtures/heldout_all.npz"  # every held-out digit
TEST_CONFIG = {"TESTING": True, "DEVICE": "cpu"}


@pytest.fixture
def make_app():
    """Builds an app with settings laid over the tests' own: ``make_app(MAX_IMAGE_PIXELS=1000)``."""

    def build(**overrides):
        return create_app({**TEST_CONFIG, **overrides})

    return build


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="session")
def heldout_digits() -> tuple[np.ndarray, np.ndarray]:
    """Held-out MNIST digits (white on black, 28x28 uint8) and their labels."""
    with np.load(folder_paths.get_full_path("tests", HELDOUT_FIXTURE)) as data:
        return data["images"], data["labels"].astype(int)


@pytest.fixture(scope="session")
def heldout_all() -> tuple[np.ndarray, np.ndarray]:
    """Every held-out digit of the subset (1,000) and its label."""
    with np.load(folder_paths.get_full_path("tests", HELDOUT_ALL_FIXTURE)) as data:
        return data["images"], data["labels"].astype(int)
