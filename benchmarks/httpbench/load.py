"""Drive a server with wrk for a bounded time and read back the Lua script's JSON summary."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .images import Upload

LUA_SCRIPT = Path(__file__).resolve().parent / "post_file.lua"


@dataclass
class Point:
    """One measured point: a system, an upload, a concurrency."""

    system: str
    image: str
    concurrency: int
    seconds: float
    requests: int
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    non_2xx: int
    socket_errors: int

    @property
    def errors(self) -> int:
        """Non-2xx answers plus connect, read, write and timeout errors."""
        return self.non_2xx + self.socket_errors

    def as_dict(self) -> dict:
        """A JSON-ready copy, errors included."""
        return {**asdict(self), "errors": self.errors}


def wrk_path() -> str:
    """The wrk executable, or an error saying how to install it."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    return found


def wrk_threads(concurrency: int) -> int:
    """wrk threads for a concurrency: one for a single connection, else two (the core count)."""
    return 1 if concurrency == 1 else 2


def run_wrk(url: str, upload: Upload, concurrency: int, seconds: float,
            timeout_s: float = 10.0, parts: int = 1) -> dict:
    """Run wrk once and return the JSON line its ``done()`` hook printed.

    ``parts`` sends the upload that many times as ``file`` parts of each request.
    """
    command = [wrk_path(), f"-t{wrk_threads(concurrency)}", f"-c{concurrency}",
               f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s:g}s", "-s", str(LUA_SCRIPT),
               url, "--", str(upload.path), upload.content_type, str(parts)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"wrk gave no summary (exit {done.returncode}): "
                       f"{done.stdout[-500:]} {done.stderr[-500:]}")


def measure(system: str, url: str, upload: Upload, concurrency: int, seconds: float,
            parts: int = 1) -> Point:
    """One point: wrk at ``concurrency`` connections for ``seconds``, ``parts`` images a request."""
    raw = run_wrk(url, upload, concurrency, seconds, parts=parts)
    duration = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    image = upload.kind if parts == 1 else f"{upload.kind}x{parts}"
    return Point(system=system, image=image, concurrency=concurrency,
                 seconds=round(duration, 2), requests=raw["requests"],
                 requests_per_second=round(raw["requests"] / duration, 1) if duration else 0.0,
                 p50_ms=raw["p50_us"] / 1e3, p90_ms=raw["p90_us"] / 1e3,
                 p99_ms=raw["p99_us"] / 1e3, mean_ms=round(raw["mean_us"] / 1e3, 3),
                 non_2xx=raw["non_2xx"], socket_errors=socket_errors)


def warm_up(url: str, upload: Upload, seconds: float, concurrency: int = 8,
            parts: int = 1) -> None:
    """A short unrecorded run so that lazy imports, caches and JIT warm-up are out of the way."""
    run_wrk(url, upload, concurrency, seconds, parts=parts)
