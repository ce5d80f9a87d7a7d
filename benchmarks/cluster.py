"""Three instances of the service on a private test network behind nginx (``make cluster``).

Each instance runs under gunicorn (the shipped gunicorn.conf.py, one worker)
in a network namespace of its own, joined to this host by a veth pair, so it
is a separate host on a private network (10.213.N.0/24) as far as TCP and
nginx can tell. Debian's nginx runs on this host with the shipped
configuration (deploy/nginx/, only the instances' addresses and the listening
port filled in) and wrk drives load through it:

    scale   throughput through nginx with 1, 2 and 3 instances, and who used the CPU
    kill    load for --kill-seconds; one instance SIGKILLed (master and worker)
            partway, started again later: requests/s, errors, traffic per instance
            over time (from nginx's log), the requests in flight on the killed one

Every namespace, veth pair, file and process it makes is removed when it ends,
however it ends (an error, Ctrl-C, SIGTERM, or the --limit seconds running out);
it stops only the processes it started, by their process groups.

Needs root (ip netns), and Debian's iproute2, nginx and wrk:
    apt-get install -y iproute2 nginx wrk
    python benchmarks/cluster.py                 # about 2 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from httpbench.images import Upload, write_uploads  # noqa: E402
from httpbench.load import run_wrk  # noqa: E402
from httpbench.servers import free_port, group_members, process_memory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
NGINX_DIR = REPO / "deploy" / "nginx"
FIXTURE = REPO / "tests" / "fixtures" / "heldout_digits.npz"
SUBNET = "10.213"  # instance N is 10.213.N.2, its host-side link 10.213.N.1
SERVICE_PORT = 8000
MAX_FAILS = "max_fails=2 fail_timeout=5s"  # as deploy/nginx/upstreams.conf


class Interrupted(Exception):
    """A signal or the time limit ended the run; cleanup follows."""


def run(*command: str) -> None:
    subprocess.run(command, check=True, capture_output=True, text=True)


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds the processes have used so far."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, every core together."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    total = sum(values[:8])
    return (total - idle) / os.sysconf("SC_CLK_TCK"), total / os.sysconf("SC_CLK_TCK")


@dataclass
class Instance:
    """One instance of the service: its namespace, its link, its gunicorn process group."""

    number: int
    tag: str
    workdir: Path
    workers: int
    process: subprocess.Popen | None = None
    netns_made: bool = False
    link_made: bool = False

    @property
    def netns(self) -> str:
        return f"{self.tag}n{self.number}"

    @property
    def host_link(self) -> str:
        return f"{self.tag}h{self.number}"  # interface names are at most 15 characters

    @property
    def address(self) -> str:
        return f"{SUBNET}.{self.number}.2"

    @property
    def upstream(self) -> str:
        return f"{self.address}:{SERVICE_PORT}"

    def make_network(self) -> None:
        """A namespace, a veth pair between it and this host, an address on each end."""
        inside = f"{self.tag}v{self.number}"
        run("ip", "netns", "add", self.netns)
        self.netns_made = True
        run("ip", "link", "add", self.host_link, "type", "veth", "peer", "name", inside)
        self.link_made = True
        run("ip", "link", "set", inside, "netns", self.netns)
        run("ip", "addr", "add", f"{SUBNET}.{self.number}.1/24", "dev", self.host_link)
        run("ip", "link", "set", self.host_link, "up")
        run("ip", "netns", "exec", self.netns, "ip", "addr", "add", f"{self.address}/24",
            "dev", inside)
        run("ip", "netns", "exec", self.netns, "ip", "link", "set", inside, "up")
        run("ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up")

    def start(self, python: str) -> None:
        """gunicorn with the shipped config, inside the namespace, in a process group of its own."""
        env = {**os.environ, "DIGITS_BIND": self.upstream, "DIGITS_WORKERS": str(self.workers),
               # nginx keeps idle upstream connections 60 s: the instance must keep them longer
               "DIGITS_KEEPALIVE": "75"}
        env.pop("DIGITS_TORCH_THREADS", None)  # gunicorn.conf.py gives each worker its share
        log = (self.workdir / f"instance-{self.number}.log").open("ab")
        # `ip netns exec` enters the namespace and execs gunicorn: the pid is the master's
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, python, "-m", "gunicorn", "--config",
             str(REPO / "gunicorn.conf.py"), "--chdir", str(REPO), "app:create_app()"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_ready(self, limit: float) -> float:
        """Seconds until /readyz answers 200 from this host, through the veth pair."""
        started = time.monotonic()
        while time.monotonic() - started < limit:
            if self.process is None or self.process.poll() is not None:
                raise SystemExit(f"instance {self.number} exited; see its log in the run's folder")
            if http_status(f"http://{self.upstream}/readyz") == 200:
                return time.monotonic() - started
            time.sleep(0.2)
        raise SystemExit(f"instance {self.number} was not ready within {limit:.0f} s")

    def pids(self) -> list[int]:
        return group_members(self.process.pid) if self.process else []

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the instance's process group (master and workers), then reap the master."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # its workers hold the listening socket and connections too: gone when they are
        deadline = time.monotonic() + 10
        while group_members(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.001)

    def remove_network(self) -> None:
        if self.link_made:
            subprocess.run(["ip", "link", "del", self.host_link], capture_output=True)
            self.link_made = False
        if self.netns_made:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            self.netns_made = False


class Nginx:
    """Debian's nginx with deploy/nginx's configuration, in a prefix folder of this run."""

    def __init__(self, workdir: Path, port: int) -> None:
        self.prefix = workdir / "nginx"
        self.port = port
        for sub in ("logs", "tmp"):
            (self.prefix / sub).mkdir(parents=True)
        for name in ("nginx.conf", "digits.conf"):
            shutil.copy(NGINX_DIR / name, self.prefix / name)
        shipped = (NGINX_DIR / "digits.conf").read_text()
        if "    listen 8080;" not in shipped:
            raise SystemExit("deploy/nginx/digits.conf no longer listens on 8080: "
                             "update this script")
        # the one change: listen on loopback, on a free port
        (self.prefix / "digits.conf").write_text(
            shipped.replace("    listen 8080;", f"    listen 127.0.0.1:{port};"))
        self.process: subprocess.Popen | None = None

    @property
    def access_log(self) -> Path:
        return self.prefix / "logs" / "access.log"

    def set_upstreams(self, instances: list[Instance]) -> None:
        lines = [f"server {i.upstream} {MAX_FAILS};" for i in instances]
        (self.prefix / "upstreams.conf").write_text("\n".join(lines) + "\n")

    def start(self) -> None:
        command = ["nginx", "-p", str(self.prefix), "-c", str(self.prefix / "nginx.conf")]
        subprocess.run([*command, "-t", "-q"], check=True)
        self.process = subprocess.Popen([*command, "-g", "daemon off;"], start_new_session=True)
        deadline = time.monotonic() + 10
        while http_status(f"http://127.0.0.1:{self.port}/healthz") == 0:
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("nginx did not start; see its logs/error.log")
            time.sleep(0.1)

    def reload(self) -> None:
        """New configuration (upstreams); waits until only new workers are left."""
        old = set(self.pids()) - {self.process.pid}
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while old & set(self.pids()) and time.monotonic() < deadline:
            time.sleep(0.1)

    def pids(self) -> list[int]:
        return group_members(self.process.pid) if self.process else []

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def error_log(self) -> str:
        return (self.prefix / "logs" / "error.log").read_text()

    def log_lines(self, since: float, until: float) -> list[dict]:
        """Access log lines of requests that ended between two wall-clock times."""
        lines = []
        for text in self.access_log.read_text().splitlines():
            line = json.loads(text)
            if since <= line["msec"] < until:
                lines.append(line)
        return lines


def wrk_seconds(nginx: Nginx, upload: Upload, concurrency: int, seconds: float) -> dict:
    return run_wrk(f"http://127.0.0.1:{nginx.port}/predict", upload, concurrency, seconds)


def summary(raw: dict) -> tuple[int, float, int]:
    """Requests, requests/s and errors (non-2xx answers and socket errors) of a wrk run."""
    duration = raw["duration_us"] / 1e6
    errors = raw["non_2xx"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return raw["requests"], raw["requests"] / duration, errors


def shares(lines: list[dict], instances: list[Instance]) -> str:
    """Requests answered by each instance (the last upstream each request was sent to)."""
    counts = Counter(line["upstream"].split(", ")[-1] for line in lines)
    return " ".join(f"#{i.number} {counts.get(i.upstream, 0)}" for i in instances)


def scale(nginx: Nginx, instances: list[Instance], upload: Upload, concurrency: int,
          seconds: float) -> list[str]:
    """Throughput through nginx with 1, 2, ... instances, and where the CPU time went."""
    report = [f"scale: wrk -c{concurrency} for {seconds:.0f} s a point through nginx, "
              f"POST /predict ({upload.kind})",
              "  instances | req/s | p50 ms | p99 ms | errors | answered by | CPU cores used: "
              f"instances, nginx, wrk, other jobs (of {os.cpu_count()})"]
    for count in range(1, len(instances) + 1):
        nginx.set_upstreams(instances[:count])
        nginx.reload()
        wrk_seconds(nginx, upload, concurrency, 1)  # new nginx workers open their connections
        ours = [pid for i in instances[:count] for pid in i.pids()]
        before = (cpu_seconds(ours), cpu_seconds(nginx.pids()),
                  resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy(), time.time())
        raw = wrk_seconds(nginx, upload, concurrency, seconds)
        after = (cpu_seconds(ours), cpu_seconds(nginx.pids()),
                 resource.getrusage(resource.RUSAGE_CHILDREN), machine_busy(), time.time())
        wall = after[4] - before[4]
        wrk_cpu = (after[2].ru_utime + after[2].ru_stime - before[2].ru_utime
                   - before[2].ru_stime)
        busy = (after[3][0] - before[3][0]) / wall
        requests, rate, errors = summary(raw)
        lines = nginx.log_lines(before[4], after[4])
        report.append(
            f"  {count} | {rate:,.0f} | {raw['p50_us'] / 1e3:.1f} | {raw['p99_us'] / 1e3:.1f} | "
            f"{errors} | {shares(lines, instances[:count])} | "
            f"{(after[0] - before[0]) / wall:.2f}, {(after[1] - before[1]) / wall:.2f}, "
            f"{wrk_cpu / wall:.2f}, "
            f"{busy - ((after[0] - before[0]) + (after[1] - before[1]) + wrk_cpu) / wall:.2f}")
    return report


def kill_and_restart(nginx: Nginx, instances: list[Instance], upload: Upload, python: str,
                     concurrency: int, seconds: float, limit: float) -> list[str]:
    """Load through nginx; one instance SIGKILLed a third of the way in, restarted at half."""
    nginx.set_upstreams(instances)
    nginx.reload()
    wrk_seconds(nginx, upload, concurrency, 1)
    victim = instances[len(instances) // 2]
    result: dict = {}
    started = time.time()
    load = threading.Thread(
        target=lambda: result.update(wrk_seconds(nginx, upload, concurrency, seconds)))
    load.start()
    time.sleep(seconds / 3)
    killed_at = time.time()
    victim.kill(signal.SIGKILL)
    gone_at = time.time()  # master and workers gone: their sockets are closed
    time.sleep(max(0.0, started + seconds / 2 - time.time()))
    restarted_at = time.time()
    victim.start(python)
    ready_after = victim.wait_ready(limit)
    ready_at = time.time()
    load.join()
    ended = time.time()

    # wrk's own end cuts its requests in flight off (nginx logs them 499): not failures
    lines = [line for line in nginx.log_lines(started, ended + 1) if line["status"] != 499]
    requests, rate, errors = summary(result)
    failed = [line for line in lines if line["status"] >= 500]
    # Answers the victim began and never finished: nginx has logged their status from the
    # header and can only cut its client off (wrk counts a read error).
    cut_off = sum(victim.upstream in line and "prematurely closed connection while reading "
                  "upstream" in line for line in nginx.error_log().splitlines())
    retried = [line for line in lines if ", " in line["upstream"]]
    # In flight on the victim: sent to it (a POST that went to another instance after it
    # was never sent) before its sockets closed, and not answered before the kill.
    in_flight = [line for line in lines if line["upstream"].split(", ")[-1] == victim.upstream
                 and line["msec"] - line["request_time"] <= gone_at
                 and line["msec"] >= killed_at]
    # Failed, yet sent to the victim after its sockets had closed: a POST nginx sent on a
    # kept-alive connection whose close it had not yet read (it cannot be sent again).
    late = [line for line in failed if line["upstream"].split(", ")[-1] == victim.upstream
            and line["msec"] - line["request_time"] > gone_at]
    other = [line for line in failed if line not in in_flight and line not in late]
    back = [line["msec"] for line in lines
            if line["msec"] > ready_at and line["upstream"].endswith(victim.upstream)
            and line["status"] == 200]
    failures = len(failed) + cut_off
    report = [
        f"kill: wrk -c{concurrency} for {seconds:.0f} s through nginx over "
        f"{len(instances)} instances; instance #{victim.number} ({victim.upstream}) SIGKILLed "
        f"at {killed_at - started:.1f} s, started again at {restarted_at - started:.1f} s",
        f"  wrk: {requests} requests, {rate:,.0f} req/s, errors {errors} (non-2xx answers "
        f"{result['non_2xx']}; connect {result['connect']}, read {result['read']}, "
        f"write {result['write']}, timeout {result['timeout']})",
        f"  nginx log: {len(lines)} requests; {len(in_flight)} in flight on "
        f"#{victim.number} when it was killed (sent to it before its sockets closed "
        f"{(gone_at - killed_at) * 1e3:.0f} ms later, unanswered at the kill); failed "
        f"{len(failed)} answered {'/'.join(sorted({str(x['status']) for x in failed})) or '-'}"
        f" by nginx + {cut_off} cut off mid-answer = {failures}, of them in flight "
        f"{failures - len(late) - len(other)} and sent after it was gone {len(late)}"
        + "".join(f" (one sent {(x['msec'] - x['request_time'] - gone_at) * 1e3:.0f} ms after)"
                  for x in late)
        + (f", other {len(other)}" if other else "")
        + f"; {len(retried)} refused by a down instance and answered by another "
        f"{Counter(line['status'] for line in retried).most_common()}",
        f"  #{victim.number} ready again {ready_after:.1f} s after its start "
        f"(at {ready_at - started:.1f} s); nginx sent it traffic again at "
        + (f"{back[0] - started:.1f} s" if back else "no time within the run"),
        "  traffic per instance, answered requests a second (failed in brackets):",
    ]
    step = 2.0
    moment = started
    while moment < ended:
        window = [line for line in lines if moment <= line["msec"] < moment + step]
        counts = Counter(line["upstream"].split(", ")[-1] for line in window
                         if line["status"] == 200)
        bad = sum(line["status"] >= 500 for line in window)
        events = []
        if moment <= killed_at < moment + step:
            events.append(f"#{victim.number} killed")
        if moment <= restarted_at < moment + step:
            events.append(f"#{victim.number} started")
        if moment <= ready_at < moment + step:
            events.append(f"#{victim.number} ready")
        report.append(
            f"  {moment - started:5.1f}-{moment - started + step:4.1f} s  "
            + "  ".join(f"#{i.number} {counts.get(i.upstream, 0) / step:5.0f}" for i in instances)
            + (f"  ({bad})" if bad else "") + (f"  <- {', '.join(events)}" if events else ""))
        moment += step
    return report


def memory(instances: list[Instance]) -> list[str]:
    report = ["memory after the load (RSS / peak RSS, MiB):"]
    for instance in instances:
        parts = []
        for pid in instance.pids():
            rss, peak = process_memory(pid)
            role = "master" if pid == instance.process.pid else "worker"
            parts.append(f"{role} {rss / 1024:.0f} / {peak / 1024:.0f}")
        report.append(f"  #{instance.number}: " + ", ".join(parts))
    return report


def check_tools() -> None:
    if os.geteuid() != 0:
        raise SystemExit("network namespaces need root: run as root")
    missing = [tool for tool in ("ip", "nginx", "wrk") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} missing: apt-get install -y iproute2 nginx wrk")
    taken = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    if f" {SUBNET}." in taken:
        raise SystemExit(f"{SUBNET}.0.0/16 is in use here (another run of this script?)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers per instance")
    parser.add_argument("--concurrency", type=int, default=16, help="wrk connections")
    parser.add_argument("--scale-seconds", type=float, default=8.0)
    parser.add_argument("--kill-seconds", type=float, default=30.0)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="copy nginx's and the instances' logs into DIR before cleaning up")
    parser.add_argument("--limit", type=float, default=300.0,
                        help="seconds after which the run stops, cleaning up")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools()
    python = str(REPO / ".venv" / "bin" / "python")
    if not Path(python).exists():
        python = sys.executable

    def stop(signum, _frame):
        raise Interrupted(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM):
        signal.signal(sig, stop)
    signal.alarm(int(args.limit))

    workdir = Path(tempfile.mkdtemp(prefix="digits-cluster-"))
    workdir.chmod(0o755)  # nginx's workers (nobody) write request bodies under it
    tag = f"dg{os.getpid()}"
    instances = [Instance(n, tag, workdir, args.workers) for n in range(1, args.instances + 1)]
    nginx: Nginx | None = None
    status = 0
    try:
        uploads = write_uploads(FIXTURE, workdir)
        started = time.monotonic()
        for instance in instances:
            instance.make_network()
            instance.start(python)
        ready = [instance.wait_ready(120) for instance in instances]
        print(f"cluster: {len(instances)} instances (gunicorn.conf.py, {args.workers} worker "
              f"each) in network namespaces {', '.join(i.netns for i in instances)} on "
              f"{SUBNET}.N.2:{SERVICE_PORT}; all ready {max(ready):.1f} s after starting "
              f"(started {time.monotonic() - started:.1f} s ago); {os.cpu_count()} cores",
              flush=True)
        nginx = Nginx(workdir, free_port())
        nginx.set_upstreams(instances)
        nginx.start()
        version = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
        print(f"nginx {version.split('/')[-1].strip()} on 127.0.0.1:{nginx.port} with "
              "deploy/nginx/", flush=True)
        for line in scale(nginx, instances, uploads[0], args.concurrency, args.scale_seconds):
            print(line, flush=True)
        for line in kill_and_restart(nginx, instances, uploads[0], python, args.concurrency,
                                     args.kill_seconds, 120):
            print(line, flush=True)
        for line in memory(instances):
            print(line, flush=True)
    except Interrupted as reason:
        print(f"stopped early ({reason}); cleaning up", file=sys.stderr)
        status = 1
    finally:
        signal.alarm(0)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # let the cleanup finish
        if nginx is not None:
            nginx.stop()
        for instance in instances:
            instance.kill(signal.SIGTERM)
            instance.remove_network()
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for log in [*workdir.glob("instance-*.log"), *workdir.glob("nginx/logs/*.log")]:
                shutil.copy(log, args.keep / log.name)
        shutil.rmtree(workdir, ignore_errors=True)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        print(f"cleanup: namespaces of this run left {left.count(tag)}, "
              f"links left {links.count(tag)}, folder removed {not workdir.exists()}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
