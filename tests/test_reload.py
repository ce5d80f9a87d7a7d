"""Hot reload: in one process through the admin endpoint, across processes through the state file,
and under real gunicorn with two workers."""

from __future__ import annotations

import gc
import json
import shutil
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import urllib3
from helpers import encode_image, paper_digit, running_gunicorn, upload

import folder_paths
from app import create_app
from model import build_network, card_path, int8_path, onnx_path, save_weights
from runtime.files import file_sha256
from serving.reload import ServedWeights, SharedState

WEIGHTS = folder_paths.get_full_path("weights", "model.pt")


def copy_weights(folder, name: str = "model.pt"):
    """The committed weights, their card and their ONNX export, copied into ``folder``."""
    target = folder / name
    for source, copy in ((WEIGHTS, target), (card_path(WEIGHTS), card_path(target)),
                         (onnx_path(WEIGHTS), onnx_path(target)),
                         (int8_path(WEIGHTS), int8_path(target))):
        shutil.copy(source, copy)
    return target


def nudged_weights(folder, name: str = "other.pt", amount: float = 1e-4):
    """Valid weights that differ from the committed ones (another sha256, same answers)."""
    card = json.loads(card_path(WEIGHTS).read_text())
    network = build_network(card["architecture"])
    network.load_state_dict(torch.load(WEIGHTS, weights_only=True))
    with torch.no_grad():
        list(network.parameters())[-1].add_(amount)  # the output layer's bias
    target = folder / name
    save_weights(network, target, {"architecture": card["architecture"],
                                   "validation_accuracy": card["validation_accuracy"]})
    return target


@pytest.fixture
def base(monkeypatch, tmp_path):
    """A base folder with its own weights/ holding a copy of the committed weights."""
    (tmp_path / "weights").mkdir()
    copy_weights(tmp_path / "weights")
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture
def state_dir(tmp_path):
    folder = tmp_path / "state"
    folder.mkdir()
    return folder


def make_app(state_dir=None, **config):
    settings = {"TESTING": True, "DEVICE": "cpu", "BACKEND": "eager",
                "STATE_DIR": str(state_dir or ""), **config}
    return create_app(settings)


def reload(client, body=None, **options):
    return client.post("/admin/reload", json=body, **options)


def assert_still_predicts(client, heldout_digits):
    images, labels = heldout_digits
    response = upload(client, encode_image(paper_digit(images[9])))
    assert response.get_json()["prediction"] == labels[9]


def test_reload_with_good_weights_swaps_and_model_shows_the_new_hash(base, heldout_digits):
    other = nudged_weights(base / "weights")
    client = make_app().test_client()
    before = client.get("/model").get_json()
    old = weakref.ref(client.application.extensions["model_slot"].current)

    response = reload(client, {"weights": "other.pt"})
    assert response.status_code == 200
    body = response.get_json()
    assert body["previous"] == {"weights": "model.pt", "sha256": before["sha256"]}
    after = client.get("/model").get_json()
    assert after["sha256"] == file_sha256(other) == body["model"]["sha256"]
    assert after["weights"] == "other.pt"
    assert after["loaded_at"] > before["loaded_at"]
    gc.collect()
    assert old() is None, "the old model's memory was not released"
    assert_still_predicts(client, heldout_digits)


def test_reload_rereads_the_same_file_name(base):
    client = make_app().test_client()
    before = client.get("/model").get_json()["sha256"]
    nudged_weights(base / "weights", "model.pt")
    assert reload(client).status_code == 200
    assert client.get("/model").get_json()["sha256"] != before


@pytest.mark.parametrize("damage", ["tampered", "garbage", "no card", "missing"])
def test_reload_with_a_broken_file_keeps_the_old_model(base, heldout_digits, damage):
    weights = base / "weights"
    target = copy_weights(weights, "broken.pt")
    if damage == "tampered":
        with open(target, "ab") as stream:
            stream.write(b"tampered")
    elif damage == "garbage":
        target.write_bytes(b"not a weights file")
        card = json.loads(card_path(target).read_text())
        card_path(target).write_text(json.dumps({**card, "sha256": file_sha256(target)}))
    elif damage == "no card":
        card_path(target).unlink()
    else:
        target.unlink()
    client = make_app().test_client()
    before = client.get("/model").get_json()

    response = reload(client, {"weights": "broken.pt"})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_weights"
    assert "broken." in error["message"] and "still serving model.pt" in error["message"]
    assert client.get("/model").get_json() == before
    assert_still_predicts(client, heldout_digits)


@pytest.mark.parametrize("body", [{"weights": "../app.py"}, {"weights": 7}])
def test_reload_refuses_a_bad_name(base, body):
    response = reload(make_app().test_client(), body)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"


def test_admin_answers_loopback_clients_only_without_a_key(base):
    client = make_app().test_client()
    remote = {"environ_base": {"REMOTE_ADDR": "192.0.2.7"}}
    response = reload(client, **remote)
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"
    ipv6_loopback = {"environ_base": {"REMOTE_ADDR": "::1"}}
    assert reload(client, **ipv6_loopback).status_code == 200


