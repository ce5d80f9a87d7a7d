"""Hot reload: swap new weights into a running service, in every worker, without a restart.

The process that is asked to reload loads the new weights beside the model it
serves and checks them (the sha256 its card records, the backend against
eager mode); only then does it swap them in, in one assignment. A file that
fails a check leaves the old model serving. The old model's memory is freed
as soon as no request still holds it.

Workers of one server share a folder (``DIGITS_STATE_DIR``; gunicorn.conf.py
makes one per server). The reloading worker records the new weights' name and
sha256 in a small file there; every worker stats that file before each
request, and when it has changed loads exactly those weights and swaps them in.
A worker started later (a replacement for one that died) begins with them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from model import DigitClassifier, WeightsError, release_memory
from runtime.files import write_atomically

# Loads the named weights file; with a sha256, refuses any other file content.
Loader = Callable[[str, str | None], DigitClassifier]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedWeights:
    """Which weights a server serves: the file name inside weights/ and its sha256."""

    weights: str
    sha256: str


class SharedState:
    """The file through which the workers of one server agree on the weights they serve."""

    FILE_NAME = "served-weights.json"

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"state folder {self.folder} does not exist; create it or unset it")
        self.path = self.folder / self.FILE_NAME

    def signature(self) -> tuple[int, int, int] | None:
        """What changes whenever the file is rewritten (a cheap stat), or None without a file."""
        try:
            status = self.path.stat()
        except FileNotFoundError:
            return None
        # Every write replaces the file, so its inode changes even within one mtime tick.
        return status.st_ino, status.st_mtime_ns, status.st_size

    def read(self) -> ServedWeights | None:
        """The recorded weights, or None when nothing (readable) was recorded."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return ServedWeights(weights=str(raw["weights"]), sha256=str(raw["sha256"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as error:
            log.error("ignoring the unreadable state file %s: %s", self.path, error)
            return None

    def write(self, served: ServedWeights) -> tuple[int, int, int] | None:
        """Record ``served`` atomically (write aside, then rename); its new signature."""
        write_atomically(self.path, json.dumps(asdict(served)))
        return self.signature()


class ModelSlot:
    """The model one process serves, replaced atomically by ``reload`` or ``follow``.

    ``current`` is read without a lock: a request takes the classifier once and
    uses it to the end, so a swap never changes a model under a running request.
    """

    def __init__(self, load: Loader, weights: str, state: SharedState | None = None) -> None:
        self._load = load
        self._state = state
        self._reload_lock = threading.Lock()  # one reload at a time per process
        self._seen = state.signature() if state else None
        self._served = self._load_initial(weights)

    def _load_initial(self, weights: str) -> tuple[str, DigitClassifier]:
        """The weights the server's other workers serve if any were recorded, else ``weights``."""
        recorded = self._state.read() if self._state else None
        if recorded is not None:
            try:
                return recorded.weights, self._load(recorded.weights, recorded.sha256)
            except (WeightsError, ValueError) as error:
                log.error("cannot load the recorded weights %s, loading %s: %s",
                          recorded.weights, weights, error)
        return weights, self._load(weights, None)

    @property
    def served(self) -> tuple[str, DigitClassifier]:
        """The weights' file name (inside weights/) and the classifier serving, read at once."""
        return self._served

    @property
    def current(self) -> DigitClassifier:
        """The classifier serving now."""
        return self._served[1]

    @property
    def weights(self) -> str:
        """The file name, inside weights/, of the weights serving now."""
        return self._served[0]

    def reload(self, weights: str | None = None) -> DigitClassifier:
        """Load ``weights`` (default: the current file name again), check, swap, tell the others.

        Raises ``WeightsError`` (or ``ValueError`` for a name outside weights/)
        and keeps the old model when the new file fails a check.
        """
        name = weights or self.weights
        with self._reload_lock:
            classifier = self._load(name, None)
            self._swap(name, classifier)
            if self._state is not None:
                self._seen = self._state.write(ServedWeights(name, classifier.sha256))
        log.info("now serving %s (sha256 %s)", name, classifier.sha256)
        return classifier

    def follow(self) -> bool:
        """Load the weights another worker recorded, if the record changed; True if swapped.

        Costs one stat when nothing changed. A failure is logged and the old
        model keeps serving until the record changes again.
        """
        if self._state is None or self._state.signature() == self._seen:
            return False
        with self._reload_lock:
            signature = self._state.signature()
            if signature == self._seen:
                return False  # another thread of this process followed it meanwhile
            self._seen = signature
            recorded = self._state.read()
            if recorded is None or recorded == ServedWeights(self.weights, self.current.sha256):
                return False
            try:
                classifier = self._load(recorded.weights, recorded.sha256)
            except (WeightsError, ValueError) as error:
                log.error("keeping %s: cannot load the recorded weights %s: %s",
                          self.weights, recorded.weights, error)
                return False
            self._swap(recorded.weights, classifier)
        log.info("now serving %s (sha256 %s), as recorded by another worker",
                 recorded.weights, recorded.sha256)
        return True

    def _swap(self, name: str, classifier: DigitClassifier) -> None:
        """Serve ``classifier`` from now on and free the old one's memory."""
        old_device = self.current.device
        self._served = (name, classifier)  # a single assignment: requests see old or new
        release_memory(old_device)
