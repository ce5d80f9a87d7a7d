"""Dynamic batching: gathered batches, each request's own answers, failures kept apart."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers import encode_image, paper_digit, upload

from serving.batching import DynamicBatcher


class Recorder:
    """A batch runner that doubles each number and records the batches it saw."""

    def __init__(self, delay: float = 0.0, poison: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay
        self.poison = poison
        self.lock = threading.Lock()

    def __call__(self, classifier, items):
        with self.lock:
            self.batches.append(list(items))
        if self.poison is not None and self.poison in items:
            raise ValueError(f"cannot run {self.poison}")
        time.sleep(self.delay)
        return [(classifier, 2 * item) for item in items]


def submit_together(batcher, submissions, classifier="model"):
    """Submit each list of items from a thread of its own, all at once; their answers."""
    start = threading.Barrier(len(submissions))

    def one(items):
        start.wait()
        return batcher.submit(classifier, items)

    with ThreadPoolExecutor(len(submissions)) as pool:
        return list(pool.map(one, submissions))


def test_concurrent_submissions_share_batches_and_get_their_own_answers():
    runner = Recorder(delay=0.01)
    batcher = DynamicBatcher(runner, max_batch=64, max_delay=0.05)
    submissions = [[i * 10 + j for j in range(i % 3 + 1)] for i in range(12)]
    answers = submit_together(batcher, submissions)
    for items, answer in zip(submissions, answers, strict=True):
        assert answer == [("model", 2 * item) for item in items]
    assert len(runner.batches) < len(submissions)
    assert sorted(x for batch in runner.batches for x in batch) == sorted(
        x for items in submissions for x in items)
    batcher.close()


def test_a_batch_never_exceeds_the_size_bound_by_more_than_one_submission():
    runner = Recorder()
    batcher = DynamicBatcher(runner, max_batch=4, max_delay=0.05)
    submit_together(batcher, [[i] for i in range(16)])
    assert max(len(batch) for batch in runner.batches) <= 4
    batcher.close()


def test_a_lone_request_waits_no_longer_than_the_delay():
    batcher = DynamicBatcher(Recorder(), max_batch=8, max_delay=0.05)
    started = time.monotonic()
    assert batcher.submit("model", [1, 2]) == [("model", 2), ("model", 4)]
    assert time.monotonic() - started < 0.05 + 0.1
    batcher.close()


def test_a_full_batch_runs_without_waiting_for_the_delay():
    batcher = DynamicBatcher(Recorder(), max_batch=3, max_delay=0.5)
    started = time.monotonic()
    batcher.submit("model", [1, 2, 3])
    assert time.monotonic() - started < 0.25
    batcher.close()


def test_a_failing_input_fails_only_its_own_request():
    runner = Recorder(poison=13)
    batcher = DynamicBatcher(runner, max_batch=64, max_delay=0.05)
    submissions = [[1], [13], [2, 3]]
    start = threading.Barrier(3)

    def one(items):
        start.wait()
        try:
            return batcher.submit("model", items)
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(one, submissions))
    assert answers == [[("model", 2)], "cannot run 13", [("model", 4), ("model", 6)]]
    batcher.close()


def test_requests_for_different_classifiers_never_share_a_batch():
    runner = Recorder()
    batcher = DynamicBatcher(runner, max_batch=64, max_delay=0.05)
    start = threading.Barrier(2)

    def one(classifier):
        start.wait()
        return batcher.submit(classifier, [1])

    with ThreadPoolExecutor(2) as pool:
        old, new = pool.map(one, ["old", "new"])
    assert old == [("old", 2)] and new == [("new", 2)]
    assert all(len(batch) == 1 for batch in runner.batches)
    batcher.close()


@pytest.mark.parametrize(("max_batch", "max_delay"), [(0, 0.01), (4, -1.0), (4, 2.0)])
def test_bad_bounds_are_refused(max_batch, max_delay):
    with pytest.raises(ValueError):
        DynamicBatcher(Recorder(), max_batch=max_batch, max_delay=max_delay)


def test_the_service_batches_concurrent_requests(make_app, heldout_digits):
    app = make_app(DYNAMIC_BATCHING=True, BATCH_MAX_DELAY_MS=20)
    classifier = app.extensions["model_slot"].current
    sizes = []
    run = classifier.run
    classifier.run = lambda batch: sizes.append(len(batch)) or run(batch)
    images, labels = heldout_digits
    picks = list(range(0, 400, 50))
    start = threading.Barrier(len(picks))

    def ask(index):
        client = app.test_client()
        data = encode_image(paper_digit(images[index]))
        start.wait()
        return upload(client, data).get_json()["prediction"]

    with ThreadPoolExecutor(len(picks)) as pool:
        predictions = list(pool.map(ask, picks))
    assert predictions == [labels[i] for i in picks]
    # Each upload at least once (a lone digit the network doubts is read again in pieces),
    # in fewer runs than requests.
    assert sum(sizes) >= len(picks) and len(sizes) < len(picks)
