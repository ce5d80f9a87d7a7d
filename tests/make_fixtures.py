"""Rebuild ``tests/fixtures/heldout_digits.npz`` from the training subset.

    python tests/make_fixtures.py [path/to/mnist_train_subset.npz]

It takes the first PER_CLASS digits of each class from the subset's fixed
held-out part (see ``training/data.py``), which no committed weights were trained on.
It also writes ``tests/fixtures/heldout_all.npz``: the whole held-out part
(1,000 digits), so that a test can reproduce the accuracy a weights card records.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import folder_paths  # noqa: E402
from training.data import default_subset, held_out_mask, load_digits  # noqa: E402

PER_CLASS = 50
FIXTURE = "fixtures/heldout_digits.npz"
ALL_FIXTURE = "fixtures/heldout_all.npz"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else default_subset()
    images, labels = load_digits(source)
    indices = np.flatnonzero(held_out_mask(len(images)))
    chosen = np.concatenate([indices[labels[indices] == digit][:PER_CLASS] for digit in range(10)])
    out = folder_paths.get_full_path("tests", FIXTURE)
    np.savez_compressed(out, images=images[chosen], labels=labels[chosen].astype(np.uint8),
                        subset_indices=chosen)
    print(f"wrote {len(chosen)} held-out digits to {out}")
    out = folder_paths.get_full_path("tests", ALL_FIXTURE)
    np.savez_compressed(out, images=images[indices], labels=labels[indices].astype(np.uint8),
                        subset_indices=indices)
    print(f"wrote all {len(indices)} held-out digits to {out}")


if __name__ == "__main__":
    main()
