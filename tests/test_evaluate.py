import json

import pytest

import folder_paths
from model import card_path
from training import evaluate

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")
ALL_HELD_OUT = folder_paths.get_full_path("tests", "fixtures/heldout_all.npz")


def test_wilson_interval_matches_known_values():
    assert evaluate.wilson_interval(50, 100) == pytest.approx((0.40383, 0.59617), abs=1e-5)
    assert evaluate.wilson_interval(993, 1000) == pytest.approx((0.98562, 0.99661), abs=1e-5)
    low, high = evaluate.wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(0.27753, abs=1e-5)
    with pytest.raises(ValueError):
        evaluate.wilson_interval(0, 0)


def test_the_cards_held_out_accuracy_is_reproduced(capsys):
    """All 1,000 held-out digits, exactly as training measured them for the card."""
    card = json.loads(card_path(WEIGHTS).read_text())
    accuracy = evaluate.main(["--digits", str(ALL_HELD_OUT)])
    assert accuracy.total == card["validation_digits"] == 1000
    assert accuracy.correct == card["validation_correct"]
    assert round(accuracy.value, 4) == card["validation_accuracy"]
    assert accuracy.value >= 0.993
    low, high = accuracy.interval
    assert low < accuracy.value < high
    assert "95% Wilson interval" in capsys.readouterr().out
