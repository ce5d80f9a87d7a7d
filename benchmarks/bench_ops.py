"""What the operations layer (metrics, request ids and log lines, CORS) costs per request.

    python benchmarks/bench_ops.py [--requests 2000]

Two apps are built in one process with the same settings: the service as
``create_app`` builds it, and the same parts without ``request_log``,
``metrics`` and ``cors`` (so its chain is unwrapped). Both answer the same
28x28 PNG of a held-out digit through Flask's test client, one request each
in turn (so a busy neighbour on a shared machine slows both alike), and each
request is timed by the wall clock and by the process's CPU time (less
disturbed by neighbours); the medians and trimmed means are compared. The request log
lines go to /dev/null, so their formatting and writing are counted.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import folder_paths  # noqa: E402
from app import create_app  # noqa: E402
from web import admin, api, config, errors, inference, page, probes  # noqa: E402
from web.uploads import InMemoryRequest  # noqa: E402

SETTINGS = {"DEVICE": "cpu", "TORCH_THREADS": 1}


def bare_app(settings: dict):
    """The service without its operations layer: no metrics, request log or CORS."""
    from flask import Flask

    app = Flask("app", template_folder=folder_paths.get_folder("templates"),
                static_folder=folder_paths.get_folder("static"))
    app.request_class = InMemoryRequest
    config.init_app(app, settings)
    errors.init_app(app)
    inference.init_app(app)
    for blueprint in (page.bp, api.bp, probes.bp, admin.bp):
        app.register_blueprint(blueprint)
    return app


def digit_png() -> bytes:
    with np.load(folder_paths.get_full_path("tests", "fixtures/heldout_digits.npz")) as data:
        image = Image.fromarray(data["images"][0], mode="L")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def request_ms(client, png: bytes) -> tuple[float, float]:
    """Wall-clock and CPU milliseconds (this process, all threads) for one POST /predict."""
    started, cpu_started = time.perf_counter(), time.process_time()
    answer = client.post("/predict", data={"file": (io.BytesIO(png), "digit.png")})
    elapsed = (time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return elapsed


def trimmed_mean(values: list[float], share: float = 0.1) -> float:
    """The mean without the fastest and slowest ``share`` of the values."""
    cut = int(len(values) * share)
    return statistics.fmean(sorted(values)[cut:len(values) - cut])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per app")
    args = parser.parse_args(argv)

    devnull = open("/dev/null", "w")
    real_stderr, sys.stderr = sys.stderr, devnull
    try:
        apps = {"without": bare_app(SETTINGS).test_client(),
                "with": create_app(SETTINGS).test_client()}
        png = digit_png()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        for index in range(args.requests + 100):
            for name, client in apps.items():
                elapsed = request_ms(client, png)
                if index >= 100:  # the first hundred warm both up
                    times[name].append(elapsed)
    finally:
        sys.stderr = real_stderr
        devnull.close()

    print(f"{args.requests} requests per app, taken in turn; ms per request")
    for column, clock in enumerate(("wall-clock", "CPU")):
        summary = {}
        for name in apps:
            values = [pair[column] for pair in times[name]]
            summary[name] = statistics.median(values), trimmed_mean(values)
            print(f"  {clock:10} {name:7} operations layer: median {summary[name][0]:.3f},"
                  f" trimmed mean {summary[name][1]:.3f}")
        for index, measure in enumerate(("median", "trimmed mean")):
            without, with_ = summary["without"][index], summary["with"][index]
            print(f"  {clock:10} cost ({measure}): {with_ - without:+.3f} ms per request, "
                  f"{(with_ / without - 1) * 100:+.1f}%")


if __name__ == "__main__":
    main()
