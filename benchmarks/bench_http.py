"""Benchmark the digit service over HTTP against plain, floor, TorchServe and LitServe peers.

    python benchmarks/bench_http.py [--quick] [--seconds 15] [--systems service plain ...]
    make bench BENCH_ARGS=--quick

Each system is started on 127.0.0.1 on a free port, one at a time, and driven
by wrk in a separate process (a Lua script posts the image as the multipart
field ``file``) at each concurrency for a bounded time, with three images: a
28x28 MNIST PNG, a 280x280 RGBA canvas PNG and a 640x480 phone-photo JPEG.
Then the service's in-process limits are measured by its own benchmark scripts.
Prints the tables and writes benchmarks/results/latest.json, latest.md and http.png.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from httpbench import inprocess, load, report, servers
from httpbench.images import Upload, write_uploads

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
FIXTURE = REPO / "tests" / "fixtures" / "heldout_digits.npz"
SYSTEMS = ("service", "plain", "floor", "torchserve", "litserve")
# Several images in one request are measured for the service at this concurrency.
BATCH_CONCURRENCY = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, help="seconds per point (default 15, quick 3)")
    parser.add_argument("--quick", action="store_true",
                        help="about 3 s per point and shorter in-process runs, to try it out")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 64])
    parser.add_argument("--batch-parts", type=int, default=64,
                        help="images in one request for the service's batch point (1: none)")
    parser.add_argument("--service-python", default=str(REPO / ".venv" / "bin" / "python"),
                        help="interpreter of the service's venv")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results",
                        help="folder for latest.json, latest.md and http.png")
    parser.add_argument("--no-inprocess", action="store_true",
                        help="skip the service's in-process benchmarks")
    parser.add_argument("--litserve-api-servers", type=int, default=2,
                        help="LitServe's uvicorn processes (2, its default of one per worker, "
                        "was the fastest here)")
    parser.add_argument("--litserve-fast-queue", action=argparse.BooleanOptionalAction,
                        default=True, help="LitServe's ZeroMQ queue between processes")
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 15.0
    return args


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine() -> dict:
    """What the figures were measured on."""
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    meminfo = Path("/proc/meminfo").read_text().split()
    memory_gib = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
    wrk = subprocess.run([load.wrk_path(), "-v"], capture_output=True, text=True)
    return {"nproc": int(nproc or os.cpu_count() or 0), "cpu_model": cpu_model(),
            "memory_gib": memory_gib, "python": platform.python_version(),
            "kernel": platform.release(),
            "wrk": (wrk.stdout + wrk.stderr).splitlines()[0].split(" Copyright")[0]}


def build_systems(args: argparse.Namespace) -> list[servers.System]:
    """The chosen systems, in the order they run."""
    bench_python = os.path.abspath(sys.executable)
    made = {
        "service": servers.service_system(args.service_python, REPO),
        "plain": servers.peer_gunicorn_system(
            "plain", "plain_app:app", bench_python,
            "Flask + gunicorn -w 2 (sync), convert('L').resize((28, 28)) + MNIST normalisation, "
            "classic network in eager torch under inference_mode, one torch thread per worker, "
            "access log off"),
        "floor": servers.peer_gunicorn_system(
            "floor", "floor_app:app", bench_python,
            "Flask + gunicorn -w 2 (sync), reads the upload, answers a constant JSON, "
            "access log off"),
        "torchserve": servers.torchserve_system(bench_python),
        "litserve": servers.litserve_system(bench_python, args.litserve_api_servers,
                                            args.litserve_fast_queue),
    }
    return [made[name] for name in SYSTEMS if name in args.systems]


def measures_batches(system: servers.System, args: argparse.Namespace) -> bool:
    """Whether requests of many images are measured for this system (the service alone)."""
    return (system.name == "service" and args.batch_parts > 1
            and BATCH_CONCURRENCY in args.concurrency)


def benchmark_system(system: servers.System, uploads: list[Upload], args: argparse.Namespace,
                     workdir: Path) -> tuple[dict, list[load.Point]]:
    """Start one system, measure every image at every concurrency, measure memory, stop it."""
    summary: dict = {"name": system.name, "tuning": system.tuning, "predict_path":
                     system.predict_path}
    points: list[load.Point] = []
    server = None
    try:
        started = time.monotonic()
        server = servers.start(system, workdir / system.name)
        servers.wait_ready(server, uploads[0])
        summary["startup_s"] = round(time.monotonic() - started, 1)
        summary["answers"] = servers.check_answers(server, uploads)
        summary["info"] = servers.server_info(server)
        if summary["info"]:
            print(f"[{system.name}] {system.info_path}: {summary['info'][:300]}", flush=True)
        print(f"[{system.name}] ready in {summary['startup_s']} s on port {server.port}; "
              + "; ".join(f"{kind}: {text[:60]}" for kind, text in summary["answers"].items()),
              flush=True)
        # Every image at the highest concurrency first (and the service's requests of many
        # images): the memory a server takes to answer them all at once is then in place,
        # and "RSS growth" is what the run adds to it.
        for upload in uploads:
            load.warm_up(server.predict_url, upload, min(2.0, args.seconds),
                         max(args.concurrency))
        if measures_batches(system, args):
            load.warm_up(server.predict_url, uploads[0], min(2.0, args.seconds),
                         BATCH_CONCURRENCY, parts=args.batch_parts)
        summary["memory_start"] = servers.memory(server)
        for upload in uploads:
            for concurrency in args.concurrency:
                point = load.measure(system.name, server.predict_url, upload, concurrency,
                                     args.seconds)
                points.append(point)
                print(f"[{system.name}] {upload.kind:9s} c={concurrency:<3d} "
                      f"{point.requests_per_second:8.1f} req/s  p50 {point.p50_ms:7.2f} ms  "
                      f"p99 {point.p99_ms:7.2f} ms  errors {point.errors}", flush=True)
        if measures_batches(system, args):
            point = load.measure(system.name, server.predict_url, uploads[0], BATCH_CONCURRENCY,
                                 args.seconds, parts=args.batch_parts)
            points.append(point)
            single = next(p for p in points if p.image == uploads[0].kind
                          and p.concurrency == BATCH_CONCURRENCY)
            images = point.requests_per_second * args.batch_parts
            summary["batch"] = {"parts": args.batch_parts, "images_per_second": images,
                                "single_images_per_second": single.requests_per_second,
                                "ratio": images / max(single.requests_per_second, 1e-9)}
            print(f"[{system.name}] {args.batch_parts} x {uploads[0].kind} a request, "
                  f"c={BATCH_CONCURRENCY}: {images:,.0f} images/s against "
                  f"{single.requests_per_second:,.0f} single-image requests/s "
                  f"({summary['batch']['ratio']:.2f}x), errors {point.errors}", flush=True)
        summary["memory"] = servers.memory(server)
        summary["status"] = "ran"
    except servers.Skip as skip:
        summary.update(status="skipped", reason=str(skip))
        print(f"[{system.name}] SKIPPED: {skip}", flush=True)
    finally:
        if server is not None:
            servers.stop(server)
    return summary, points


def print_report(results: dict) -> None:
    """The tables on standard output."""
    points = [load.Point(**{k: v for k, v in p.items() if k != "errors"})
              for p in results["points"]]
    print(f"\n== HTTP benchmark {results['date']}: {report.machine_line(results['machine'])}, "
          f"{results['seconds_per_point']:g} s per point")
    for line in report.systems_lines(results["systems"]):
        print(line.replace("**", ""))
    print()
    print(report.text_table(report.POINT_HEADER, report.point_rows(points)))
    print(f"\n== {report.MEMORY_TITLE} (MiB)")
    print(report.text_table(report.MEMORY_HEADER, report.memory_rows(results["systems"])))
    for run in results["inprocess"]:
        print(f"\n== {run['title']} (exit {run['returncode']})\n{run['output']}")


def main(argv: list[str] | None = None) -> int:
    """Run everything, print the tables, write the results; 1 when no system ran."""
    args = parse_args(argv)
    load.wrk_path()
    results: dict = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "machine": machine(),
                     "seconds_per_point": args.seconds, "concurrency": args.concurrency,
                     "systems": [], "points": [], "inprocess": []}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as temp:
        workdir = Path(temp)
        uploads = write_uploads(FIXTURE, workdir)
        results["images"] = [{"kind": u.kind, "description": u.description} for u in uploads]
        for system in build_systems(args):
            summary, points = benchmark_system(system, uploads, args, workdir)
            results["systems"].append(summary)
            results["points"] += [point.as_dict() for point in points]
        if not args.no_inprocess:
            print("[in-process] bench_backends.py and preprocess_steps.py", flush=True)
            results["inprocess"] = [
                inprocess.backend_limits(args.service_python, REPO, args.quick).as_dict(),
                inprocess.preprocess_limits(args.service_python, REPO, uploads,
                                            args.quick).as_dict(),
            ]
    print_report(results)
    args.results.mkdir(parents=True, exist_ok=True)
    report.write_json(results, args.results / "latest.json")
    (args.results / "latest.md").write_text(report.markdown(results))
    written = [args.results / "latest.json", args.results / "latest.md"]
    if results["points"]:
        report.chart(results, args.results / "http.png")
        written.append(args.results / "http.png")
    print("\nwrote " + ", ".join(str(path) for path in written))
    return 0 if any(s["status"] == "ran" for s in results["systems"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
