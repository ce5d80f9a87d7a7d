"""Predict the digits in many image files at once, offline.

    python predict.py PATH... --out predictions.csv    # files, and folders searched recursively
    python predict.py scans/ --out predictions.jsonl   # JSON lines instead of CSV

Every file is decoded and preprocessed exactly as an upload is
(``preprocess.preprocess``), in DataLoader worker processes, and the network
sees whole batches. The output has one row per file, in the order found:
``path,prediction,confidence,error``. A file that cannot be read, is not an
image or holds no digit gets its row with ``error`` filled in (its error code,
then the reason) and the run goes on. Hidden files and folders are skipped.

Exit status: 0 when every file got a prediction, 1 when some did not.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import folder_paths
from backends import BACKENDS, DEFAULT_BACKEND
from model import DigitClassifier
from pipeline import prediction_from
from preprocess import DEFAULT_MAX_PIXELS, PreprocessError, preprocess

CSV_COLUMNS = ("path", "prediction", "confidence", "error")
EMPTY_INPUT = torch.zeros(1, 28, 28)  # stands in for a file that failed, to keep batches whole


@dataclass(frozen=True)
class Row:
    """The answer for one file: a prediction, or the reason there is none."""

    path: str
    prediction: int | None = None
    confidence: float | None = None
    error: str | None = None


def find_files(paths: Sequence[str | Path]) -> list[Path]:
    """Each path that is not a folder, and every file under each folder, sorted, hidden ones not.

    A path that does not exist is kept, so that it gets a row saying so.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        inside = (item for item in path.rglob("*") if item.is_file())
        found.extend(sorted(item for item in inside if not is_hidden(item.relative_to(path))))
    return found


def is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


class ImageFiles(Dataset):
    """Image files as model inputs; item ``i`` is ``(input, error)``, the error ``""`` if none."""

    def __init__(self, files: Sequence[Path], max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.files = list(files)
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            data = self.files[index].read_bytes()
        except OSError as error:
            return EMPTY_INPUT, f"unreadable: {error.strerror or error}"
        try:
            return preprocess(data, self.max_pixels).tensor, ""
        except PreprocessError as error:
            return EMPTY_INPUT, f"{error.code}: {error}"
        except Exception as error:  # one strange file must not stop a run over thousands
            return EMPTY_INPUT, f"failed: {type(error).__name__}: {error}"


def limit_threads_in_worker(worker_id: int) -> None:
    """Workers decode one image at a time: one torch thread each avoids oversubscription."""
    torch.set_num_threads(1)


def predict_files(classifier_factory: Callable[[], DigitClassifier], files: Sequence[Path],
                  batch_size: int = 64, workers: int = 2, progress: bool = True) -> Iterator[Row]:
    """Rows for ``files`` in order; ``classifier_factory()`` gives the classifier."""
    loader = DataLoader(ImageFiles(files), batch_size=batch_size, num_workers=workers,
                        worker_init_fn=limit_threads_in_worker if workers else None)
    # Fork the workers before the model exists, so no thread pool of the
    # classifier (torch's, ONNX Runtime's) is copied into them half-way.
    batches = iter(loader)
    classifier = classifier_factory()
    bar = tqdm(total=len(files), unit="image", disable=not progress)
    position = 0
    for inputs, errors in batches:
        readable = [i for i, error in enumerate(errors) if not error]
        probabilities = classifier.predict(inputs[readable]) if readable else None
        answers = dict(zip(readable, probabilities, strict=True)) if readable else {}
        for i, error in enumerate(errors):
            path = str(files[position + i])
            if error:
                yield Row(path, error=error)
            else:
                answer = prediction_from(answers[i])
                yield Row(path, answer.digit, round(answer.confidence, 6))
        position += len(errors)
        bar.update(len(errors))
    bar.close()


def write_rows(rows: Iterator[Row], stream: TextIO, json_lines: bool) -> int:
    """Write every row as CSV or JSON lines; the number of rows with an error."""
    failed = 0
    writer = None if json_lines else csv.writer(stream)
    if writer:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        failed += row.error is not None
        values = (row.path, row.prediction, row.confidence, row.error)
        if writer:
            writer.writerow(["" if value is None else value for value in values])
        else:
            stream.write(json.dumps(dict(zip(CSV_COLUMNS, values, strict=True))) + "\n")
    return failed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    parser.add_argument("--out", type=Path, required=True,
                        help="output file: CSV, or JSON lines when it ends in .jsonl")
    parser.add_argument("--weights", default="model.pt", help="file name inside weights/")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = find_files(args.paths)
    weights = folder_paths.get_full_path("weights", args.weights)

    def load() -> DigitClassifier:
        return DigitClassifier(weights, args.device, args.backend)

    rows = predict_files(load, files, args.batch_size, args.workers, not args.no_progress)
    with open(args.out, "w", encoding="utf-8", newline="") as stream:
        failed = write_rows(rows, stream, json_lines=args.out.suffix == ".jsonl")
    print(f"{len(files) - failed} of {len(files)} files predicted; wrote {args.out}",
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
