"""deploy/nginx: the shipped configuration is valid, and nginx with it in front of the app
balances, retries, limits bodies and carries request ids as its comments say.

These tests need Debian's nginx (``apt-get install nginx``); without it they skip, except
under CI=true, where they fail.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import encode_image, free_port, multipart_file, served_in_thread
from PIL import Image

import folder_paths
from web.config import DEFAULT_CONFIG

NGINX_DIR = folder_paths.base_path() / "deploy" / "nginx"
SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def nginx_path() -> str:
    found = shutil.which("nginx") or (os.access("/usr/sbin/nginx", os.X_OK) and "/usr/sbin/nginx")
    if not found:
        reason = "the nginx tests need nginx (Debian: apt-get install nginx)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; under CI=true a missing nginx is a failure")
        pytest.skip(reason)
    return found


def prefix_folder(tmp_path: Path) -> Path:
    """A prefix with the logs/ and tmp/ folders the configuration writes to."""
    prefix = tmp_path / "nginx"
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True)
    # run as root, nginx's workers are an unprivileged user, and spool bodies under tmp/
    tmp_path.chmod(0o755)
    prefix.chmod(0o755)
    return prefix


def directive(name: str) -> str:
    """The value of a directive that appears once in digits.conf."""
    (value,) = re.findall(rf"^\s*{name}\s+([^;]+);", (NGINX_DIR / "digits.conf").read_text(),
                          re.MULTILINE)
    return value.strip()


def test_the_shipped_configuration_passes_nginx_t(tmp_path):
    done = subprocess.run([nginx_path(), "-t", "-p", str(prefix_folder(tmp_path)),
                           "-c", str(NGINX_DIR / "nginx.conf")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


def test_the_body_limit_is_the_services():
    size = re.fullmatch(r"(\d+)([kmg]?)", directive("client_max_body_size").lower())
    limit = int(size.group(1)) * SIZE_UNITS[size.group(2)]
    assert limit == DEFAULT_CONFIG["MAX_CONTENT_LENGTH"]
    assert f"over {limit} bytes" in (NGINX_DIR / "digits.conf").read_text()


def test_requests_are_buffered_and_post_is_not_retried_once_sent():
    assert directive("proxy_request_buffering") == "on"
    assert "non_idempotent" not in directive("proxy_next_upstream")


@contextmanager
def nginx_in_front(tmp_path: Path, upstreams: list[str]) -> Iterator[tuple[str, Path]]:
    """nginx with the shipped configuration over ``upstreams``; its URL and access log."""
    nginx = nginx_path()
    prefix = prefix_folder(tmp_path)
    port = free_port()
    shutil.copy(NGINX_DIR / "nginx.conf", prefix / "nginx.conf")
    shipped = (NGINX_DIR / "digits.conf").read_text()
    assert "    listen 8080;" in shipped
    (prefix / "digits.conf").write_text(
        shipped.replace("    listen 8080;", f"    listen 127.0.0.1:{port};"))
    (prefix / "upstreams.conf").write_text(
        "".join(f"server {address} max_fails=2 fail_timeout=5s;\n" for address in upstreams))
    process = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                "-g", "daemon off;"], start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None, "nginx exited"
                assert time.monotonic() < deadline, "nginx did not listen within 10 s"
                time.sleep(0.05)
        yield f"127.0.0.1:{port}", prefix / "logs" / "access.log"
    finally:
        process.send_signal(signal.SIGQUIT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def ask(address: str, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    host, port = address.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, answer.headers, answer.read()
    finally:
        connection.close()


def access_lines(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_nginx_balances_retries_limits_and_carries_request_ids(app, tmp_path, heldout_digits):
    images, labels = heldout_digits
    body, content_type = multipart_file(encode_image(Image.fromarray(images[0], mode="L")))
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there: an instance that is down
    with served_in_thread(app) as url, nginx_in_front(tmp_path, [dead, url[7:]]) as (front, log):
        # a POST that the down instance refused reached no one: it goes to the next one
        status, headers, answer = ask(front, "POST", "/predict", body,
                                      {"Content-Type": content_type, "X-Request-ID": "scan-17"})
        assert status == 200, answer
        assert json.loads(answer)["prediction"] == labels[0]
        assert headers.get_all("X-Request-ID") == ["scan-17"]

        # an id the service would not accept is replaced by nginx's own, the same on both
        status, headers, _ = ask(front, "GET", "/healthz", headers={"X-Request-ID": "a b"})
        assert status == 200
        (made,) = headers.get_all("X-Request-ID")
        assert re.fullmatch(r"[0-9a-f]{32}", made)

        status, headers, answer = ask(front, "POST", "/predict", b"x" * (10 * 1024 * 1024 + 1),
                                      {"Content-Type": content_type})
        assert status == 413
        assert json.loads(answer)["error"]["code"] == "payload_too_large"
        assert headers.get_all("X-Request-ID")

        for path in ("/admin/reload", "/metrics"):
            status, _, answer = ask(front, "POST" if "admin" in path else "GET", path)
            assert status == 404
            assert json.loads(answer)["error"]["code"] == "not_found"

        lines = access_lines(log)
        first = next(line for line in lines if line["request_id"] == "scan-17")
        assert first["status"] == 200 and first["method"] == "POST"
        assert first["upstream"] == f"{dead}, {url[7:]}"  # tried the down one, then the next
        assert first["upstream_status"].endswith("200")
        assert any(line["request_id"] == made and line["path"] == "/healthz" for line in lines)


def test_with_no_instance_up_the_answer_is_a_json_503(tmp_path):
    down = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    with nginx_in_front(tmp_path, down) as (front, log):
        status, headers, answer = ask(front, "GET", "/healthz", headers={"X-Request-ID": "r1"})
    assert status == 503
    assert json.loads(answer)["error"] == {
        "status": 503, "code": "not_ready",
        "message": "no instance of the service could answer; try again"}
    assert headers["Retry-After"] == "1"
    assert headers.get_all("X-Request-ID") == ["r1"]
    (line,) = access_lines(log)
    assert line["status"] == 503 and line["upstream"] == ", ".join(down)
