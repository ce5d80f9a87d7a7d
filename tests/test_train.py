import json
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

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


def test_distillation_trains_a_network_on_its_teachers_answers_and_records_them(
        monkeypatch, tmp_path):
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    common = ["--data", str(FIXTURE), "--epochs", "1", "--limit", "128", "--no-calibrate"]
    train.main([*common, "--arch", "classic", "--out", "teacher.pt"])
    train.main([*common, "--arch", "bn-conv", "--out", "other.pt", "--seed", "2"])
    train.main([*common, "--arch", "bn-conv-slim", "--teacher", "teacher.pt", "other.pt",
                "--distill-weight", "0.7", "--distill-temperature", "4", "--out", "student.pt"])
    weights = tmp_path / "weights"
    card = json.loads((weights / "student.json").read_text())
    assert card["architecture"] == "bn-conv-slim"
    taught = card["distilled_from"]
    assert [teacher["weights"] for teacher in taught["teachers"]] == ["teacher.pt", "other.pt"]
    assert [teacher["architecture"] for teacher in taught["teachers"]] == ["classic", "bn-conv"]
    assert taught["teachers"][0]["sha256"] == file_sha256(weights / "teacher.pt")
    assert (taught["weight"], taught["temperature"]) == (0.7, 4.0)
    assert DigitClassifier(weights / "student.pt", device="cpu").architecture == "bn-conv-slim"


def test_the_loss_blends_the_labels_with_the_teachers_softened_answers():
    torch.manual_seed(0)
    teacher = nn.Linear(4, 10)
    inputs, targets = torch.randn(16, 4), torch.randint(0, 10, (16,))
    with torch.no_grad():
        agreeing = teacher(inputs)
    disagreeing = torch.randn(16, 10)
    labels_only = F.cross_entropy(disagreeing, targets)
    assert torch.isclose(train.training_loss(disagreeing, targets, inputs), labels_only)
    only_teacher = train.Teacher((teacher,), weight=1.0, temperature=3.0)
    # answering as the teacher does leaves nothing to learn from it, whatever the labels
    assert train.training_loss(agreeing, targets, inputs, teacher=only_teacher).item() \
        == pytest.approx(0.0, abs=1e-5)
    assert train.training_loss(disagreeing, targets, inputs, teacher=only_teacher) > 0.1
    half = train.Teacher((teacher,), weight=0.5, temperature=3.0)
    blended = train.training_loss(disagreeing, targets, inputs, teacher=half)
    taught = train.training_loss(disagreeing, targets, inputs, teacher=only_teacher)
    assert torch.isclose(blended, 0.5 * labels_only + 0.5 * taught)


def test_several_teachers_teach_their_mean_softened_probabilities():
    torch.manual_seed(0)
    first, second = nn.Linear(4, 10), nn.Linear(4, 10)
    inputs = torch.randn(16, 4)
    ensemble = train.Teacher((first, second), weight=1.0, temperature=2.0)
    with torch.no_grad():
        mean = (F.softmax(first(inputs) / 2, dim=1) + F.softmax(second(inputs) / 2, dim=1)) / 2
    assert torch.allclose(ensemble.softened(inputs).exp(), mean, atol=1e-6)
    # one network taught twice over teaches what it teaches alone
    twice = train.Teacher((first, first), weight=1.0, temperature=2.0)
    alone = train.Teacher((first,), weight=1.0, temperature=2.0)
    assert torch.allclose(twice.softened(inputs), alone.softened(inputs), atol=1e-6)


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
