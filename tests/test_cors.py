"""web/cors.py: other sites' pages may call the API only from the configured origins."""

from __future__ import annotations

import pytest
from helpers import upload

from web.cors import allowed_origins

SITE = "https://digits.example"
PREFLIGHT = {"Origin": SITE, "Access-Control-Request-Method": "POST",
             "Access-Control-Request-Headers": "content-type"}


@pytest.mark.parametrize("setting, origins", [
    ("", []),
    (None, []),
    ("https://a.example", ["https://a.example"]),
    (" https://a.example/ , http://b.example:8080 ,", ["https://a.example",
                                                      "http://b.example:8080"]),
    ('["https://a.example", "https://b.example"]', ["https://a.example", "https://b.example"]),
    (["https://a.example"], ["https://a.example"]),
])
def test_origins_from_the_setting(setting, origins):
    assert allowed_origins(setting) == origins


def test_no_origin_is_allowed_by_default(client):
    answer = client.options("/predict", headers=PREFLIGHT)
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert "Access-Control-Allow-Origin" not in client.get(
        "/model", headers={"Origin": SITE}).headers


def test_a_preflight_from_an_allowed_origin(make_app):
    client = make_app(CORS_ORIGINS=f"{SITE},https://other.example").test_client()
    answer = client.options("/predict", headers=PREFLIGHT)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == SITE
    assert "POST" in answer.headers["Access-Control-Allow-Methods"]
    assert "content-type" in answer.headers["Access-Control-Allow-Headers"].lower()


def test_answers_to_an_allowed_origin_carry_the_headers_errors_included(make_app):
    client = make_app(CORS_ORIGINS=SITE).test_client()
    error = upload(client, b"not an image")
    assert error.status_code == 400  # no Origin: no CORS headers needed
    answer = client.post("/predict", headers={"Origin": SITE}, data={})
    assert answer.status_code == 400
    assert answer.headers["Access-Control-Allow-Origin"] == SITE
    assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]


def test_other_origins_and_the_admin_routes_stay_closed(make_app):
    client = make_app(CORS_ORIGINS=SITE).test_client()
    other = client.options("/predict", headers={**PREFLIGHT, "Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    for path in ("/admin/reload", "/metrics"):
        answer = client.options(path, headers=PREFLIGHT)
        assert "Access-Control-Allow-Origin" not in answer.headers, path
