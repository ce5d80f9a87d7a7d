"""Predict the digits in many image files at once, offline.

    python -m tools.predict PATH... --out predictions.csv   # files; folders searched recursively
    python -m tools.predict scans/ --out predictions.jsonl  # JSON lines instead of CSV
    python -m tools.predict scans/ --shard 2/8 --out part-2.csv  # the third of eight shares

Every file goes through the service's own chain (``serving.chain``): decoded
and preprocessed exactly as an upload is, in DataLoader worker processes, then
through the network in whole batches and encoded as the API answers. The
output has one row per file, in the order found:
``path,prediction,confidence,uncertain,reason,error``: ``uncertain`` is
true when the answer should not be taken as a fact, and ``reason`` then says
why (``not_a_digit`` or ``low_confidence``, as the API answers). A file
that cannot be read, is not an image or holds no digit gets its row with
``error`` filled in (its error code, then the reason) and the run goes on.
Hidden files and folders are skipped.

``--shard K/N`` (0 <= K < N) predicts only the K-th of N contiguous blocks of
that list, so N runs over the same paths (the pods of an Indexed Job, say)
share the files without talking to each other, and their outputs, taken in
the order K = 0 .. N-1 (CSV headers after the first dropped), are exactly
the rows of one run.

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

from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import folder_paths
from imaging.errors import PreprocessError
from imaging.segment import Segmentation
from model import DEFAULT_WEIGHTS, DigitClassifier
from runtime.backend_names import BACKENDS, DEFAULT_BACKEND
from runtime.devices import DEFAULT_DEVICE, DEVICE_CHOICES
from runtime.threads import limit_threads_in_worker
from serving.chain import Chain

CSV_COLUMNS = ("path", "prediction", "confidence", "number", "uncertain", "reason", "error")


@dataclass(frozen=True)
class Row:
    """The answer for one file: a prediction, or the reason there is none."""

    path: str
    prediction: int | None = None
    confidence: float | None = None
    number: str | None = None
    uncertain: bool | None = None
    reason: str | None = None
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


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` as ``(K, N)``; an ``ArgumentTypeError`` saying what is wrong otherwise."""
    index, slash, count = text.partition("/")
    try:
        k, n = int(index), int(count)
    except ValueError:
        k = n = -1
    if not slash or n < 1 or not 0 <= k < n:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a shard: write K/N with whole numbers 0 <= K < N, e.g. 0/4")
    return k, n


def shard_of(files: Sequence[Path], index: int, count: int) -> list[Path]:
    """The ``index``-th of ``count`` contiguous, nearly equal blocks of ``files``.

    Blocks rather than every ``count``-th file, so that the shards' outputs in
    order are one run's output; sizes differ by at most one file.
    """
    return list(files[index * len(files) // count : (index + 1) * len(files) // count])


def is_hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


class ImageFiles(Dataset):
    """Image files, each prepared by the chain; item ``i`` is its ``Segmentation`` (its
    candidate digits) or the reason it has none (its error code, then why)."""

    def __init__(self, files: Sequence[Path], chain: Chain) -> None:
        self.files = list(files)
        self.chain = chain

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> Segmentation | str:
        try:
            data = self.files[index].read_bytes()
        except OSError as error:
            return f"unreadable: {error.strerror or error}"
        try:
            return self.chain.prepare(data)
        except PreprocessError as error:
            return f"{error.code}: {error}"
        except Exception as error:  # one strange file must not stop a run over thousands
            return f"failed: {type(error).__name__}: {error}"


def as_list(items: list) -> list:
    """A DataLoader ``collate_fn`` that keeps a batch's items as they are."""
    return items


def predict_files(classifier_factory: Callable[[], DigitClassifier], files: Sequence[Path],
                  batch_size: int = 64, workers: int = 2, progress: bool = True,
                  chain: Chain | None = None) -> Iterator[Row]:
    """Rows for ``files`` in order; ``classifier_factory()`` gives the classifier."""
    chain = chain or Chain()
    # Workers start from a fresh interpreter ("forkserver"), not a fork of this
    # process: a fork copies every thread pool and lock a calling program holds
    # (torch's, ONNX Runtime's, a server's) and can deadlock on one of them.
    loader = DataLoader(ImageFiles(files, chain), batch_size=batch_size, num_workers=workers,
                        collate_fn=as_list,
                        multiprocessing_context="forkserver" if workers else None,
                        worker_init_fn=limit_threads_in_worker if workers else None)
    batches = iter(loader)
    classifier = classifier_factory()
    bar = tqdm(total=len(files), unit="image", disable=not progress)
    position = 0
    for items in batches:
        segmentations = [item for item in items if isinstance(item, Segmentation)]
        readings = iter(chain.read_numbers(classifier, segmentations))
        for offset, item in enumerate(items):
            path = str(files[position + offset])
            if isinstance(item, str):
                yield Row(path, error=item)
            else:
                body = chain.encode(next(readings))
                yield Row(path, body["prediction"], body["confidence"], body["number"],
                          body["uncertain"], body.get("reason"))
        position += len(items)
        bar.update(len(items))
    bar.close()


def write_rows(rows: Iterator[Row], stream: TextIO, json_lines: bool) -> int:
    """Write every row as CSV or JSON lines; the number of rows with an error."""
    failed = 0
    writer = None if json_lines else csv.writer(stream)
    if writer:
        writer.writerow(CSV_COLUMNS)
    for row in rows:
        failed += row.error is not None
        values = (row.path, row.prediction, row.confidence, row.number, row.uncertain,
                  row.reason, row.error)
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
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS, help="file name inside weights/")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    parser.add_argument("--device", default=DEFAULT_DEVICE, help=DEVICE_CHOICES)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--shard", type=parse_shard, metavar="K/N",
                        help="predict only the K-th of N contiguous blocks of the files found "
                             "(0 <= K < N); the N outputs in order K = 0..N-1 are one run's rows")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    files = find_files(args.paths)
    if args.shard:
        files = shard_of(files, *args.shard)
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
