"""Run bench_preprocess.py's step-by-step timing on given image files instead of its own photo.

    python benchmarks/preprocess_steps.py IMAGE [IMAGE ...] [--runs 30]

bench_preprocess.py times each preprocessing step (and its decode baselines)
on a photo it generates; here its generator is pointed at each file in turn,
so the steps, their names and the service modules they call stay exactly
those of bench_preprocess.py, whatever the service's module layout. Its first
line describes the upload as a photo; the line printed above it names the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import bench_preprocess
from PIL import Image


def time_file(path: Path, runs: int) -> None:
    """bench_preprocess.main on the bytes of ``path``."""
    data = path.read_bytes()
    with Image.open(path) as image:
        width, height = image.size
        mode = image.mode
    print(f"\n== {path.name}: {width}x{height} {mode} {image.format}, {len(data):,} bytes")
    bench_preprocess.phone_photo_jpeg = lambda size, seed=0: data
    bench_preprocess.main(["--runs", str(runs), "--size", f"{width}x{height}"])


def main(argv: list[str] | None = None) -> None:
    """Time every file given."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    for path in args.images:
        time_file(path, args.runs)


if __name__ == "__main__":
    main()
