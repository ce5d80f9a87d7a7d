"""Hard but plainly visible digits, and pictures without one: refusals and mistakes per kind.

    python benchmarks/bench_visible.py                              # the served weights
    python benchmarks/bench_visible.py --weights model.pt other.pt  # several, one run

Every kind of ``tests/visible_digits.py`` (tight crops, white digits filling
the frame, digits touching the border, blurry 8/12/16 px scans enlarged,
thick digits over 40% ink, faint pencil) at every size from 16 to 1,000
pixels, made from held-out digits, goes through the service's chain
(``Chain.prepare`` then ``Chain.predict``). For each kind and size it prints
how many were refused (``no_digit_found``, which should never happen) and how
many answered wrong; then how many blank pictures were wrongly accepted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from helpers import encode_image  # noqa: E402
from visible_digits import BLANK_KINDS, SIZES, VISIBLE_KINDS  # noqa: E402

import folder_paths  # noqa: E402
from imaging.errors import PreprocessError  # noqa: E402
from model import DEFAULT_WEIGHTS, DigitClassifier  # noqa: E402
from runtime.backend_names import BACKENDS, DEFAULT_BACKEND  # noqa: E402
from serving.chain import Chain  # noqa: E402

FIXTURE = "fixtures/heldout_digits.npz"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-case", type=int, default=20, help="digits per kind and size")
    parser.add_argument("--weights", nargs="+", default=[DEFAULT_WEIGHTS])
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    args = parser.parse_args(argv)

    with np.load(folder_paths.get_full_path("tests", FIXTURE)) as data:
        images, labels = data["images"], data["labels"].astype(int)
    step = max(1, len(images) // args.per_case)
    chain = Chain()
    prepared: dict[tuple[str, int], list] = {}
    refused: dict[tuple[str, int], int] = {}
    for kind, make in VISIBLE_KINDS.items():
        for size in SIZES:
            case = prepared[kind, size] = []
            refused[kind, size] = 0
            for index in range(0, len(images), step):
                image = make(images[index], size, np.random.default_rng(index))
                try:
                    case.append((chain.prepare(encode_image(image)), labels[index]))
                except PreprocessError:
                    refused[kind, size] += 1
    accepted = 0
    for make in BLANK_KINDS.values():
        for size in SIZES:
            for seed in range(5):
                try:
                    chain.prepare(encode_image(make(size, np.random.default_rng(seed))))
                    accepted += 1
                except PreprocessError:
                    pass
    total = sum(len(case) + refused[key] for key, case in prepared.items())
    print(f"{total} visible digits ({args.per_case} per kind and size), refused: "
          f"{sum(refused.values())}; blank pictures accepted: {accepted} of "
          f"{len(BLANK_KINDS) * len(SIZES) * 5}")
    for name in args.weights:
        classifier = DigitClassifier(folder_paths.get_full_path("weights", name), "cpu",
                                     args.backend, threads=1)
        print(f"\n{name}, backend {classifier.backend}: wrong answers per kind and size")
        print(f"{'kind':26s}" + "".join(f"{size:>6d}" for size in SIZES) + f"{'all':>7s}")
        wrong_in_all = 0
        for kind in VISIBLE_KINDS:
            row = []
            for size in SIZES:
                case = prepared[kind, size]
                readings = chain.read_numbers(classifier, [item for item, _ in case])
                row.append(sum(reading.number != str(label)
                               for reading, (_, label) in zip(readings, case, strict=True)))
            wrong_in_all += sum(row)
            print(f"{kind:26s}" + "".join(f"{n:6d}" for n in row) + f"{sum(row):7d}")
        print(f"{'all kinds':26s}{wrong_in_all:>{6 * len(SIZES) + 7}d} of {total}")


if __name__ == "__main__":
    main()
