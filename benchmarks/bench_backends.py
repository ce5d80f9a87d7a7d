"""Measure every inference backend against eager mode, in one run, on this machine.

    python benchmarks/bench_backends.py                 # the committed weights on the CPU
    python benchmarks/bench_backends.py --threads 1     # as one of several gunicorn workers

For each backend: how long it takes to build (export or compile, done once
when a worker loads the model), whether it gives eager mode's answers on the
held-out test digits, the latency of one image (median and 90th percentile)
and the throughput of batches of 64. Calls go through ``DigitClassifier.predict``,
as a request's do. The backends are measured in interleaved rounds, so a
neighbour's burst of load hits them all alike. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import folder_paths  # noqa: E402
from imaging.normalise import to_model_input  # noqa: E402
from imaging.preprocess import normalise_digit  # noqa: E402
from model import DigitClassifier  # noqa: E402
from runtime.backend_names import BACKENDS  # noqa: E402

FIXTURE = "fixtures/heldout_digits.npz"


@dataclass
class Timings:
    """What was measured for one backend."""

    build_seconds: float
    max_difference: float
    same_answers: int
    single: list[float] = field(default_factory=list)  # seconds per batch-1 call
    batched: list[float] = field(default_factory=list)  # seconds per batch-64 call


def held_out_inputs() -> torch.Tensor:
    """The held-out test digits, preprocessed as in training."""
    with np.load(folder_paths.get_full_path("tests", FIXTURE)) as data:
        images = data["images"]
    return np.stack([to_model_input(normalise_digit(image)) for image in images])


def timed_calls(classifier: DigitClassifier, batch: torch.Tensor, calls: int) -> list[float]:
    """Seconds taken by each of ``calls`` predictions of ``batch``."""
    durations = []
    for _ in range(calls):
        start = time.perf_counter()
        classifier.predict(batch)
        durations.append(time.perf_counter() - start)
    return durations


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def table(results: dict[str, Timings], batch_size: int) -> str:
    """The results as a Markdown table, eager first."""
    eager_single = statistics.median(results["eager"].single)
    lines = [
        f"| backend | build (s) | batch 1 median (ms) | batch 1 p90 (ms) | batch 1 (images/s) "
        f"| batch {batch_size} median (ms) | batch {batch_size} (images/s) "
        "| batch 1 vs eager | same answers as eager | max probability difference |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, timings in results.items():
        single = statistics.median(timings.single)
        batched = statistics.median(timings.batched)
        lines.append(
            f"| {name} | {timings.build_seconds:.1f} | {single * 1e3:.3f} "
            f"| {percentile(timings.single, 0.9) * 1e3:.3f} | {1 / single:,.0f} "
            f"| {batched * 1e3:.2f} | {batch_size / batched:,.0f} "
            f"| {eager_single / single:.2f}x | {timings.same_answers} "
            f"| {timings.max_difference:.1e} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", default="model.pt", help="file name inside weights/")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, help="torch and ONNX Runtime threads")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--single-calls", type=int, default=300, help="batch-1 calls a round")
    parser.add_argument("--batch-calls", type=int, default=20, help="big-batch calls a round")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Timings]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    weights = folder_paths.get_full_path("weights", args.weights)
    inputs = held_out_inputs()
    single, batch = inputs[:1], inputs[: args.batch_size]

    classifiers: dict[str, DigitClassifier] = {}
    results: dict[str, Timings] = {}
    reference = None
    for name in ["eager", *(b for b in args.backends if b != "eager")]:
        start = time.perf_counter()
        classifier = DigitClassifier(weights, args.device, name, args.threads)
        build = time.perf_counter() - start
        if classifier.backend != name:
            print(f"{name}: cannot be built here, skipped (see the warning above)")
            continue
        probabilities = classifier.predict(inputs)
        reference = probabilities if reference is None else reference
        same = int((probabilities.argmax(1) == reference.argmax(1)).sum())
        difference = float(np.abs(probabilities - reference).max())
        classifiers[name] = classifier
        results[name] = Timings(build, difference, same)
        timed_calls(classifier, single, 50)  # warm-up: caches, allocator, thread pools
        timed_calls(classifier, batch, 5)

    for _ in range(args.rounds):
        for name, classifier in classifiers.items():
            results[name].single += timed_calls(classifier, single, args.single_calls)
            results[name].batched += timed_calls(classifier, batch, args.batch_calls)

    print(f"weights {args.weights} ({classifiers['eager'].architecture}); "
          f"device {args.device}; {torch.get_num_threads()} thread(s); torch {torch.__version__}; "
          f"{platform.machine()} {platform.processor() or platform.platform()}; "
          f"{len(inputs)} held-out digits compared; "
          f"{args.rounds} rounds of {args.single_calls} single and {args.batch_calls} batch calls")
    print(table(results, args.batch_size))
    return results


if __name__ == "__main__":
    main()
