"""The service's in-process limits, measured by its own benchmark scripts run as subprocesses.

They run under the service's interpreter from the repository root, so they
import the service however its modules are laid out; their output is kept as
printed.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .images import Upload


@dataclass
class ScriptRun:
    """One benchmark script's run."""

    title: str
    command: list[str]
    returncode: int
    output: str

    def as_dict(self) -> dict:
        """A JSON-ready copy."""
        return asdict(self)


def run_script(title: str, command: list[str], repo: Path, timeout_s: float) -> ScriptRun:
    """Run one script in ``repo``, keeping what it printed (or why it did not finish)."""
    try:
        done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as expired:
        printed = (expired.stdout or b"").decode(errors="replace") if isinstance(
            expired.stdout, bytes) else (expired.stdout or "")
        return ScriptRun(title, command, -1, f"{printed}\n(stopped after {timeout_s:.0f} s)")
    output = done.stdout.strip()
    if done.returncode != 0:
        output += "\n" + "\n".join(done.stderr.strip().splitlines()[-20:])
    return ScriptRun(title, command, done.returncode, output.strip())


def backend_limits(service_python: str, repo: Path, quick: bool) -> ScriptRun:
    """bench_backends.py with one thread (a worker's share on 2 cores): images/s at batch 1, 64."""
    command = [service_python, "benchmarks/bench_backends.py", "--threads", "1",
               "--batch-size", "64"]
    if quick:
        command += ["--backends", "eager", "onnx", "torchscript", "--rounds", "1",
                    "--single-calls", "100", "--batch-calls", "5"]
    return run_script("network images/s per backend (bench_backends.py, 1 thread)", command, repo,
                      timeout_s=900)


def preprocess_limits(service_python: str, repo: Path, uploads: list[Upload],
                      quick: bool) -> ScriptRun:
    """preprocess_steps.py on the three uploads: each preprocessing step's time per image kind."""
    command = [service_python, "benchmarks/preprocess_steps.py",
               *(str(upload.path) for upload in uploads), "--runs", "10" if quick else "30"]
    return run_script("preprocessing steps per image kind (preprocess_steps.py)", command, repo,
                      timeout_s=600)
