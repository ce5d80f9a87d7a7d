"""Fault drills against the service under gunicorn on 127.0.0.1 (``make faults``).

One server (its gunicorn.conf.py, two workers) goes through, in order, each
drill bounded in time, and a report line is printed for each:

    steady      wrk at c=64 for --steady-seconds (60) after 5 s of it: errors must be zero;
                each worker's RSS at the end and its growth over the run
    stalled     50 stalled connections held open while /health and /predict are timed
    heavy       4 clients posting heavy uploads while small ones are timed (their p99)
    reload      POST /admin/reload (from loopback) under load: failed requests
    kill        one worker SIGKILLed under load: failed requests, seconds until capacity is back
    hostile     10,000 hostile uploads: a worker's peak and resident memory before and after
    sigterm     SIGTERM to the master under load: every accepted request answered

    python benchmarks/faults.py                       # everything, about 4 minutes
    python benchmarks/faults.py --only stalled heavy  # some drills
    python benchmarks/faults.py --project DIR         # another checkout's service, same drills

Everything binds and connects to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpbench.images import Upload, load_digit, mnist_png  # noqa: E402
from httpbench.load import run_wrk  # noqa: E402
from httpbench.servers import free_port, group_members, process_memory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "heldout_digits.npz"
DRILLS = ("steady", "stalled", "heavy", "reload", "kill", "hostile", "sigterm")
# wrk at c=64 before the steady drill measures, so its memory growth is what stays.
STEADY_WARM_UP_SECONDS = 5.0
BOUNDARY = "faults-drill"


def multipart(data: bytes, filename: str = "upload.png") -> bytes:
    """``data`` as the multipart body of the ``file`` field."""
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n')
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


@dataclass
class Outcome:
    """One request: when it ended, how long it took, its status (0: no answer), the error."""

    ended: float
    seconds: float
    status: int
    error: str = ""


@dataclass
class Load:
    """Clients posting bodies in a loop, each on its own connection, until stopped."""

    port: int
    bodies: list[bytes]
    clients: int
    path: str = "/predict"
    fresh_connections: bool = False  # a new connection per request (Connection: close)
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True)
                         for i in range(self.clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _client(self, index: int) -> None:
        connection = None
        count = 0
        while not self._stop.is_set():
            body = self.bodies[(index + count * self.clients) % len(self.bodies)]
            count += 1
            started = time.monotonic()
            try:
                if connection is None:
                    connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                headers = {"Content-Type": CONTENT_TYPE}
                if self.fresh_connections:
                    headers["Connection"] = "close"
                connection.request("POST", self.path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                outcome = Outcome(time.monotonic(), time.monotonic() - started, response.status)
                if self.fresh_connections or response.will_close:
                    connection.close()
                    connection = None
            except (OSError, http.client.HTTPException) as error:
                outcome = Outcome(time.monotonic(), time.monotonic() - started, 0,
                                  type(error).__name__)
                if connection is not None:
                    connection.close()
                connection = None
                time.sleep(0.01)
            with self._lock:
                self.outcomes.append(outcome)
        if connection is not None:
            connection.close()

    def failed(self, since: float = 0.0) -> list[Outcome]:
        """Requests ended after ``since`` that got no 2xx or 4xx answer."""
        return [o for o in self.outcomes if o.ended >= since and not 200 <= o.status < 500]


class Service:
    """The project's service under gunicorn, its own gunicorn.conf.py, on a free port."""

    def __init__(self, project: Path, workers: int, log: Path) -> None:
        self.project = project
        self.port = free_port()
        self.workers = workers
        python = project / ".venv" / "bin" / "python"
        env = {**os.environ, "DIGITS_WORKERS": str(workers)}
        with log.open("wb") as sink:
            self.process = subprocess.Popen(
                [str(python if python.exists() else sys.executable), "-m", "gunicorn",
                 "--config", str(project / "gunicorn.conf.py"), "--chdir", str(project),
                 "--bind", f"127.0.0.1:{self.port}", "--access-logfile", "/dev/null",
                 "app:create_app()"],
                cwd=project, env=env, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> list[int]:
        return [pid for pid in group_members(self.process.pid) if pid != self.process.pid
                and b"gunicorn" in Path(f"/proc/{pid}/cmdline").read_bytes()]

    def get(self, path: str, timeout: float = 5.0) -> int:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def post(self, path: str, body: bytes | None = None, timeout: float = 30.0) -> int:
        request = urllib.request.Request(self.url + path, data=body or b"", method="POST",
                                         headers={"Content-Type": CONTENT_TYPE} if body else {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                answer.read()
                return answer.status
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def wait_ready(self, body: bytes, limit: float = 120.0) -> float:
        """Seconds until every worker is up and a prediction is answered."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if self.process.poll() is not None:
                raise SystemExit(f"gunicorn exited with {self.process.returncode}")
            if (self.get("/health", 2) == 200 and len(self.worker_pids()) == self.workers
                    and self.post("/predict", body) == 200):
                # each worker loads its model after the fork: ask them all
                with Load(self.port, [body], self.workers * 2) as load:
                    time.sleep(1.0)
                if not load.failed():
                    return time.monotonic() - started
            time.sleep(0.2)
        raise SystemExit(f"the service was not ready within {limit:.0f} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def heavy_upload() -> bytes:
    """A 16-bit grayscale PNG of 5,700x5,700 pixels (65 MB decoded), a stroke on paper."""
    page = Image.new("L", (5700, 5700), 230)
    ImageDraw.Draw(page).line([(2500, 1700), (3100, 4000)], fill=20, width=90)
    wide = Image.fromarray(np.asarray(page).astype(np.uint16) * 257)
    buffer = io.BytesIO()
    wide.save(buffer, "PNG")
    return buffer.getvalue()


def tile_bomb() -> bytes:
    """A 146-byte TIFF of 64x64 pixels whose one tile is declared 32768x32768."""
    payload = zlib.compress(b"\0" * 64)
    entries = [(256, 4, 64), (257, 4, 64), (258, 3, 8), (259, 3, 8), (262, 3, 1),
               (277, 3, 1), (322, 4, 32768), (323, 4, 32768), (324, 4, 134),
               (325, 4, len(payload))]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        ifd += struct.pack("<HHIHH" if kind == 3 else "<HHII", tag, kind, 1,
                           *((value, 0) if kind == 3 else (value,)))
    return b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + payload


def hostile_uploads(small: bytes) -> list[bytes]:
    """Uploads a careless or hostile client sends: bombs, strips, NaN, junk, truncations."""
    nan = np.zeros((64, 64), np.float32)
    nan[10, 10] = np.nan
    buffer = io.BytesIO()
    Image.fromarray(nan, mode="F").save(buffer, "TIFF")
    strip = io.BytesIO()
    Image.new("L", (65_000, 1), 255).save(strip, "PNG")
    random = np.random.default_rng(0)
    files = [tile_bomb(), buffer.getvalue(), strip.getvalue(), small[: len(small) // 2],
             b"%!PS-Adobe-3.0 EPSF-3.0\n", random.bytes(2000), b""]
    bodies = [multipart(data) for data in files]
    bodies.append(b"--" + BOUNDARY.encode() + b"\r\nbroken")  # a multipart body cut short
    return bodies


def drill_steady(service: Service, upload: Upload, seconds: float,
                 warm_up: float = STEADY_WARM_UP_SECONDS) -> str:
    """wrk at c=64 for ``seconds`` after ``warm_up`` seconds of it: errors, and each worker's
    resident memory at the end and its growth since the warm-up."""
    run_wrk(f"{service.url}/predict", upload, 64, warm_up)
    pids = service.worker_pids()
    before = {pid: process_memory(pid)[0] for pid in pids}
    raw = run_wrk(f"{service.url}/predict", upload, 64, seconds)
    errors = raw["non_2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    rate = raw["requests"] / (raw["duration_us"] / 1e6)
    after = {pid: process_memory(pid)[0] for pid in pids if Path(f"/proc/{pid}").exists()}
    memory = ", ".join(f"worker {pid} RSS {rss / 1024:.0f} MiB "
                       f"({(rss - before[pid]) / before[pid]:+.1%})" for pid, rss in after.items())
    return (f"steady: {seconds:.0f} s at c=64: {raw['requests']} requests, {rate:.0f} req/s, "
            f"p99 {raw['p99_us'] / 1e3:.0f} ms, errors {errors}; {memory}")


def stalled_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` connections stopped half-way, half in their headers, half in their body."""
    stalled = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        if index % 2:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                         + CONTENT_TYPE.encode() + b"\r\nContent-Length: 100000\r\n\r\n--")
        else:
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-")
        stalled.append(sock)
    return stalled


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither answered nor closed this connection."""
    sock.setblocking(False)
    try:
        return not sock.recv(1)  # b"" is a close; bytes are an answer
    except BlockingIOError:
        return True
    except OSError:
        return False


def drill_stalled(service: Service, small: bytes, seconds: float = 8.0) -> str:
    """Normal requests timed while 50 stalled connections are open (within the body deadline)."""
    stalled = stalled_connections(service.port, 50)
    time.sleep(1.0)
    health, predict, failures = [], [], 0
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            started = time.monotonic()
            failures += service.get("/health", 5) != 200
            health.append(time.monotonic() - started)
            started = time.monotonic()
            failures += service.post("/predict", multipart(small), 5) != 200
            predict.append(time.monotonic() - started)
            time.sleep(0.2)
        open_after = sum(still_open(sock) for sock in stalled)
    finally:
        for sock in stalled:
            sock.close()
    return (f"stalled: 50 stalled connections, {open_after} still open after {seconds + 1:.0f} s: "
            f"/health worst {max(health) * 1e3:.0f} ms, /predict worst {max(predict) * 1e3:.0f} ms "
            f"(p50 {statistics.median(predict) * 1e3:.0f} ms) over {len(predict)} tries, "
            f"failed {failures}")


def drill_heavy(service: Service, small: bytes) -> str:
    heavy = multipart(heavy_upload(), "wide16.png")
    results = {}
    for label, clients in (("alone", 0), ("beside 4 heavy uploads", 4)):
        with Load(service.port, [heavy], clients) if clients else _nothing() as load:
            time.sleep(1.0 if clients else 0.0)
            times, deadline = [], time.monotonic() + 15
            while time.monotonic() < deadline:
                started = time.monotonic()
                service.post("/predict", multipart(small), 30)
                times.append(time.monotonic() - started)
        answered = [o for o in load.outcomes if o.status] if clients else []
        heavy_note = ""
        if clients:
            codes = sorted({o.status for o in answered})
            heavy_note = (f"; heavy ones {len(answered)} answered {codes}, median "
                          f"{statistics.median(o.seconds for o in answered) * 1e3:.0f} ms"
                          if answered else "; no heavy one answered")
        results[label] = (f"p50 {statistics.median(times) * 1e3:.0f} ms, p99 "
                          f"{percentile(times, 0.99) * 1e3:.0f} ms over {len(times)}{heavy_note}")
    return "heavy: small requests " + "; ".join(f"{k}: {v}" for k, v in results.items())


class _nothing:
    outcomes: list[Outcome] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def drill_reload(service: Service, small: bytes) -> str:
    with Load(service.port, [multipart(small)], 8) as load:
        time.sleep(2.0)
        started = time.monotonic()
        status = service.post("/admin/reload", None, 60)
        reloaded_in = time.monotonic() - started
        time.sleep(3.0)
    failed = load.failed()
    return (f"reload: POST /admin/reload under load at c=8 answered {status} in "
            f"{reloaded_in:.1f} s; {len(load.outcomes)} requests, failed {len(failed)}")


def loaded_at(service: Service) -> datetime | None:
    """When the worker that answers ``GET /model`` loaded its model (each worker has its own)."""
    try:
        with urllib.request.urlopen(service.url + "/model", timeout=5) as answer:
            return datetime.fromisoformat(json.loads(answer.read())["loaded_at"])
    except (OSError, ValueError, KeyError):
        return None


def drill_kill(service: Service, small: bytes) -> str:
    clients = 8
    with Load(service.port, [multipart(small)], clients) as load:
        time.sleep(3.0)
        rate = len([o for o in load.outcomes
                    if o.status == 200 and o.ended > time.monotonic() - 2]) / 2
        victim = service.worker_pids()[0]
        killed, killed_at = time.monotonic(), datetime.now(UTC)
        os.kill(victim, signal.SIGKILL)
        back = None
        while time.monotonic() - killed < 60:
            # capacity is back once the replacement worker answers requests itself
            answered_at = loaded_at(service)
            if answered_at is not None and answered_at > killed_at:
                back = time.monotonic() - killed
                break
            time.sleep(0.1)
        time.sleep(1.0)
    failed = load.failed(since=killed)
    if back is None:
        return f"kill: no replacement worker answered within 60 s; failed {len(failed)}"
    return (f"kill: SIGKILL of worker {victim} under load at c={clients} ({rate:.0f} req/s "
            f"before): failed {len(failed)} (at most {clients} were in flight); the new worker "
            f"answered after {back:.1f} s")


def drill_hostile(service: Service, small: bytes, count: int) -> str:
    # warm up every worker with normal and hostile work first, so growth is what stays
    bodies = hostile_uploads(small)
    with Load(service.port, bodies + [multipart(small)], 4) as load:
        while len(load.outcomes) < 500:
            time.sleep(0.2)
    pids = service.worker_pids()
    before = {pid: process_memory(pid) for pid in pids}
    started = time.monotonic()
    with Load(service.port, bodies, 8) as load:
        while len(load.outcomes) < count and time.monotonic() - started < 300:
            time.sleep(0.2)
    after = {pid: process_memory(pid) for pid in pids if Path(f"/proc/{pid}").exists()}
    statuses = sorted({o.status for o in load.outcomes})
    lines = []
    for pid in pids:
        if pid not in after:
            lines.append(f"worker {pid} is gone")
            continue
        (rss0, peak0), (rss1, peak1) = before[pid], after[pid]
        lines.append(f"worker {pid} RSS {rss0 / 1024:.0f} -> {rss1 / 1024:.0f} MiB "
                     f"({(rss1 - rss0) / rss0:+.1%}), peak {peak0 / 1024:.0f} -> "
                     f"{peak1 / 1024:.0f} MiB ({(peak1 - peak0) / peak0:+.1%})")
    return (f"hostile: {len(load.outcomes)} hostile uploads in {time.monotonic() - started:.0f} s,"
            f" answers {statuses}, 5xx or none {len(load.failed())}; " + "; ".join(lines))


def drill_sigterm(service: Service, small: bytes) -> str:
    with Load(service.port, [multipart(small)], 8, fresh_connections=True) as load:
        time.sleep(3.0)
        signalled = time.monotonic()
        os.kill(service.process.pid, signal.SIGTERM)
        service.process.wait(timeout=60)
        stopped = time.monotonic()
        time.sleep(0.5)
    after = [o for o in load.outcomes if o.ended >= signalled]
    answered = [o for o in after if o.status]
    refused = [o for o in after if o.error == "ConnectionRefusedError"]
    unanswered = [o for o in after if not o.status and o.error != "ConnectionRefusedError"]
    kinds = sorted({o.error for o in unanswered})
    in_flight = [o for o in after if o.ended - o.seconds < signalled]
    lost_in_flight = [o for o in in_flight if not o.status]
    return (f"sigterm: SIGTERM under load at c=8: stopped in {stopped - signalled:.1f} s; "
            f"{len(in_flight) - len(lost_in_flight)} of {len(in_flight)} requests in flight "
            f"answered; sent after the signal: {len(answered)} answered "
            f"({sorted({o.status for o in answered})}), "
            f"{len(refused)} refused, {len(unanswered) - len(lost_in_flight)} reset by the closing"
            f" listener" + (f" ({', '.join(kinds)})" if kinds else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=DRILLS, default=list(DRILLS))
    parser.add_argument("--project", type=Path, default=REPO,
                        help="the checkout whose service is drilled (default: this one)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", help="DIGITS_WORKER_CLASS for the server")
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--hostile-count", type=int, default=10_000)
    args = parser.parse_args(argv)

    small = mnist_png(load_digit(FIXTURE))
    with tempfile.TemporaryDirectory(prefix="digits-faults-") as folder:
        upload_path = Path(folder) / "digit28.png"
        upload_path.write_bytes(small)
        upload = Upload("mnist28", upload_path, "image/png", "28x28 grayscale PNG")
        log = Path(folder) / "server.log"
        if args.worker_class:
            os.environ["DIGITS_WORKER_CLASS"] = args.worker_class
        service = Service(args.project.resolve(), args.workers, log)
        try:
            print(f"service: {args.project.resolve()} ready in "
                  f"{service.wait_ready(multipart(small)):.1f} s with {args.workers} "
                  f"{os.environ.get('DIGITS_WORKER_CLASS', 'default (gunicorn.conf.py)')} "
                  "workers", flush=True)
            for drill in args.only:
                if drill == "steady":
                    line = drill_steady(service, upload, args.steady_seconds)
                elif drill == "stalled":
                    line = drill_stalled(service, small)
                elif drill == "heavy":
                    line = drill_heavy(service, small)
                elif drill == "reload":
                    line = drill_reload(service, small)
                elif drill == "kill":
                    line = drill_kill(service, small)
                    service.wait_ready(multipart(small))
                elif drill == "hostile":
                    line = drill_hostile(service, small, args.hostile_count)
                else:
                    line = drill_sigterm(service, small)
                print(line, flush=True)
        finally:
            service.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
