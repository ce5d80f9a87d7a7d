import json

import folder_paths
import train
from model import DigitClassifier, card_path, file_sha256


def test_train_runs_a_short_epoch_and_writes_weights_with_a_card(monkeypatch, tmp_path, capsys):
    data = folder_paths.get_full_path("tests", "fixtures/heldout_digits.npz")
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    accuracy = train.main(["--data", str(data), "--epochs", "1", "--limit", "300",
                           "--out", "tiny.pt"])
    weights = tmp_path / "weights" / "tiny.pt"
    card = json.loads(card_path(weights).read_text())
    assert card["sha256"] == file_sha256(weights)
    assert card["architecture"] == "classic"
    assert card["epochs"] == 1
    assert card["training_digits"] == 300
    assert card["validation_accuracy"] == round(accuracy, 4)
    assert "train.py" in card["command"]
    assert "epoch 1: training loss" in capsys.readouterr().out
    assert DigitClassifier(weights, device="cpu").architecture == "classic"


def test_held_out_part_is_every_tenth_digit_of_every_class():
    mask = train.held_out_mask(10_000)
    assert mask.sum() == 1000
    assert mask[9] and mask[19] and not mask[10]
