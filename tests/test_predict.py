import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import TEST_CONFIG
from helpers import encode_image, paper_digit, upload
from PIL import Image
from synthetic_numbers import make_number

import folder_paths
from app import create_app
from tools import predict
from training.nondigits import nondigit_pictures


@pytest.fixture(scope="module")
def flagged_picture() -> bytes:
    """A drawn non-digit that the service itself answers as ``not_a_digit``."""
    client = create_app(TEST_CONFIG).test_client()
    for picture in nondigit_pictures("objects", 5, "measure"):
        data = encode_image(picture)
        if upload(client, data).get_json().get("reason") == "not_a_digit":
            return data
    raise AssertionError("none of five drawn objects was flagged as not a digit")


@pytest.fixture
def folder(tmp_path, heldout_digits, flagged_picture):
    """Good digits (PNG, JPEG, white on black, in a subfolder), a written number, a broken
    file, a blank image."""
    images, labels = heldout_digits
    root = tmp_path / "scans"
    (root / "more" / "deeper").mkdir(parents=True)
    (root / ".cache").mkdir()
    expected = {}
    for i in (0, 60, 120, 180, 240):
        path = root / f"digit-{i}.png"
        path.write_bytes(encode_image(paper_digit(images[i])))
        expected[str(path)] = labels[i]
    jpeg = root / "more" / "photo.jpg"
    jpeg.write_bytes(encode_image(paper_digit(images[300]).convert("RGB"), "JPEG", quality=90))
    expected[str(jpeg)] = labels[300]
    inverse = root / "more" / "deeper" / "mnist.png"
    inverse.write_bytes(encode_image(Image.fromarray(images[450], mode="L")))
    expected[str(inverse)] = labels[450]
    number = make_number("paper-png", images, labels, np.random.default_rng(7), length=3)
    (root / "number.png").write_bytes(number.data)
    expected[str(root / "number.png")] = number.number
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (root / "notes.txt").write_text("not an image")
    (root / "blank.png").write_bytes(encode_image(Image.new("L", (64, 64), 255)))
    (root / ".cache" / "skipped.png").write_bytes(b"hidden files are skipped")
    (root / "checks.png").write_bytes(flagged_picture)
    return root, expected


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def test_a_folder_of_good_broken_and_blank_files(folder, tmp_path):
    root, expected = folder
    out = tmp_path / "predictions.csv"
    status = predict.main([str(root), "--out", str(out), "--workers", "2", "--batch-size", "4",
                           "--no-progress"])
    assert status == 1  # some files got no prediction
    rows = {row["path"]: row for row in read_csv(out)}
    assert list(read_csv(out)[0]) == ["path", "prediction", "confidence", "number", "uncertain",
                                      "reason", "error"]
    assert len(rows) == len(expected) + 4
    for path, label in expected.items():
        assert rows[path]["error"] == ""
        assert rows[path]["number"] == str(label)
        assert int(rows[path]["prediction"]) in {int(digit) for digit in str(label)}
        assert 0.0 < float(rows[path]["confidence"]) <= 1.0
        assert (rows[path]["uncertain"], rows[path]["reason"]) == ("False", "")
    checks = rows[str(root / "checks.png")]
    assert (checks["uncertain"], checks["reason"], checks["error"]) == ("True", "not_a_digit", "")
    assert rows[str(root / "broken.png")]["error"].startswith("not_an_image: ")
    assert rows[str(root / "notes.txt")]["error"].startswith("not_an_image: ")
    assert rows[str(root / "blank.png")]["error"].startswith("no_digit_found: ")
    for name in ("broken.png", "notes.txt", "blank.png"):
        row = rows[str(root / name)]
        assert row["prediction"] == row["confidence"] == row["number"] == ""
    assert not any(".cache" in path for path in rows)


def test_every_file_predicted_exits_zero_and_json_lines(folder, tmp_path):
    root, expected = folder
    out = tmp_path / "predictions.jsonl"
    good = sorted(expected)
    assert predict.main([*good, "--out", str(out), "--workers", "0", "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["path"] for row in rows] == good  # one row per input, in the given order
    assert all(row["error"] is None for row in rows)
    assert [row["number"] for row in rows] == [str(expected[path]) for path in good]


def test_a_missing_path_gets_its_row(tmp_path):
    out = tmp_path / "out.csv"
    missing = tmp_path / "nowhere.png"
    assert predict.main([str(missing), "--out", str(out), "--workers", "0", "--no-progress"]) == 1
    (row,) = read_csv(out)
    assert row["path"] == str(missing)
    assert row["error"].startswith("unreadable: ")


def test_command_line_shows_progress_and_sets_the_exit_status(folder, tmp_path):
    root, _ = folder
    out = tmp_path / "predictions.csv"
    result = subprocess.run(
        [sys.executable, "-m", "tools.predict", str(root / "more"),
         "--out", str(out), "--backend", "eager"],
        cwd=folder_paths.base_path(), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "image/s" in result.stderr or "s/image" in result.stderr  # the progress bar
    assert "2 of 2 files predicted" in result.stderr
    assert len(read_csv(out)) == 2


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1/0", "2", "a/b", "1/2/3", ""])
def test_a_shard_outside_0_to_n_is_refused_with_the_rule(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.parse_args(["scans", "--out", "x.csv", f"--shard={text}"])
    assert exit_info.value.code == 2
    assert "write K/N with whole numbers 0 <= K < N" in capsys.readouterr().err


def test_shards_are_contiguous_blocks_that_cover_every_file_once():
    files = [f"{i:02}.png" for i in range(11)]
    for count in (1, 2, 3, 4, 11, 15):
        shards = [predict.shard_of(files, k, count) for k in range(count)]
        assert [name for shard in shards for name in shard] == files
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_n_shard_processes_concatenate_to_one_run(folder, tmp_path):
    """Three processes at once, each with its --shard, write together what one run writes."""
    root, _ = folder
    whole = tmp_path / "whole.csv"
    predict.main([str(root), "--out", str(whole), "--workers", "0", "--no-progress"])
    count = 3
    outputs = [tmp_path / f"part-{k}.csv" for k in range(count)]
    runs = [subprocess.Popen([sys.executable, "-m", "tools.predict", str(root), "--out", str(out),
                              "--shard", f"{k}/{count}", "--workers", "0", "--no-progress"],
                             cwd=folder_paths.base_path(), stderr=subprocess.PIPE, text=True)
            for k, out in enumerate(outputs)]
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode in (0, 1), stderr
    parts = [read_csv(out) for out in outputs]
    assert all(parts)  # ten files in three shares: none is empty
    assert [row for part in parts for row in part] == read_csv(whole)
