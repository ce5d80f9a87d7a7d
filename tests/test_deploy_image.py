"""deploy/Containerfile, read as its builder reads it (no container engine is needed): pinned
bases and packages, a non-root user, gunicorn and a healthcheck, and every file the service
imports copied in."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import folder_paths

REPO = folder_paths.base_path()
CONTAINERFILE = REPO / "deploy" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    lines = [line for line in CONTAINERFILE.read_text().splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.append((word.upper(), " ".join(rest.split())))
    return found


def stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions by its name, in order."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for word, rest in instructions():
        if word == "FROM":
            current = []
            named[rest.split(" AS ")[-1].strip()] = current
        current.append((word, rest))
    return named


def last(stage: list[tuple[str, str]], word: str) -> str | None:
    values = [rest for found, rest in stage if found == word]
    return values[-1] if values else None


def test_bases_are_pinned_images_or_earlier_stages():
    names = list(stages())
    for index, stage in enumerate(stages().values()):
        image = stage[0][1].split(" AS ")[0].strip()
        if image in names[:index]:
            continue
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), image  # a full version


def test_the_default_target_is_the_service_run_by_gunicorn_as_a_non_root_user():
    name, serve = list(stages().items())[-1]  # what a build without --target gives
    assert name == "serve"
    entry = last(serve, "ENTRYPOINT")
    assert entry is not None and "gunicorn" in entry and "gunicorn.conf.py" in entry
    assert "app:create_app()" in entry
    healthcheck = last(serve, "HEALTHCHECK")
    assert healthcheck is not None and "/healthz" in healthcheck
    assert "DIGITS_BIND=0.0.0.0:8000" in last(serve, "ENV")
    assert "EXPOSE" in {word for word, _ in serve}


@pytest.mark.parametrize("target", ["serve", "batch"])
def test_each_image_runs_as_a_user_that_is_not_root(target):
    user = last(stages()[target], "USER")
    assert user is not None, f"{target} inherits root"
    assert user.split(":")[0] not in {"root", "0"}
    made = re.search(r"useradd .*--uid (\d+)", CONTAINERFILE.read_text()).group(1)
    assert user.split(":")[0] == made


def pip_installs() -> list[list[str]]:
    commands = []
    for word, rest in instructions():
        if word == "RUN":
            for part in re.split(r"&&|;", rest):
                words = shlex.split(part)
                if words[:2] == ["pip", "install"]:
                    commands.append(words[2:])
    return commands


def serve_requirements() -> list[str]:
    """requirements.txt through the Containerfile's own filter, as the build runs it."""
    (pattern,) = re.findall(r"grep -vE '([^']+)' /tmp/requirements.txt", CONTAINERFILE.read_text())
    kept = subprocess.run(["grep", "-vE", pattern, str(REPO / "requirements.txt")],
                          capture_output=True, text=True, check=True).stdout
    return [line for line in kept.splitlines() if line.strip()]


def test_every_package_is_pinned_and_torch_is_the_cpu_build_in_the_batch_image():
    installs = pip_installs()
    assert installs
    for arguments in installs:
        packages = [word for word in arguments if not word.startswith("-") and "://" not in word
                    and not word.startswith("/tmp/")]
        assert all("==" in package for package in packages), arguments
    torch = [arguments for arguments in installs if any(w.startswith("torch") for w in arguments)]
    assert torch == [["--no-cache-dir", "--index-url", "https://download.pytorch.org/whl/cpu",
                      "torch==2.14.1"]]
    pinned = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line]
    assert "torch==2.14.1" in pinned and all(re.fullmatch(r"[\w.-]+==[\w.]+", p) for p in pinned)


def test_the_service_image_holds_what_serving_imports_and_no_torch():
    kept = {line.split("==")[0] for line in serve_requirements()}
    assert not kept & {"torch", "torchvision", "onnx", "onnxscript"}
    # what a worker of the default backend imports, as a fresh interpreter shows
    shown = subprocess.run(
        [sys.executable, "-c",
         "import sys; from app import create_app; create_app().test_client().get('/readyz');"
         "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=120).stdout.split()
    distributions = {"PIL": "pillow", "flask": "flask", "werkzeug": "werkzeug",
                     "numpy": "numpy", "onnxruntime": "onnxruntime",
                     "prometheus_client": "prometheus-client", "flask_cors": "flask-cors",
                     "flask_swagger_ui": "flask-swagger-ui", "flask_limiter": "flask-limiter"}
    assert "torch" not in shown
    for module, distribution in distributions.items():
        assert module in shown and distribution in kept, module
    # and every module of the project it imports is copied into the image
    copied = {Path(source.rstrip("/")).stem for word, rest in stages()["base"] if word == "COPY"
              for source in rest.split()[:-1]}
    ours = {name for name in shown if (REPO / name).is_dir() or (REPO / f"{name}.py").is_file()}
    assert ours and ours <= copied, ours - copied
    assert {"gunicorn.conf", "templates", "static", "weights"} <= copied
    assert "gunicorn" in kept
