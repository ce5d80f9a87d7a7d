"""The API key, security headers, admin reach and bodies, paths in errors, and weights that
carry code."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from helpers import encode_image, multipart_file, paper_digit, upload

import folder_paths
from model import DigitClassifier, WeightsError, card_path
from runtime.files import file_sha256
from web.auth import PROTECTED_PATHS, is_protected
from web.headers import SECURITY_HEADERS

KEY = "s3cret-key"


@pytest.fixture
def keyed(make_app):
    return make_app(API_KEY=KEY, BACKEND="eager").test_client()


def digit(heldout_digits) -> bytes:
    return encode_image(paper_digit(heldout_digits[0][0]))


def assert_unauthorized(response):
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json()["error"] == {
        "status": 401, "code": "unauthorized", "message": response.get_json()["error"]["message"]}


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {KEY}", "Bearer",
                                           f"Bearer {KEY}x", KEY])
def test_protected_routes_need_the_key(keyed, heldout_digits, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    assert_unauthorized(keyed.get("/model", headers=headers))
    assert_unauthorized(keyed.get("/metrics", headers=headers))
    assert_unauthorized(keyed.post("/admin/reload", headers=headers))
    body, content_type = multipart_file(digit(heldout_digits))
    assert_unauthorized(keyed.post("/predict", data=body, content_type=content_type,
                                   headers=headers))


def test_the_key_opens_them(keyed, heldout_digits):
    bearer = {"Authorization": f"Bearer {KEY}"}
    assert keyed.get("/model", headers=bearer).status_code == 200
    body, content_type = multipart_file(digit(heldout_digits))
    response = keyed.post("/predict", data=body, content_type=content_type, headers=bearer)
    assert response.status_code == 200
    assert response.get_json()["prediction"] == heldout_digits[1][0]


def test_the_page_and_its_routes_stay_open_with_a_key(keyed, heldout_digits):
    assert keyed.get("/").status_code == 200
    assert keyed.get("/health").status_code == 200
    body, content_type = multipart_file(digit(heldout_digits))
    answer = keyed.post("/page/predict", data=body, content_type=content_type).get_json()
    assert answer["prediction"] == heldout_digits[1][0]
    assert answer["input_image"].startswith("data:image/png;base64,")
    page = keyed.post("/", data=body, content_type=content_type)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'data-predict-url="/page/predict"' in keyed.get("/").data


def test_without_a_key_nothing_is_guarded(client):
    assert client.get("/model").status_code == 200


def test_protected_paths_are_matched_by_prefix():
    assert all(is_protected(path) for path in ("/predict", "/model", "/metrics", "/admin/reload"))
    assert not any(is_protected(path) for path in ("/", "/health", "/page/predict", "/models",
                                                   "/static/app.js", "/predictx"))
    assert "/metrics" in PROTECTED_PATHS


def test_an_admin_key_alone_guards_admin_routes(make_app):
    client = make_app(API_KEY=KEY, ADMIN_KEY="admin-key", BACKEND="eager").test_client()
    assert client.post("/admin/reload",
                       headers={"Authorization": "Bearer admin-key"}).status_code == 200
    assert client.post("/admin/reload",
                       headers={"Authorization": f"Bearer {KEY}"}).status_code == 403


@pytest.mark.parametrize("call", [
    lambda c: c.get("/"), lambda c: c.get("/health"), lambda c: c.get("/nowhere"),
    lambda c: c.get("/predict"), lambda c: c.post("/predict", data={}),
    lambda c: c.get("/static/app.js"), lambda c: c.get("/model"),
])
def test_security_headers_on_every_answer(client, call):
    response = call(client)
    response.close()
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_security_headers_on_401_and_413_and_pages_keep_their_policy(keyed, make_app):
    assert keyed.get("/model").headers["X-Content-Type-Options"] == "nosniff"
    small = make_app(MAX_CONTENT_LENGTH=100).test_client()
    response = upload(small, b"\0" * 5000)
    assert response.status_code == 413 and response.headers["Referrer-Policy"] == "no-referrer"
    page = keyed.get("/")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert "Content-Security-Policy" not in keyed.get("/health").headers


@pytest.mark.parametrize("remote", ["192.0.2.7", "::ffff:192.0.2.7", "10.0.0.1", "2001:db8::1"])
def test_admin_is_never_reached_off_host_without_the_admin_key(client, remote):
    response = client.post("/admin/reload", environ_base={"REMOTE_ADDR": remote},
                           headers={"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "127.0.0.1"})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("body", "content_type"), [
    (b"not json", "application/json"), (b"[1, 2]", "application/json"),
    (b"{}", "application/json"), (b'{"weights": ""}', "application/json"),
    (b'{"other": "model.pt"}', "application/json"), (b'"model.pt"', "application/json"),
    (b"weights=model.pt", "application/x-www-form-urlencoded"),
])
def test_reload_refuses_a_body_that_does_not_name_a_file(make_app, body, content_type):
    client = make_app(BACKEND="eager").test_client()
    response = client.post("/admin/reload", data=body, content_type=content_type)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "bad_request"
    assert client.post("/admin/reload").status_code == 200  # no body: the same file again


@pytest.fixture
def base(monkeypatch, tmp_path):
    (tmp_path / "weights").mkdir()
    for name in ("model.pt", "model.json"):
        shutil.copy(folder_paths.get_full_path("weights", name), tmp_path / "weights" / name)
    monkeypatch.setenv(folder_paths.BASE_PATH_ENV, str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", ["missing.pt", "garbage.pt", "/etc/passwd", "../app.py"])
def test_no_error_shows_an_absolute_path(make_app, base, name):
    (base / "weights" / "garbage.pt").write_bytes(b"not weights")
    client = make_app(BACKEND="eager").test_client()
    response = client.post("/admin/reload", json={"weights": name})
    assert response.status_code in (400, 422)
    message = response.get_json()["error"]["message"]
    assert str(base) not in message and os.sep + "tmp" not in message
    if name == "garbage.pt":
        assert "weights/garbage.json" in message


class RunsCode:
    """Unpickling this would call ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_weights_that_carry_code_are_refused_and_the_code_never_runs(tmp_path):
    marker = tmp_path / "ran"
    target = tmp_path / "model.pt"
    torch.save({"conv.weight": RunsCode(marker)}, target)
    card_path(target).write_text(json.dumps({"architecture": "classic",
                                             "sha256": file_sha256(target)}))
    with pytest.raises(WeightsError, match="cannot be loaded"):
        DigitClassifier(target, device="cpu")
    assert not marker.exists()
