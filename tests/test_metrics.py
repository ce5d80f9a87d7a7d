"""serving/metrics.py and web/metrics.py: what /metrics counts, who may read it, and gunicorn."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3
from helpers import encode_image, paper_digit, running_gunicorn, upload, wait_for_workers
from prometheus_client import REGISTRY
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from imaging.errors import NotAnImageError
from serving.chain import Chain
from serving.metric_files import FLUSH_SECONDS
from serving.metrics import TIMED_STAGES, timed_stage


def scrape(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics answer, by name and labels."""
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def read(client) -> dict[tuple[str, frozenset], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    return scrape(answer.get_data(as_text=True))


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_a_prediction_is_counted_timed_and_its_digit_recorded(client, heldout_digits):
    images, labels = heldout_digits
    digit = str(labels[42])
    before = read(client)

    assert upload(client, encode_image(paper_digit(images[42]))).status_code == 200

    after = read(client)
    assert value(after, "digits_http_requests_total", endpoint="/predict", method="POST",
                 status="200") == value(before, "digits_http_requests_total",
                                        endpoint="/predict", method="POST", status="200") + 1
    assert value(after, "digits_predictions_total", digit=digit) == value(
        before, "digits_predictions_total", digit=digit) + 1
    assert value(after, "digits_http_request_duration_seconds_count", endpoint="/predict") == \
        value(before, "digits_http_request_duration_seconds_count", endpoint="/predict") + 1
    for stage in TIMED_STAGES:
        assert value(after, "digits_stage_duration_seconds_count", stage=stage) == value(
            before, "digits_stage_duration_seconds_count", stage=stage) + 1, stage
    assert value(after, "digits_batch_size_sum") == value(before, "digits_batch_size_sum") + 1
    # Only the /metrics request itself is in flight while it is answered.
    assert value(after, "digits_http_requests_in_flight") == 1


def test_rejected_uploads_are_counted_by_code(client):
    before = read(client)
    assert upload(client, b"%PDF-1.4 not an image").status_code == 400
    assert client.post("/predict", data={}).status_code == 400
    after = read(client)
    for code in ("not_an_image", "missing_file"):
        assert value(after, "digits_rejected_uploads_total", code=code) == value(
            before, "digits_rejected_uploads_total", code=code) + 1
    # A failed upload reaches decode but no further: no batch, no prediction.
    assert value(after, "digits_batch_size_count") == value(before, "digits_batch_size_count")


def test_odd_methods_share_one_label(client):
    client.open("/nowhere", method="BREW")
    assert value(read(client), "digits_http_requests_total", endpoint="unmatched",
                 method="other", status="404") >= 1
    assert not any(labels and ("method", "BREW") in labels for _, labels in read(client))


def test_every_digit_is_listed_before_any_is_predicted(client):
    samples = read(client)
    for digit in range(10):
        assert ("digits_predictions_total", frozenset({("digit", str(digit))})) in samples


def in_process(name: str, **labels: str) -> float:
    """A sample of this process's own registry (what /metrics shows outside gunicorn)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_model_loads_are_counted_with_their_duration(make_app):
    before = in_process("digits_model_loads_total", kind="load", outcome="ok")
    client = make_app(BACKEND="eager").test_client()
    assert in_process("digits_model_loads_total", kind="load", outcome="ok") == before + 1
    reloads = value(read(client), "digits_model_loads_total", kind="reload", outcome="ok")

    assert client.post("/admin/reload").status_code == 200
    assert client.post("/admin/reload", json={"weights": "missing.pt"}).status_code == 422

    after = read(client)
    assert value(after, "digits_model_loads_total", kind="reload", outcome="ok") == reloads + 1
    assert value(after, "digits_model_loads_total", kind="reload", outcome="failed") >= 1
    assert value(after, "digits_model_load_duration_seconds_sum", kind="reload") > 0


def test_the_stage_wrapper_times_a_stage_that_fails_too():
    decoded = in_process("digits_stage_duration_seconds_count", stage="decode")
    preprocessed = in_process("digits_stage_duration_seconds_count", stage="preprocess")
    with pytest.raises(NotAnImageError):
        Chain(wrap=timed_stage).prepare(b"not an image")
    assert in_process("digits_stage_duration_seconds_count", stage="decode") == decoded + 1
    assert in_process("digits_stage_duration_seconds_count", stage="preprocess") == preprocessed


def test_metrics_answer_loopback_clients_only_by_default(client):
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 200
    answer = client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert answer.status_code == 403
    assert answer.json["error"]["code"] == "forbidden"


def test_metrics_open_to_anyone(make_app):
    client = make_app(METRICS_ACCESS="open").test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 200


def test_metrics_behind_a_key(make_app):
    client = make_app(METRICS_ACCESS="key", METRICS_KEY="s3cret").test_client()
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer s3cret"}).status_code == 200
    for sent in ("Bearer wrong", "s3cret", ""):
        answer = client.get("/metrics", environ_base=remote, headers={"Authorization": sent})
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    # A loopback client needs the key too.
    assert client.get("/metrics").status_code == 401


def test_the_metrics_key_alone_opens_metrics_when_an_api_key_is_set(make_app):
    client = make_app(API_KEY="api-key", METRICS_ACCESS="key", METRICS_KEY="s3cret").test_client()
    remote = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/metrics", environ_base=remote,
                      headers={"Authorization": "Bearer api-key"}).status_code == 401
    # the API key still guards the API
    assert client.get("/model", headers={"Authorization": "Bearer s3cret"}).status_code == 401


def test_bad_metrics_settings_are_refused(make_app):
    with pytest.raises(ValueError, match="METRICS_ACCESS"):
        make_app(METRICS_ACCESS="everyone")
    with pytest.raises(ValueError, match="METRICS_KEY"):
        make_app(METRICS_ACCESS="key")


def test_openmetrics_when_the_scraper_asks(client):
    answer = client.get("/metrics", headers={"Accept": "application/openmetrics-text"})
    assert answer.status_code == 200
    assert answer.mimetype == "application/openmetrics-text"
    assert answer.get_data(as_text=True).rstrip().endswith("# EOF")


@pytest.mark.slow  # a real gunicorn server
def test_counts_add_up_across_gunicorn_workers(tmp_path, heldout_digits):
    images, _ = heldout_digits
    png = encode_image(paper_digit(images[7]))
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_1.db").write_bytes(b"left by an earlier server")
    env = {"DIGITS_DEVICE": "cpu", "DIGITS_WORKERS": "2", "DIGITS_BACKEND": "eager",
           "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    sent = 40

    def post(_):
        return urllib3.request("POST", f"{url}/predict", fields={"file": ("d.png", png)},
                               retries=False, timeout=30).status

    with running_gunicorn(env) as url:
        assert not (folder / "counter_1.db").exists()  # emptied at start
        wait_for_workers(url, 2)
        # Several at once, so that both workers answer some.
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(post, range(sent))) == [200] * sent
        # Each worker writes its values to its file within FLUSH_SECONDS.
        time.sleep(FLUSH_SECONDS * 2)
        samples = scrape(urllib3.request("GET", f"{url}/metrics", retries=False,
                                         timeout=30).data.decode())
        per_worker = [predict_count(MultiProcessCollector.merge([str(path)]))
                      for path in sorted(folder.glob("counter_*.db"))]
        # the last requests before the server stops reach the files too (worker_exit)
        with ThreadPoolExecutor(max_workers=4) as pool:
            assert list(pool.map(post, range(sent))) == [200] * sent
    after_stop = sum(predict_count(MultiProcessCollector.merge([str(path)]))
                     for path in folder.glob("counter_*.db"))

    assert after_stop == 2 * sent
    assert value(samples, "digits_http_requests_total", endpoint="/predict", method="POST",
                 status="200") == sent
    assert sum(value(samples, "digits_predictions_total", digit=str(d)) for d in range(10)) \
        == sent
    assert value(samples, "digits_model_loads_total", kind="load", outcome="ok") == 2
    assert len(per_worker) == 2 and min(per_worker) > 0 and sum(per_worker) == sent


def predict_count(families) -> float:
    """The successful /predict requests that one worker's metric file records."""
    return sum(sample.value for family in families for sample in family.samples
               if sample.name == "digits_http_requests_total"
               and sample.labels.get("endpoint") == "/predict"
               and sample.labels.get("status") == "200")