def test_admin_key_is_needed_from_every_client_once_set(base):
    client = make_app(ADMIN_KEY="s3cret").test_client()
    assert reload(client).status_code == 403
    assert reload(client, headers={"Authorization": "Bearer wrong"}).status_code == 403
    remote = {"environ_base": {"REMOTE_ADDR": "192.0.2.7"}}
    authorised = {"headers": {"Authorization": "Bearer s3cret"}}
    assert reload(client, **authorised, **remote).status_code == 200


def test_admin_key_from_the_environment_stays_text(base, monkeypatch):
    monkeypatch.setenv("DIGITS_ADMIN_KEY", "12345")
    client = make_app().test_client()
    assert reload(client, headers={"Authorization": "Bearer 12345"}).status_code == 200


def test_a_reload_reaches_the_other_workers_through_the_state_file(base, state_dir):
    other = nudged_weights(base / "weights")
    first, second = make_app(state_dir).test_client(), make_app(state_dir).test_client()
    assert reload(first, {"weights": "other.pt"}).status_code == 200
    assert SharedState(state_dir).read() == ServedWeights("other.pt", file_sha256(other))
    body = second.get("/model").get_json()
    assert (body["weights"], body["sha256"]) == ("other.pt", file_sha256(other))
    late = make_app(state_dir).test_client()  # e.g. a worker replacing one that died
    assert late.get("/model").get_json()["sha256"] == file_sha256(other)


def test_a_follower_keeps_its_model_when_the_recorded_file_changed(base, state_dir, caplog):
    nudged_weights(base / "weights")
    first, second = make_app(state_dir).test_client(), make_app(state_dir).test_client()
    before = second.get("/model").get_json()["sha256"]
    assert reload(first, {"weights": "other.pt"}).status_code == 200
    nudged_weights(base / "weights", amount=2e-4)  # replaced after the first worker checked it
    assert second.get("/model").get_json()["sha256"] == before
    assert "cannot load the recorded weights" in caplog.text


def test_following_costs_a_stat_when_nothing_changed(base, state_dir, monkeypatch):
    client = make_app(state_dir).test_client()
    slot = client.application.extensions["model_slot"]
    monkeypatch.setattr(slot, "_load", lambda *args: pytest.fail("reloaded without a change"))
    for _ in range(3):
        assert client.get("/health").status_code == 200


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_reload_on_cuda_returns_the_old_models_memory(base):
    nudged_weights(base / "weights")
    client = make_app(DEVICE="cuda").test_client()
    torch.cuda.synchronize()
    one_model = torch.cuda.memory_allocated()
    assert reload(client, {"weights": "other.pt"}).status_code == 200
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == one_model


@pytest.fixture
def gunicorn_base(tmp_path_factory):
    """A base folder for a real server: weights we may replace, templates and static copied."""
    base = tmp_path_factory.mktemp("served")
    for folder in ("templates", "static"):
        shutil.copytree(folder_paths.get_folder(folder), base / folder)
    (base / "weights").mkdir()
    copy_weights(base / "weights")
    nudged_weights(base / "weights")
    return base


@pytest.mark.slow
def test_reload_under_gunicorn_reaches_both_workers(gunicorn_base):
    env = {"DIGITS_DEVICE": "cpu", "DIGITS_WORKERS": "2", "DIGITS_BASE_PATH": str(gunicorn_base),
           "DIGITS_STATE_DIR": None}
    http = urllib3.PoolManager(maxsize=8)
    with running_gunicorn(env, http=http) as url:
        old_workers = answering_workers(http, url)
        new_sha = file_sha256(gunicorn_base / "weights" / "other.pt")
        assert all(sha != new_sha for sha in old_workers.values())

        response = http.request("POST", f"{url}/admin/reload", json={"weights": "other.pt"},
                                retries=False, timeout=60)
        assert response.status == 200, response.data

        # two workers answer with the new weights (a worker's other threads serve the
        # old model while one thread loads the new one)
        new_workers = answering_workers(http, url, serving=new_sha)
        assert not set(new_workers) & set(old_workers), "a worker did not reload"


def answering_workers(http: urllib3.PoolManager, url: str,
                      serving: str | None = None) -> dict[str, str]:
    """``loaded_at`` (one per worker and model) -> sha256, from /model until two workers answer
    (with ``serving``, two workers serving that sha256; other answers are left out).

    A worker answers only once it has loaded its model, which takes seconds, so
    the asking goes on for up to a minute. The requests are sent eight at a
    time, each on a new connection: an idle worker may otherwise take every
    request (or every kept-alive connection) one after another, and the second
    worker would never be asked.
    """
    seen: dict[str, str] = {}

    def ask(_: int) -> dict:
        return http.request("GET", f"{url}/model", retries=False, timeout=60,
                            headers={"Connection": "close"}).json()

    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(seen) < 2 and time.monotonic() < deadline:
            for body in pool.map(ask, range(8)):
                if serving is None or body["sha256"] == serving:
                    seen[body["loaded_at"]] = body["sha256"]
            time.sleep(0.05)
    assert len(seen) == 2, f"{len(seen)} worker(s) answered within a minute, expected 2"
    return seen
