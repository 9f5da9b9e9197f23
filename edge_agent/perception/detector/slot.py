"""The detector the running loop calls, swappable while it runs (remote model updates).

The detector loop and every camera pipeline call ``DetectorSlot.detect``; a model update swaps what is behind
it between two calls, so cameras keep their readers, trackers and rules. While a new model is *on probation*
(``swap(new, fallback=old)``) a call that raises falls back to the old model at once (that frame is detected
again with it) and the probation ends in failure; ``busy_for`` lets a watchdog see a call that never returns.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from edge_agent.contract import ModelRef
from edge_agent.types import Detections, Image

log = logging.getLogger(__name__)


class Detector(Protocol):
    @property
    def model_name(self) -> str: ...

    @property
    def model_sha256(self) -> str: ...

    @property
    def backend_name(self) -> str: ...

    @property
    def backend_version(self) -> str: ...

    def detect(self, images: Sequence[Image]) -> list[Detections]: ...


def ref_of(detector: Detector) -> ModelRef:
    return ModelRef(
        name=detector.model_name,
        sha256=detector.model_sha256,
        backend=detector.backend_name,
        backend_version=detector.backend_version,
    )


class DetectorSlot:
    """Holds the current detector; ``detect`` is what the loop calls. Thread-safe swaps."""

    def __init__(self, detector: Detector, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._current = detector
        self._fallback: Detector | None = None
        self._clock = clock
        self._call_started: float | None = None
        self._call_detector: Detector | None = None
        self.calls = 0
        self.failure: str | None = None  # why the last probation ended (a call raised)
        self.last_ref = ref_of(detector)  # the model that produced the latest results (events name it)

    @property
    def current(self) -> Detector:
        return self._current

    def swap(self, new: Detector, *, fallback: Detector | None = None) -> Detector:
        """Put ``new`` in (on probation when ``fallback`` is given); returns the one it replaced."""
        with self._lock:
            old, self._current, self._fallback = self._current, new, fallback
            self.failure = None
        log.info("detector swapped: %s -> %s", old.model_name, new.model_name)
        return old

    def end_probation(self) -> None:
        with self._lock:
            self._fallback = None

    def busy_for(self, detector: Detector) -> float:
        """Seconds the call in progress has been running on ``detector`` (0 when it is not in a call)."""
        with self._lock:
            started, who = self._call_started, self._call_detector
        return 0.0 if started is None or who is not detector else self._clock() - started

    def detect(self, images: Sequence[Image]) -> list[Detections]:
        with self._lock:
            detector = self._current
            self._call_started, self._call_detector = self._clock(), detector
        try:
            results = detector.detect(images)
        except Exception as err:
            with self._lock:
                fallback = self._fallback if self._current is detector else None
                if fallback is not None:
                    self._current, self._fallback = fallback, None
                    self.failure = f"{type(err).__name__}: {err}"
            if fallback is None:
                raise
            log.error("new model %s failed (%s); back to %s", detector.model_name, err, fallback.model_name)
            results = fallback.detect(images)
            detector = fallback
        finally:
            with self._lock:
                self._call_started = self._call_detector = None
        self.calls += 1
        self.last_ref = ref_of(detector)
        return results
