"""Requests per client per minute: off by default; over the limit a JSON 429 with Retry-After."""

from __future__ import annotations


def test_no_limit_by_default(client):
    assert all(client.get("/model").status_code == 200 for _ in range(30))


def test_over_the_limit_is_429_with_retry_after(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=3, BACKEND="eager").test_client()
    assert [client.get("/model").status_code for _ in range(3)] == [200] * 3
    response = client.get("/model")
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_each_client_has_its_own_count_and_probes_are_never_limited(make_app):
    client = make_app(RATE_LIMIT_PER_MINUTE=2, BACKEND="eager").test_client()
    other = {"environ_base": {"REMOTE_ADDR": "192.0.2.9"}}
    for _ in range(2):
        assert client.post("/predict").status_code == 400
    assert client.post("/predict").status_code == 429
    assert client.post("/predict", **other).status_code == 400
    assert all(client.get("/health").status_code == 200 for _ in range(10))
