import json
import struct

import numpy as np
import pytest

import folder_paths
from model import DigitClassifier, card_path
from runtime.files import file_sha256
from training import train

pytestmark = pytest.mark.slow  # training runs

FIXTURE = folder_paths.get_full_path("tests", "fixtures/heldout_digits.npz")


def test_train_runs_a_short_epoch_and_writes_weights_with_a_card(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    accuracy = train.main(["--data", str(FIXTURE), "--epochs", "1", "--limit", "300",
                           "--out", "tiny.pt"])
    weights = tmp_path / "weights" / "tiny.pt"
    card = json.loads(card_path(weights).read_text())
    assert card["sha256"] == file_sha256(weights)
    assert card["architecture"] == "bn-conv"
    assert card["epochs"] == 1
    assert card["training_digits"] == 300
    assert card["validation_accuracy"] == round(accuracy, 4)
    assert card["validation_correct"] == round(accuracy * card["validation_digits"])
    assert "rotation" in card["augmentation"]
    assert "training.train" in card["command"]
    assert card["temperature"] > 0 and card["trust"]["non_digit"]  # calibrated as it was saved
    assert "epoch 1: training loss" in capsys.readouterr().out
    assert DigitClassifier(weights, device="cpu").architecture == "bn-conv"
    assert not list((tmp_path / "weights").glob(".*")), "a temporary file was left behind"


def test_training_is_reproducible(monkeypatch, tmp_path):
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    for name in ("a.pt", "b.pt"):
        train.main(["--data", str(FIXTURE), "--epochs", "1", "--limit", "128", "--out", name,
                    "--arch", "classic", "--no-calibrate"])
    weights = tmp_path / "weights"
    assert file_sha256(weights / "a.pt") == file_sha256(weights / "b.pt")


def write_idx(path, array: np.ndarray) -> None:
    """An MNIST idx file (big-endian sizes, then uint8 data)."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_train_reads_torchvision_mnist_files(monkeypatch, tmp_path):
    with np.load(FIXTURE) as data:
        images, labels = data["images"], data["labels"]
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, part in (("train", slice(0, 400)), ("t10k", slice(400, 500))):
        write_idx(raw / f"{split}-images-idx3-ubyte", images[part])
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels[part])
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    train.main(["--mnist-root", str(tmp_path / "mnist"), "--epochs", "1", "--limit", "64",
                "--out", "mnist.pt", "--no-calibrate"])
    card = json.loads((tmp_path / "weights" / "mnist.json").read_text())
    assert card["validation_digits"] == 100
    assert "torchvision MNIST" in card["data"]
