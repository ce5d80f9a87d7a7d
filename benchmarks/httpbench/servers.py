"""Start each system under test on 127.0.0.1, wait until it answers, measure its memory, stop it.

Every server is started in a new session, so its process group (id = the
started process's id) holds it and every process it forks; that group is what
is measured and what is stopped, and nothing else is touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .images import Upload

BENCH_DIR = Path(__file__).resolve().parent.parent
PEERS_DIR = BENCH_DIR / "peers"
TORCHSERVE_MODEL = "classic"
INFO_KEYS = ("architecture", "backend", "device", "threads", "weights")


class Skip(Exception):
    """A system cannot run on this machine; the message says why."""


@dataclass
class Launch:
    """How to start one server."""

    command: list[str]
    cwd: Path
    env: dict[str, str]


@dataclass
class System:
    """One system under test."""

    name: str
    tuning: str
    predict_path: str
    prepare: Callable[[Path, int], Launch]
    health_paths: tuple[str, ...] = ("/health",)
    startup_seconds: float = 120.0
    info_path: str | None = None


@dataclass
class Server:
    """A started server."""

    system: System
    process: subprocess.Popen
    port: int
    log: Path
    answers: dict[str, str] = field(default_factory=dict)

    @property
    def predict_url(self) -> str:
        """Where uploads are posted."""
        return f"http://127.0.0.1:{self.port}{self.system.predict_path}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment less thread settings that would skew a server, plus ``extra``."""
    env = {key: value for key, value in os.environ.items()
           if key not in {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "DIGITS_TORCH_THREADS"}}
    env.update(extra)
    return env


def gunicorn_launch(python: str, app: str, cwd: Path, port: int, env: dict[str, str],
                    workers: int | None = None) -> Launch:
    """gunicorn on 127.0.0.1:port, no access log; ``workers`` None keeps the config's count."""
    command = [python, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--access-logfile", "/dev/null"]
    if workers is not None:
        command += ["-w", str(workers), "--worker-tmp-dir", "/dev/shm"]
    return Launch([*command, app], cwd, env)


def service_system(service_python: str, repo: Path) -> System:
    """The service as shipped: its gunicorn.conf.py, its default backend and worker count."""

    def prepare(workdir: Path, port: int) -> Launch:
        if not Path(service_python).exists():
            raise Skip(f"no service interpreter at {service_python} (run make .venv/.installed)")
        return gunicorn_launch(service_python, "app:create_app()", repo, port, base_env())

    return System("service", "gunicorn.conf.py defaults (workers = cores, torch threads = cores / "
                  "workers, DIGITS_BACKEND default), access log off", "/predict", prepare,
                  health_paths=("/healthz", "/health"), info_path="/model")


def peer_gunicorn_system(name: str, app: str, bench_python: str, tuning: str) -> System:
    """A Flask peer from benchmarks/peers under gunicorn -w 2, one torch thread per worker."""

    def prepare(workdir: Path, port: int) -> Launch:
        env = base_env(OMP_NUM_THREADS="1")
        return gunicorn_launch(bench_python, app, PEERS_DIR, port, env, workers=2)

    return System(name, tuning, "/predict", prepare)


def java_major_version() -> int | None:
    """The major version of ``java`` on PATH, or None without one."""
    if shutil.which("java") is None:
        return None
    shown = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', shown)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2)) if major == 1 and found.group(2) else major


def torchserve_config(workdir: Path, port: int) -> Path:
    """config.properties for 2 workers with one torch thread each, batch size 1, no metrics."""
    lines = [
        f"inference_address=http://127.0.0.1:{port}",
        f"management_address=http://127.0.0.1:{free_port()}",
        f"metrics_address=http://127.0.0.1:{free_port()}",
        "default_workers_per_model=2",
        "number_of_netty_threads=2",
        "netty_client_threads=2",
        "job_queue_size=1000",
        "disable_system_metrics=true",
        "install_py_dep_per_model=false",
        f"model_store={workdir / 'store'}",
    ]
    path = workdir / "config.properties"
    path.write_text("\n".join(lines) + "\n")
    return path


def torchserve_log_config(workdir: Path) -> Path:
    """A log4j2 configuration with warnings only and no access or metrics log (as gunicorn's)."""
    path = workdir / "log4j2.xml"
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<Configuration>\n  <Appenders>\n'
        f'    <File name="ts_log" fileName="{workdir}/ts_log.log">\n'
        '      <PatternLayout pattern="%d{ISO8601} [%-5p] %t %c - %m%n"/>\n    </File>\n'
        '  </Appenders>\n  <Loggers>\n'
        '    <Logger name="ACCESS_LOG" level="off"/>\n'
        '    <Logger name="MODEL_METRICS" level="off"/>\n'
        '    <Logger name="TS_METRICS" level="off"/>\n'
        '    <Logger name="MODEL_LOG" level="warn"><AppenderRef ref="ts_log"/></Logger>\n'
        '    <Logger name="org.pytorch.serve" level="warn"><AppenderRef ref="ts_log"/></Logger>\n'
        '    <Root level="warn"><AppenderRef ref="ts_log"/></Root>\n'
        '  </Loggers>\n</Configuration>\n')
    return path


