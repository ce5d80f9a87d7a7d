"""What the operations layer (metrics, request ids and log lines, CORS) costs per request.

    python benchmarks/bench_ops.py [--requests 2000]          # in process
    python benchmarks/bench_ops.py --http [--requests 2000]   # over HTTP, under gunicorn
    python benchmarks/bench_ops.py --wrk [--rounds 10]        # the HTTP benchmark's load

Two apps are built with the same settings: the service as ``create_app``
builds it, and the same parts without ``request_log``, ``metrics`` and
``cors`` (so its chain is unwrapped). Both answer the same 28x28 PNG of a
held-out digit.

In process, through Flask's test client, one request each in turn (so a busy
neighbour on a shared machine slows both alike), each request is timed by the
wall clock and by the process's CPU time (less disturbed by neighbours); the
medians and trimmed means are compared. The metrics are kept in
prometheus_client's multiprocess mode, as under gunicorn, and the request log
lines go to /dev/null line by line, so their formatting and writing are
counted.

Over HTTP, each app runs under gunicorn with the shipped gunicorn.conf.py and
one worker (metrics in prometheus_client's multiprocess mode, log lines to a
file), and takes its requests in rounds, in turn with the other, over one
kept-alive connection; the cost is the difference in the worker's CPU time per
request (from /proc), the figure a busy neighbour disturbs least.

With ``--wrk``, the load of the HTTP benchmark (``make bench``): each app runs
as shipped (gunicorn.conf.py, its default workers) and wrk drives it at c=8
for a few seconds a round, in turn with the other (the order swapped every
second round); the cost is what the layer takes from the requests answered a
second and adds to the workers' CPU time per request, as the difference of the
medians and the median of the rounds' ratios.
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# In process too, the metrics are kept as under gunicorn: prometheus_client's multiprocess
# mode, chosen when it is first imported. Each gunicorn server below gets its own folder.
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_metrics_folder = tempfile.TemporaryDirectory(prefix="bench-ops-metrics-")
os.environ[METRICS_ENV] = _metrics_folder.name

from httpbench.images import Upload  # noqa: E402
from httpbench.load import measure as wrk_point  # noqa: E402
from httpbench.load import warm_up  # noqa: E402
from httpbench.servers import free_port, group_members  # noqa: E402

import folder_paths  # noqa: E402
from app import create_app  # noqa: E402
from web import (  # noqa: E402
    admin,
    api,
    auth,
    config,
    errors,
    headers,
    inference,
    limits,
    page,
    probes,
)
from web.uploads import InMemoryRequest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SETTINGS = {"DEVICE": "cpu", "TORCH_THREADS": 1}
BOUNDARY = "bench-ops"


def bare_app(settings: dict | None = None):
    """The service without its operations layer: no metrics, request log or CORS."""
    from flask import Flask

    app = Flask("app", template_folder=folder_paths.get_folder("templates"),
                static_folder=folder_paths.get_folder("static"))
    app.request_class = InMemoryRequest
    config.init_app(app, settings)
    errors.init_app(app)
    headers.init_app(app)
    auth.init_app(app)
    limits.init_app(app)
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


# What request_ms measures, in the order of its pair.
CLOCKS = ("wall-clock", "CPU")


def clock_summary(times: dict[str, list[tuple[float, float]]],
                  column: int) -> dict[str, tuple[float, float]]:
    """Per name, the median and trimmed mean of one clock (``CLOCKS[column]``) of its
    requests' (wall-clock, CPU) pairs."""
    summary = {}
    for name, pairs in times.items():
        values = [pair[column] for pair in pairs]
        summary[name] = statistics.median(values), trimmed_mean(values)
    return summary


