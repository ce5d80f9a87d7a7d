"""What "uncertain"/"reason" and the explanation cost per request.

    python benchmarks/bench_trust.py --before main [--requests 1000]

Three kinds of request, taken in turn in one process through Flask's test
client, on the default backend with one thread (a worker's share on 2 cores):

- ``before``: the service with the weights files of git revision ``--before``
  (an ONNX export that gives logits only, a card with no temperature or
  head), so its assess stage has nothing to do: what a request cost before;
- ``now``: the weights in weights/ (logits and features in one run, the
  non-digit head and the temperature applied);
- ``explain``: the same with ``?explain=1`` (one more run of the network, on
  the 169 occluded copies of the input).

Each request is timed by the wall clock and by the process's CPU time; the
medians and trimmed means are compared. The assess stage alone (the head on
one image's features) is timed too, since it is far below a request's noise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench_ops import CLOCKS, clock_summary, digit_png  # noqa: E402

import folder_paths  # noqa: E402
from app import create_app  # noqa: E402

SETTINGS = {"DEVICE": "cpu", "TORCH_THREADS": 1}
WEIGHT_FILES = ("model.pt", "model.json", "model.onnx", "model.int8.onnx")


def weights_of_revision(revision: str, folder: Path) -> Path:
    """The weights files of a git revision, written into ``folder``/weights; the base path."""
    (folder / "weights").mkdir(parents=True)
    for name in WEIGHT_FILES:
        data = subprocess.run(["git", "show", f"{revision}:weights/{name}"], check=True,
                              capture_output=True, cwd=folder_paths.base_path()).stdout
        (folder / "weights" / name).write_bytes(data)
    return folder


@contextlib.contextmanager
def base_path(folder: Path):
    """Load weights from ``folder`` while the block runs."""
    earlier = os.environ.get(folder_paths.BASE_PATH_ENV)
    os.environ[folder_paths.BASE_PATH_ENV] = str(folder)
    try:
        yield
    finally:
        if earlier is None:
            del os.environ[folder_paths.BASE_PATH_ENV]
        else:
            os.environ[folder_paths.BASE_PATH_ENV] = earlier


def request_ms(client, png: bytes, query: str) -> tuple[float, float]:
    started, cpu_started = time.perf_counter(), time.process_time()
    answer = client.post(f"/predict{query}", data={"file": (io.BytesIO(png), "digit.png")})
    elapsed = (time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return elapsed


def assess_us(client) -> float:
    """Microseconds the assess stage takes for one image's outputs."""
    from imaging.normalise import INPUT_SHAPE
    from serving import chain

    classifier = client.application.extensions["model_slot"].current
    outputs = classifier.run(np.zeros((1, *INPUT_SHAPE), dtype=np.float32))
    times = []
    for _ in range(2000):
        started = time.perf_counter()
        chain.assess(classifier, outputs)
        times.append((time.perf_counter() - started) * 1e6)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision of the earlier weights")
    parser.add_argument("--requests", type=int, default=1000, help="requests of each kind")
    args = parser.parse_args(argv)

    devnull = open("/dev/null", "w")
    real_stderr, sys.stderr = sys.stderr, devnull
    try:
        with tempfile.TemporaryDirectory(prefix="bench-trust-") as folder:
            with base_path(weights_of_revision(args.before, Path(folder))):
                before = create_app(SETTINGS).test_client()
            now = create_app(SETTINGS).test_client()
        kinds = {"before": (before, ""), "now": (now, ""), "explain": (now, "?explain=1")}
        png = digit_png()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in kinds}
        for index in range(args.requests + 50):
            for name, (client, query) in kinds.items():
                elapsed = request_ms(client, png, query)
                if index >= 50:  # the first fifty warm everything up
                    times[name].append(elapsed)
    finally:
        sys.stderr = real_stderr
        devnull.close()

    print(f"assess stage alone, one image (median of 2,000 calls): before "
          f"{assess_us(before):.1f} µs, now {assess_us(now):.1f} µs")
    print(f"{args.requests} requests of each kind, taken in turn; ms per request "
          f"(before: weights of {args.before})")
    for column, clock in enumerate(CLOCKS):
        summary = clock_summary(times, column)
        for name, (median, trimmed) in summary.items():
            print(f"  {clock:10} {name:8} median {median:.3f}, trimmed mean {trimmed:.3f}")
        for name in ("now", "explain"):
            base, cost = summary["before"][0], summary[name][0]
            print(f"  {clock:10} {name} against before (medians): {cost - base:+.3f} ms, "
                  f"{(cost / base - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
