"""The service at another git revision against this working tree, under wrk, taken in turn.

    python benchmarks/bench_versions.py --before HEAD~2
    make bench-versions BEFORE=HEAD~2 ARGS="--rounds 8 --images mnist28 canvas280 photo640"

The machine's speed drifts by up to 2x between runs, so a change is measured
against its baseline in one run: both servers run side by side (only the one
under load uses the CPU), and each round measures every image at each
concurrency on one and then on the other, the order alternating between
rounds. The revision is checked out with ``git worktree`` into a temporary
folder (removed afterwards) and served, like this tree, by this checkout's
virtual environment with its own gunicorn.conf.py. It prints the medians of
the rounds and the median of the rounds' after/before ratios of requests per
second.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from httpbench.images import write_uploads
from httpbench.load import Point, measure
from httpbench.servers import Server, service_system, start, stop, wait_ready

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "heldout_digits.npz"


@contextmanager
def checkout(revision: str) -> Iterator[Path]:
    """``revision`` checked out in a temporary git worktree."""
    with tempfile.TemporaryDirectory(prefix="bench-versions-") as folder:
        tree = Path(folder) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet",
                        str(tree), revision], check=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                           check=False)


@contextmanager
def serving(name: str, repo: Path, workdir: Path, probe) -> Iterator[Server]:
    """The service from ``repo`` under gunicorn until the block ends."""
    system = service_system(sys.executable, repo)
    system.name = name
    server = start(system, workdir / name)
    try:
        wait_ready(server, probe)
        yield server
    finally:
        stop(server)


def ratio_line(image: str, concurrency: int, before: list[Point], after: list[Point]) -> str:
    """Medians of the rounds for both, and the median of the rounds' req/s ratios."""

    def medians(points: list[Point]) -> str:
        return (f"{statistics.median(p.requests_per_second for p in points):8.1f} req/s, "
                f"p50 {statistics.median(p.p50_ms for p in points):6.2f}, "
                f"p99 {statistics.median(p.p99_ms for p in points):6.2f} ms")

    ratio = statistics.median(a.requests_per_second / b.requests_per_second
                              for b, a in zip(before, after, strict=True))
    errors = sum(p.errors for p in before + after)
    return (f"{image:10s} c={concurrency:<3d} before {medians(before)} | after {medians(after)}"
            f" | after/before {ratio:.3f}" + (f" | {errors} errors" if errors else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the git revision to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3.0, help="wrk's time at each point")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--images", nargs="+", default=["mnist28", "canvas280"],
                        choices=["mnist28", "canvas280", "photo640"])
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-versions-") as folder, ExitStack() as stack:
        workdir = Path(folder)
        uploads = [u for u in write_uploads(FIXTURE, workdir) if u.kind in args.images]
        tree = stack.enter_context(checkout(args.before))
        servers = {"before": stack.enter_context(serving("before", tree, workdir, uploads[0])),
                   "after": stack.enter_context(serving("after", ROOT, workdir, uploads[0]))}
        for server in servers.values():  # warm-up: every image once at the highest concurrency
            for upload in uploads:
                measure(server.system.name, server.predict_url, upload,
                        max(args.concurrency), 1.0)
        points: dict[tuple[str, int, str], list[Point]] = {}
        for round_ in range(args.rounds):
            order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
            for name in order:
                for upload in uploads:
                    for concurrency in args.concurrency:
                        point = measure(name, servers[name].predict_url, upload, concurrency,
                                        args.seconds)
                        points.setdefault((upload.kind, concurrency, name), []).append(point)
        print(f"{args.before} (before) against this tree (after), rounds: {args.rounds}, "
              f"{args.seconds:g} s a point, medians of the rounds")
        for upload in uploads:
            for concurrency in args.concurrency:
                print(ratio_line(upload.kind, concurrency,
                                 points[(upload.kind, concurrency, "before")],
                                 points[(upload.kind, concurrency, "after")]))


if __name__ == "__main__":
    main()
