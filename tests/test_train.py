import json
import struct

import numpy as np
import torch

import augment
import folder_paths
import train
from model import DigitClassifier, card_path, file_sha256

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
    assert "train.py" in card["command"]
    assert "epoch 1: training loss" in capsys.readouterr().out
    assert DigitClassifier(weights, device="cpu").architecture == "bn-conv"
    assert not list((tmp_path / "weights").glob(".*")), "a temporary file was left behind"


def test_training_is_reproducible(monkeypatch, tmp_path):
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    for name in ("a.pt", "b.pt"):
        train.main(["--data", str(FIXTURE), "--epochs", "1", "--limit", "128", "--out", name,
                    "--arch", "classic"])
    weights = tmp_path / "weights"
    assert file_sha256(weights / "a.pt") == file_sha256(weights / "b.pt")


def test_augmented_digits_depend_only_on_seed_epoch_and_index():
    with np.load(FIXTURE) as data:
        images, labels = data["images"][:16], data["labels"][:16]
    dataset = augment.AugmentedDigits(images, labels, seed=3)
    first = [dataset[i][0] for i in range(len(dataset))]
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    assert torch.equal(torch.cat([inputs for inputs, _ in loader]), torch.stack(first))
    dataset.epoch = 1
    assert not torch.equal(dataset[0][0], first[0])


def test_augmented_digits_are_centred_as_uploads_are():
    with np.load(FIXTURE) as data:
        digit = data["images"][0]
    varied = augment.augment_digit(digit, torch.Generator().manual_seed(0))
    assert varied.shape == (28, 28) and varied.dtype == np.uint8
    rows, cols = np.nonzero(varied)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 == 20  # the 20x20 box
    centre = np.average(np.indices(varied.shape).reshape(2, -1), axis=1,
                        weights=varied.ravel().astype(float))
    assert np.abs(centre - 14).max() <= 1.0


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
                "--out", "mnist.pt"])
    card = json.loads((tmp_path / "weights" / "mnist.json").read_text())
    assert card["validation_digits"] == 100
    assert "torchvision MNIST" in card["data"]


def test_held_out_part_is_every_tenth_digit_of_every_class():
    mask = train.held_out_mask(10_000)
    assert mask.sum() == 1000
    assert mask[9] and mask[19] and not mask[10]