def torchserve_archive(bench_python: str, workdir: Path) -> None:
    """Seeded weights and the .mar archive of the handler in ``workdir/store``."""
    bin_dir = Path(bench_python).parent
    weights = workdir / "classic.pt"
    save = ("import sys, torch; sys.path.insert(0, sys.argv[1]); from classic_net import "
            "build_network; torch.save(build_network().state_dict(), sys.argv[2])")
    subprocess.run([bench_python, "-c", save, str(PEERS_DIR), str(weights)], check=True)
    store = workdir / "store"
    store.mkdir(exist_ok=True)
    subprocess.run([
        str(bin_dir / "torch-model-archiver"), "--model-name", TORCHSERVE_MODEL, "--version", "1.0",
        "--serialized-file", str(weights), "--handler", str(PEERS_DIR / "torchserve_handler.py"),
        "--extra-files", str(PEERS_DIR / "classic_net.py"), "--export-path", str(store), "--force",
    ], check=True, capture_output=True, text=True)


def torchserve_system(bench_python: str) -> System:
    """TorchServe with the classic network and the plain preprocessing, 2 workers."""

    def prepare(workdir: Path, port: int) -> Launch:
        bin_dir = Path(bench_python).parent
        if not (bin_dir / "torchserve").exists():
            raise Skip("torchserve is not installed in the benchmark venv")
        major = java_major_version()
        if major is None or major < 11:
            raise Skip(f"TorchServe needs Java 11+ (found {major}); "
                       "apt-get install openjdk-17-jre-headless")
        try:
            torchserve_archive(bench_python, workdir)
        except subprocess.CalledProcessError as error:
            raise Skip(f"torch-model-archiver failed: {error.stderr or error}") from error
        config = torchserve_config(workdir, port)
        command = [str(bin_dir / "torchserve"), "--start", "--foreground", "--ncs",
                   "--disable-token-auth", "--model-store", str(workdir / "store"),
                   "--models", f"{TORCHSERVE_MODEL}={TORCHSERVE_MODEL}.mar",
                   "--ts-config", str(config), "--log-config", str(torchserve_log_config(workdir))]
        env = base_env(OMP_NUM_THREADS="1", TMPDIR=str(workdir), LOG_LOCATION=str(workdir),
                       METRICS_LOCATION=str(workdir), PATH=f"{bin_dir}:{os.environ['PATH']}")
        return Launch(command, workdir, env)

    return System("torchserve", "2 workers (default_workers_per_model=2), batch size 1, "
                  "OMP_NUM_THREADS=1 + torch.set_num_threads(1), 2 netty threads, "
                  "token auth disabled, access and metrics logs off",
                  f"/predictions/{TORCHSERVE_MODEL}", prepare, health_paths=("/ping",))


def litserve_system(bench_python: str, api_servers: int, fast_queue: bool) -> System:
    """LitServe with the classic network and the plain preprocessing, 2 CPU workers."""

    def prepare(workdir: Path, port: int) -> Launch:
        command = [bench_python, str(PEERS_DIR / "litserve_app.py"), "--port", str(port),
                   "--api-servers", str(api_servers)]
        if fast_queue:
            command.append("--fast-queue")
        return Launch(command, workdir, base_env(OMP_NUM_THREADS="1"))

    queue = "ZeroMQ fast_queue" if fast_queue else "multiprocessing queues"
    return System("litserve", f"accelerator=cpu, workers_per_device=2, max_batch_size=1, "
                  f"{api_servers} uvicorn API server(s), {queue}, one torch thread per worker, "
                  "access log off", "/predict", prepare)


def start(system: System, workdir: Path) -> Server:
    """Prepare and start ``system`` in its own session; Skip when it cannot run here."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    launch = system.prepare(workdir, port)
    log = workdir / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(launch.command, cwd=launch.cwd, env=launch.env, stdout=sink,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    return Server(system, process, port, log)


def multipart_body(upload: Upload, boundary: str = "bench-http-check") -> tuple[bytes, str]:
    """The upload as a multipart body with the field ``file``, and its content type."""
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{upload.path.name}"\r\nContent-Type: {upload.content_type}\r\n\r\n')
    body = head.encode() + upload.path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def post_upload(url: str, upload: Upload, timeout: float = 10.0) -> tuple[int, str]:
    """POST ``upload`` once: the status and the start of the answer."""
    body, content_type = multipart_body(upload)
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read(300).decode(errors="replace")
    except urllib.error.HTTPError as error:
        return error.code, error.read(300).decode(errors="replace")
    except OSError as error:
        return 0, str(error)


def healthy(server: Server) -> bool:
    """Whether one of the system's health paths answers 200."""
    for path in server.system.health_paths:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=2) as got:
                if got.status == 200:
                    return True
        except OSError:
            continue
    return False


