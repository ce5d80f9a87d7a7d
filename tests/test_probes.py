"""web/probes.py: liveness and readiness, never behind a key."""

from __future__ import annotations

import pytest

import model


@pytest.mark.parametrize("path", ["/healthz", "/health"])
def test_liveness(client, path):
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.json == {"status": "ok"}


def test_ready_once_the_model_is_loaded(client):
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ready", "weights": "model.pt"}


def test_probes_need_no_key(make_app):
    client = make_app(ADMIN_KEY="k", METRICS_ACCESS="key", METRICS_KEY="k").test_client()
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    for path in ("/healthz", "/health", "/readyz"):
        assert client.get(path, environ_base=remote).status_code == 200, path


def test_not_ready_while_the_model_cannot_run(app, monkeypatch, caplog):
    classifier = app.extensions["model_slot"].current

    def broken(_batch):
        raise RuntimeError("CUDA error: device lost")

    monkeypatch.setattr(classifier, "run", broken)
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json["error"] == {"status": 503, "code": "not_ready",
                                    "message": "the model cannot run a batch now"}
    assert "device lost" in caplog.text
    assert app.test_client().get("/healthz").status_code == 200  # alive all the same


def test_a_loaded_model_was_warmed_through_the_infer_stage(make_app, monkeypatch):
    batches = []
    run = model.DigitClassifier.run

    def counting(self, batch):
        batches.append(tuple(batch.shape))
        return run(self, batch)

    monkeypatch.setattr(model.DigitClassifier, "run", counting)
    make_app(BACKEND="eager")
    assert batches == [(1, 1, 28, 28)]