def in_process(requests: int) -> None:
    # line-buffered, as stderr is: one write for each request's log line
    devnull = open("/dev/null", "w", buffering=1)
    real_stderr, sys.stderr = sys.stderr, devnull
    try:
        apps = {"without": bare_app(SETTINGS).test_client(),
                "with": create_app(SETTINGS).test_client()}
        png = digit_png()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in apps}
        for index in range(requests + 100):
            for name, client in apps.items():
                elapsed = request_ms(client, png)
                if index >= 100:  # the first hundred warm both up
                    times[name].append(elapsed)
    finally:
        sys.stderr = real_stderr
        devnull.close()

    served = served_request_cpu(requests)
    print(f"in process: {requests} requests per app, taken in turn; ms per request")
    for column, clock in enumerate(CLOCKS):
        summary = clock_summary(times, column)
        for name, (median, trimmed) in summary.items():
            print(f"  {clock:10} {name:7} operations layer: median {median:.3f},"
                  f" trimmed mean {trimmed:.3f}")
        for index, measure in enumerate(("median", "trimmed mean")):
            without, with_ = summary["without"][index], summary["with"][index]
            print(f"  {clock:10} cost ({measure}): {with_ - without:+.3f} ms per request, "
                  f"{(with_ / without - 1) * 100:+.1f}% in process, "
                  f"{(with_ - without) / served * 100:+.1f}% of a served request")
    print(f"  a served request: {served:.3f} ms of a gunicorn worker's CPU (the service as "
          f"shipped, one worker, over HTTP, median of {SERVED_ROUNDS} rounds)")


@contextmanager
def gunicorn_server(app_spec: str, log: Path, workers: int | None = 1
                    ) -> Iterator[tuple[http.client.HTTPConnection, list[int], int]]:
    """``app_spec`` under gunicorn (``workers=None``: as many as gunicorn.conf.py gives): a
    kept-alive connection to it, its workers' pids and its port."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != METRICS_ENV}
    if workers:
        env["DIGITS_WORKERS"] = str(workers)
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", str(REPO / "gunicorn.conf.py"),
             "--chdir", str(REPO), "--pythonpath", str(REPO / "benchmarks"),
             "--bind", f"127.0.0.1:{port}", app_spec],
            env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 120
        while True:
            try:
                connection.request("GET", "/healthz")
                connection.getresponse().read()
                break
            except OSError:
                connection.close()
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit(f"{app_spec} did not start; see {log}") from None
                time.sleep(0.2)
        yield connection, [pid for pid in group_members(server.pid) if pid != server.pid], port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


SERVED_ROUNDS = 10


def served_request_cpu(requests: int) -> float:
    """What a request costs the service's worker over HTTP: its CPU ms per request (median
    of the rounds), with HTTP parsing and answering, which the in-process figures lack."""
    body = multipart_body(digit_png())
    per_round = max(1, requests // SERVED_ROUNDS)
    cpu = []
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as folder, \
            gunicorn_server("app:create_app()", Path(folder, "with.log")) \
            as (connection, (pid,), _port):
        for _ in range(100):  # warm-up
            post_digit(connection, body)
        for _ in range(SERVED_ROUNDS):
            cpu_started = cpu_seconds(pid)
            for _ in range(per_round):
                post_digit(connection, body)
            cpu.append((cpu_seconds(pid) - cpu_started) / per_round * 1e3)
    return statistics.median(cpu)


def multipart_body(png: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"digit.png\"\r\nContent-Type: image/png\r\n\r\n").encode() + png \
        + f"\r\n--{BOUNDARY}--\r\n".encode()


def post_digit(connection: http.client.HTTPConnection, body: bytes) -> None:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    try:
        connection.request("POST", "/predict", body=body, headers=headers)
    except OSError:  # the server closed the connection while the other server had its turn
        connection.close()
        connection.request("POST", "/predict", body=body, headers=headers)
    answer = connection.getresponse()
    text = answer.read()
    assert answer.status == 200, text


def cpu_seconds(pid: int) -> float:
    """CPU time of a process so far, all its threads, in nanoseconds' resolution (schedstat)."""
    return sum(int((task / "schedstat").read_text().split()[0])
               for task in Path(f"/proc/{pid}/task").iterdir()) / 1e9


def in_turn(servers: dict, round_: int) -> list:
    """The servers' items, the other way round every second round: a machine that slows
    down (or speeds up) within a round then favours neither."""
    items = list(servers.items())
    return items if round_ % 2 == 0 else items[::-1]


@contextmanager
def both_servers(workers: int | None) -> Iterator[dict[str, tuple[http.client.HTTPConnection,
                                                                  list[int], int]]]:
    """The service without and with its operations layer under gunicorn, at once."""
    with tempfile.TemporaryDirectory(prefix="bench-ops-") as folder, \
            gunicorn_server("bench_ops:bare_app()", Path(folder, "without.log"),
                            workers) as without, \
            gunicorn_server("app:create_app()", Path(folder, "with.log"), workers) as with_:
        yield {"without": without, "with": with_}