def log_tail(server: Server, lines: int = 15) -> str:
    """The last lines the server wrote."""
    text = server.log.read_text(errors="replace") if server.log.exists() else ""
    return "\n".join(text.strip().splitlines()[-lines:])


def wait_ready(server: Server, probe: Upload) -> None:
    """Wait until the health check passes and a real upload is answered 200, or raise Skip."""
    deadline = time.monotonic() + server.system.startup_seconds
    status, text = 0, "no answer"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise Skip(f"exited with {server.process.returncode} while starting:\n"
                       f"{log_tail(server)}")
        if healthy(server):
            status, text = post_upload(server.predict_url, probe)
            if status == 200:
                return
        time.sleep(0.1)
    raise Skip(f"not ready within {server.system.startup_seconds:.0f} s (last answer {status}: "
               f"{text[:200]}):\n{log_tail(server)}")


def server_info(server: Server) -> str | None:
    """What the system says about itself at its info path (the service's GET /model), if any."""
    if server.system.info_path is None:
        return None
    url = f"http://127.0.0.1:{server.port}{server.system.info_path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            text = answer.read(4000).decode(errors="replace").strip()
    except OSError as error:
        return f"unavailable: {error}"
    try:
        shown = json.loads(text)
    except ValueError:
        return text[:300]
    if not isinstance(shown, dict):
        return text[:300]
    return ", ".join(f"{key} {shown[key]}" for key in INFO_KEYS if key in shown) or text[:300]


def check_answers(server: Server, uploads: list[Upload]) -> dict[str, str]:
    """Each upload's status and answer from a single request, for the report."""
    found = {}
    for upload in uploads:
        status, text = post_upload(server.predict_url, upload)
        found[upload.kind] = f"{status} {text.strip()[:160]}"
    server.answers = found
    return found


def process_memory(pid: int) -> tuple[int, int]:
    """Resident and peak resident memory of a process, in KiB."""
    rss = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    return rss, peak


def group_members(group: int) -> list[int]:
    """Ids of the live processes in process group ``group``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(int(entry.name))
    return sorted(members)


def memory_kib(pid: int) -> tuple[int, int]:
    """Resident set size and proportional set size of one process, in KiB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def command_line(pid: int, width: int = 70) -> str:
    """The process's command line, shortened."""
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [part.decode(errors="replace") for part in parts if part]
    if words:
        words[0] = Path(words[0]).name
    text = " ".join(words)
    return text if len(text) <= width else text[: width - 3] + "..."


PROCESS_LABELS = (
    ("model_service_worker", "torchserve worker"),
    ("org.pytorch.serve", "torchserve frontend (java)"),
    ("torchserve", "torchserve launcher"),
    ("resource_tracker", "multiprocessing resource tracker"),
    ("spawn_main", "multiprocessing child"),
)


def process_label(pid: int, main_pid: int) -> str:
    """What one server process is, in a few words."""
    try:
        text = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        text = ""
    for pattern, label in PROCESS_LABELS:
        if pattern in text:
            return label
    if "gunicorn" in text:
        return "gunicorn master" if pid == main_pid else "gunicorn worker"
    return "main process" if pid == main_pid else "child process"


def memory(server: Server) -> dict:
    """RSS and PSS of every process of the server, each and summed, in MiB."""
    processes = []
    for pid in group_members(server.process.pid):
        rss, pss = memory_kib(pid)
        processes.append({"pid": pid, "role": "main" if pid == server.process.pid else "child",
                          "label": process_label(pid, server.process.pid),
                          "command": command_line(pid), "rss_mib": round(rss / 1024, 1),
                          "pss_mib": round(pss / 1024, 1)})
    return {"processes": processes,
            "rss_sum_mib": round(sum(p["rss_mib"] for p in processes), 1),
            "pss_sum_mib": round(sum(p["pss_mib"] for p in processes), 1)}


def stop(server: Server, grace: float = 15.0) -> None:
    """SIGTERM the server's process group, then SIGKILL whatever is left after ``grace`` s."""
    group = server.process.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        server.process.poll()
        if not group_members(group):
            return
        time.sleep(0.2)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server.process.wait(timeout=5)
