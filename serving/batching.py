"""Dynamic batching: concurrent requests of one worker share a run of the network.

Each request hands its prepared inputs to ``DynamicBatcher.submit`` and waits.
One thread gathers what arrives for at most ``max_delay`` seconds after the
first waiting request, or until ``max_batch`` inputs are waiting, runs them
through the network together and hands every request its own answers, in its
own order. A lone request waits no longer than ``max_delay``. Requests for
different classifiers (a reload in between) never share a batch. When a batch
fails, each of its requests is run again alone, so that only the request whose
inputs fail gets the error.

It pays where one run of a batch costs much less than a run per input (a GPU,
or threaded workers on a CPU with cores to spare); on a worker that serves one
request at a time there is never anything to gather.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

# Runs one batch: (classifier, prepared inputs) -> one answer per input, in order.
BatchRunner = Callable[[Any, Sequence[Any]], list[Any]]


@dataclass
class _Submission:
    classifier: Any
    items: Sequence[Any]
    answer: Future = field(default_factory=Future)


class DynamicBatcher:
    """Gathers concurrent submissions into batches for ``run_batch``; one thread per batcher."""

    def __init__(self, run_batch: BatchRunner, max_batch: int = 32,
                 max_delay: float = 0.002) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if not 0.0 <= max_delay <= 1.0:
            raise ValueError(f"max_delay is in seconds, from 0 to 1, not {max_delay}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._waiting: queue.Queue[_Submission | None] = queue.Queue()
        self._thread = threading.Thread(target=self._serve, name="dynamic-batcher", daemon=True)
        self._thread.start()

    def submit(self, classifier: Any, items: Sequence[Any]) -> list[Any]:
        """The answers for ``items``, run in a batch with whatever else arrives meanwhile."""
        if not items:
            return []
        submission = _Submission(classifier, items)
        self._waiting.put(submission)
        return submission.answer.result()

    def close(self) -> None:
        """Stop the gathering thread once the submissions already waiting are answered."""
        self._waiting.put(None)
        self._thread.join(timeout=10)

    def _serve(self) -> None:
        while True:
            first = self._waiting.get()
            if first is None:
                return
            batch, stop = self._gather(first)
            for group in _by_classifier(batch):
                self._answer(group)
            if stop:
                return

    def _gather(self, first: _Submission) -> tuple[list[_Submission], bool]:
        """``first`` and what arrives until the delay is up or the batch is full."""
        batch, size = [first], len(first.items)
        deadline = time.monotonic() + self.max_delay
        while size < self.max_batch:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                submission = self._waiting.get(timeout=remaining)
            except queue.Empty:
                break
            if submission is None:
                return batch, True
            batch.append(submission)
            size += len(submission.items)
        return batch, False

    def _answer(self, group: list[_Submission]) -> None:
        """Run one classifier's submissions together; alone, each, if the batch fails."""
        items = [item for submission in group for item in submission.items]
        try:
            answers = self.run_batch(group[0].classifier, items)
        except Exception as error:
            if len(group) == 1:
                group[0].answer.set_exception(error)
                return
            for submission in group:
                self._answer([submission])
            return
        start = 0
        for submission in group:
            end = start + len(submission.items)
            submission.answer.set_result(answers[start:end])
            start = end


def _by_classifier(batch: list[_Submission]) -> list[list[_Submission]]:
    """The submissions grouped by the classifier they asked for, in order of arrival."""
    groups: dict[int, list[_Submission]] = {}
    for submission in batch:
        groups.setdefault(id(submission.classifier), []).append(submission)
    return list(groups.values())