def over_http(requests: int, rounds: int = 20) -> None:
    body = multipart_body(digit_png())
    per_round = max(1, requests // rounds)
    cpu: dict[str, list[float]] = {"without": [], "with": []}
    wall: dict[str, list[float]] = {"without": [], "with": []}
    with both_servers(workers=1) as servers:
        for connection, _pids, _port in servers.values():
            for _ in range(100):  # warm-up
                post_digit(connection, body)
        for round_ in range(rounds):
            for name, (connection, (pid,), _port) in in_turn(servers, round_):
                cpu_started, started = cpu_seconds(pid), time.perf_counter()
                for _ in range(per_round):
                    post_digit(connection, body)
                wall[name].append((time.perf_counter() - started) / per_round * 1e3)
                cpu[name].append((cpu_seconds(pid) - cpu_started) / per_round * 1e3)
    print(f"over HTTP (gunicorn, 1 worker, gunicorn.conf.py): {per_round * rounds} requests "
          f"per app, in {rounds} rounds taken in turn; ms per request, median of the rounds")
    for name in servers:
        print(f"  {name:7} operations layer: worker CPU {statistics.median(cpu[name]):.3f}, "
              f"wall-clock at c=1 {statistics.median(wall[name]):.3f}")
    print_cost("worker CPU, ms per request", cpu)
    print_cost("wall-clock, ms per request", wall)


def under_wrk(rounds: int, seconds: float, concurrency: int = 8) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-ops-upload-") as folder:
        upload = Upload("28x28 PNG", Path(folder, "digit.png"), "image/png", "a held-out digit")
        upload.path.write_bytes(digit_png())
        rates: dict[str, list[float]] = {"without": [], "with": []}
        cpu: dict[str, list[float]] = {"without": [], "with": []}
        with both_servers(workers=None) as servers:
            for _connection, _pids, port in servers.values():
                warm_up(f"http://127.0.0.1:{port}/predict", upload, 2)
            for round_ in range(rounds):
                for name, (_connection, pids, port) in in_turn(servers, round_):
                    cpu_started = sum(cpu_seconds(pid) for pid in pids)
                    point = wrk_point(name, f"http://127.0.0.1:{port}/predict", upload,
                                    concurrency, seconds)
                    if point.errors:
                        raise SystemExit(f"{name}: {point.errors} errors under wrk")
                    rates[name].append(point.requests_per_second)
                    cpu[name].append((sum(cpu_seconds(pid) for pid in pids) - cpu_started)
                                     / point.requests * 1e3)
    print(f"under wrk (gunicorn as shipped, {len(pids)} workers; c={concurrency}, "
          f"{seconds:g} s a round, {rounds} rounds taken in turn)")
    for name in rates:
        print(f"  {name:7} operations layer: median {statistics.median(rates[name]):,.0f} req/s,"
              f" workers' CPU {statistics.median(cpu[name]):.3f} ms per request")
    print_cost("req/s", rates)
    print_cost("CPU, ms per request", cpu)


def print_cost(label: str, figures: dict[str, list[float]]) -> None:
    """With against without: the difference of the medians, and the median of the rounds'
    ratios (each round's pair ran back to back: their ratio is the least disturbed)."""
    ratios = [with_ / without for with_, without in zip(figures["with"], figures["without"],
                                                         strict=True)]
    difference = statistics.median(figures["with"]) - statistics.median(figures["without"])
    print(f"  {label}: with against without {difference:+,.3f} (medians); median of the "
          f"rounds' ratios {(statistics.median(ratios) - 1) * 100:+.1f}%")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per app")
    parser.add_argument("--http", action="store_true",
                        help="measure over HTTP under gunicorn instead of in process")
    parser.add_argument("--wrk", action="store_true",
                        help="measure under wrk at c=8, gunicorn as shipped")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of wrk per app")
    parser.add_argument("--seconds", type=float, default=3, help="seconds of wrk a round")
    args = parser.parse_args(argv)
    if args.wrk:
        under_wrk(args.rounds, args.seconds)
    elif args.http:
        over_http(args.requests)
    else:
        in_process(args.requests)


if __name__ == "__main__":
    main()
