"""Whole numbers read right, and what reading numbers costs a single digit, in one run.

    python benchmarks/bench_numbers.py                   # 500 numbers, 100 digits per kind
    python benchmarks/bench_numbers.py --numbers 100 --singles 20   # quicker

Numbers of two to six held-out digits (``tests/synthetic_numbers.py``) on
paper and in photos, as PNG and JPEG, a quarter of them with one touching
pair, go through the service's own chain. A number is right when every digit
is; digits are counted right after aligning what was read with what was
written (one minus the edit distance over the digits written).

Single digits of every upload kind (``tests/synthetic_uploads.py``) go through
the chain twice, with the segment stage and without it (``Chain(numbers=False)``,
the whole ink read as one digit, as before numbers were read), alternately,
each request timed whole (decode to JSON): accuracy and median time per kind,
both ways.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from synthetic_numbers import NUMBER_KINDS, edit_distance, make_number  # noqa: E402
from synthetic_uploads import UPLOAD_KINDS, make_upload  # noqa: E402

import folder_paths  # noqa: E402
from model import DEFAULT_WEIGHTS, DigitClassifier  # noqa: E402
from runtime.backend_names import BACKENDS, DEFAULT_BACKEND  # noqa: E402
from serving.chain import Chain  # noqa: E402

HELDOUT = "fixtures/heldout_all.npz"
TOUCHING_SHARE = 0.25
SEED = 2026  # neither the tests' seeds nor those the segmentation's weights were chosen on


def read_numbers(chain: Chain, classifier: DigitClassifier, images: np.ndarray,
                 labels: np.ndarray, count: int) -> dict[tuple[str, bool], list[tuple[str, str]]]:
    """(kind, touching) -> (written, read) for ``count`` numbers spread over the kinds."""
    rng = np.random.default_rng(SEED)
    found: dict[tuple[str, bool], list[tuple[str, str]]] = {}
    kinds = list(NUMBER_KINDS)
    for index in range(count):
        kind = kinds[index % len(kinds)]
        touching = bool(rng.random() < TOUCHING_SHARE)
        number = make_number(kind, images, labels, rng, touching=touching)
        (body,) = chain.run(classifier, [number.data])
        read = body["number"] if isinstance(body, dict) else ""
        found.setdefault((kind, touching), []).append((number.number, read))
    return found


def report_numbers(found: dict[tuple[str, bool], list[tuple[str, str]]]) -> None:
    print(f"{'numbers':28s} {'count':>6s} {'numbers right':>14s} {'digits right':>13s}")
    rows: list[tuple[str, list[tuple[str, str]]]] = []
    for kind in NUMBER_KINDS:
        apart, touching = found.get((kind, False), []), found.get((kind, True), [])
        rows += [(kind, apart + touching), (f"  {kind} apart", apart),
                 (f"  {kind} touching pair", touching)]
    everything = [pair for pairs in found.values() for pair in pairs]
    rows += [("all", everything),
             ("all apart", [p for (_, t), pairs in found.items() if not t for p in pairs]),
             ("all with a touching pair", [p for (_, t), pairs in found.items() if t
                                           for p in pairs])]
    for name, pairs in rows:
        if not pairs:
            continue
        right = sum(written == read for written, read in pairs)
        digits = sum(len(written) for written, _ in pairs)
        wrong = sum(min(len(w), edit_distance(w, r)) for w, r in pairs)
        print(f"{name:28s} {len(pairs):6d} {right / len(pairs):14.2%} "
              f"{1 - wrong / digits:13.2%}")


def compare_single_digits(classifier: DigitClassifier, images: np.ndarray, labels: np.ndarray,
                          per_kind: int, repeats: int) -> None:
    """Accuracy and per-request time of single digits, with and without segmentation."""
    with_numbers, without = Chain(), Chain(numbers=False)
    step = max(1, len(images) // per_kind)
    picked = range(0, step * per_kind, step)
    print(f"\n{'single digits':24s} {'right, numbers':>15s} {'right, before':>14s} "
          f"{'ms, numbers':>12s} {'ms, before':>11s} {'cost':>7s}")
    all_on, all_off = [], []
    totals = [0, 0, 0]
    for kind in UPLOAD_KINDS:
        right_on = right_off = 0
        times_on, times_off = [], []
        for index in picked:
            data = make_upload(kind, images[index], np.random.default_rng(index))
            answers = {}
            for _ in range(repeats):
                for name, chain, times in (("on", with_numbers, times_on),
                                           ("off", without, times_off)):
                    started = time.perf_counter()
                    (answers[name],) = chain.run(classifier, [data])
                    times.append((time.perf_counter() - started) * 1000)
            label = str(int(labels[index]))
            right_on += isinstance(answers["on"], dict) and answers["on"]["number"] == label
            right_off += isinstance(answers["off"], dict) and answers["off"]["number"] == label
        on, off = statistics.median(times_on), statistics.median(times_off)
        all_on += times_on
        all_off += times_off
        totals[0] += right_on
        totals[1] += right_off
        totals[2] += len(picked)
        print(f"{kind:24s} {right_on:>9d}/{len(picked):<5d} {right_off:>8d}/{len(picked):<5d} "
              f"{on:12.2f} {off:11.2f} {on / off - 1:+7.1%}")
    on, off = statistics.median(all_on), statistics.median(all_off)
    mean_on, mean_off = statistics.fmean(all_on), statistics.fmean(all_off)
    print(f"{'all kinds (median)':24s} {totals[0]:>9d}/{totals[2]:<5d} "
          f"{totals[1]:>8d}/{totals[2]:<5d} {on:12.2f} {off:11.2f} {on / off - 1:+7.1%}")
    print(f"{'all kinds (mean)':24s} {'':15s} {'':14s} {mean_on:12.2f} {mean_off:11.2f} "
          f"{mean_on / mean_off - 1:+7.1%}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=500, help="numbers to read")
    parser.add_argument("--singles", type=int, default=100, help="single digits per kind")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each single digit")
    parser.add_argument("--weights", default=DEFAULT_WEIGHTS)
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    args = parser.parse_args(argv)

    with np.load(folder_paths.get_full_path("tests", HELDOUT)) as data:
        images, labels = data["images"], data["labels"].astype(int)
    classifier = DigitClassifier(folder_paths.get_full_path("weights", args.weights), "cpu",
                                 args.backend, threads=1)
    print(f"{args.weights}, backend {classifier.backend}; {args.numbers} numbers, "
          f"{args.singles} single digits per kind\n")
    report_numbers(read_numbers(Chain(), classifier, images, labels, args.numbers))
    compare_single_digits(classifier, images, labels, args.singles, args.repeats)


if __name__ == "__main__":
    main()
