"""The ``model`` command: install a new detector without a trip to the box, and take it back if it misbehaves.

Steps, each reported as ``progress`` and each able to stop the update with the old model untouched:

1. **download** ``GET <central>/api/v1/models/<sha256>/file`` with the node's own token, streamed to
   ``<state>/models/<sha256[:16]>/<name>.part`` while hashing; a size or hash that differs from what central
   recorded is refused and the file deleted (a corrupt or substituted file never loads);
2. **load** it with the same ``OnnxDetector`` the agent uses (shape and class checks, a warm-up run);
3. **trial** on a live frame of one of the node's cameras, bounded by ``trial_timeout_s``;
4. **swap** it into the ``DetectorSlot`` between two detector calls: cameras keep running, events from then on
   name the new model, the retained status and the heartbeat report it;
5. **watch** for ``watch_s``: a call that raises, or one that runs longer than ``stall_s`` (a stall), swaps the
   old model back by itself and the command ends ``failed: rolled back ...``.

Only after the watch is the new model recorded in ``<state>/models/active.json``, so a restart keeps it; a
rolled-back model is never started again by a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

import httpx

from edge_agent.config import AgentConfig
from edge_agent.contract import ModelArgs, ModelResult
from edge_agent.delivery.items import outbox_path
from edge_agent.node.commands import CommandRefused, Progress
from edge_agent.node.statefile import write_atomic
from edge_agent.perception.detector.slot import Detector, DetectorSlot, ref_of
from edge_agent.types import Frame

log = logging.getLogger(__name__)

ACTIVE_FILE: Final = "active.json"
CHUNK: Final = 1 << 20
WATCH_TICK_S: Final = 0.2


def models_dir(cfg: AgentConfig) -> Path:
    """Where updates keep downloaded models: ``<state dir>/models`` (the outbox's folder when unset)."""
    return (cfg.state.dir or outbox_path(cfg).parent) / "models"


def active_model_path(cfg: AgentConfig) -> Path | None:
    """The model a past update installed (if its file is still there and intact), else None."""
    record = models_dir(cfg) / ACTIVE_FILE
    try:
        data = json.loads(record.read_text())
        path = Path(data["path"])
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if digest != data.get("sha256"):
        log.error("installed model %s no longer matches its hash; starting the configured one", path)
        return None
    return path


class ModelUpdate:
    """``handler(args, progress)`` for the command runner."""

    def __init__(
        self,
        slot: DetectorSlot,
        http: Callable[[], httpx.Client],
        models_dir: Path,
        load: Callable[[Path], Detector],
        latest_frame: Callable[[], Frame | None],
        on_swapped: Callable[[Detector], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._slot = slot
        self._http = http
        self._dir = models_dir
        self._load = load
        self._latest_frame = latest_frame
        self._on_swapped = on_swapped
        self._clock = clock
        self._sleep = sleep

    def __call__(self, args: ModelArgs, progress: Progress) -> ModelResult:
        old = self._slot.current
        if old.model_sha256 == args.sha256:
            raise CommandRefused(f"sha256: {args.name} ({args.sha256[:12]}) is already running")
        progress.report(0.05, f"downloading {args.name} ({args.size} bytes)")
        path = self._download(args, old)
        progress.report(0.5, "loading")
        try:
            new = self._load(path)
        except Exception as err:
            raise CommandRefused(f"the model does not load: {err}; {old.model_name} keeps running") from None
        progress.report(0.6, "trial run on a live frame")
        trial_ms, found = self._trial(new, old, args.trial_timeout_s)
        progress.report(0.7, f"swapping in (trial {trial_ms:.0f} ms, {found} objects)")
        self._slot.swap(new, fallback=old)
        self._on_swapped(new)
        log.info("model %s swapped in; watching it for %.0f s", new.model_name, args.watch_s)
        progress.report(0.8, f"watching the detector loop for {args.watch_s:.0f} s")
        watched = self._watch(new, old, args)
        self._slot.end_probation()
        self._record_active(path, args.sha256)
        return ModelResult(
            model=ref_of(new),
            previous=ref_of(old),
            input_size=int(getattr(new, "input_size", 0) or 1),
            classes=len(getattr(new, "names", ())) or 1,
            trial_ms=round(trial_ms, 1),
            trial_detections=found,
            watched_calls=watched,
        )

    # -- steps ----------------------------------------------------------------------------------------------

    def _download(self, args: ModelArgs, old: Detector) -> Path:
        folder = self._dir / args.sha256[:16]
        folder.mkdir(parents=True, exist_ok=True)
        final, part = folder / args.name, folder / f"{args.name}.part"
        digest, size = hashlib.sha256(), 0
        try:
            with self._http().stream("GET", args.url) as response:
                if response.status_code != 200:
                    raise CommandRefused(
                        f"download: central answered HTTP {response.status_code}: "
                        f"{response.read()[:200].decode(errors='replace')}; {old.model_name} keeps running"
                    )
                with part.open("wb") as out:
                    for chunk in response.iter_bytes(CHUNK):
                        size += len(chunk)
                        if size > args.size:
                            break
                        digest.update(chunk)
                        out.write(chunk)
        except httpx.HTTPError as err:
            part.unlink(missing_ok=True)
            raise RuntimeError(f"download failed: {type(err).__name__}: {err}") from None
        got = digest.hexdigest()
        if size != args.size or got != args.sha256:
            part.unlink(missing_ok=True)
            raise CommandRefused(
                f"sha256: the downloaded file ({size} bytes, sha256 {got[:16]}...) is not the model central "
                f"recorded ({args.size} bytes, {args.sha256[:16]}...): refused, {old.model_name} keeps running"
            )
        part.replace(final)
        return final

    def _trial(self, new: Detector, old: Detector, timeout_s: float) -> tuple[float, int]:
        frame = self._latest_frame()
        if frame is None:
            raise CommandRefused(
                f"no live frame to try the model on (cameras down?); {old.model_name} keeps running"
            )
        outcome: list[object] = []

        def run() -> None:
            t0 = time.perf_counter()
            try:
                dets = new.detect([frame.image])
                outcome.append(((time.perf_counter() - t0) * 1000.0, len(dets[0])))
            except Exception as err:
                outcome.append(err)

        worker = threading.Thread(target=run, name="model-trial", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if not outcome:
            raise CommandRefused(
                f"the trial run on a live frame took longer than {timeout_s:.0f} s; {old.model_name} keeps running"
            )
        result = outcome[0]
        if isinstance(result, Exception):
            raise CommandRefused(f"the trial run failed: {result}; {old.model_name} keeps running")
        assert isinstance(result, tuple)
        return float(result[0]), int(result[1])

    def _watch(self, new: Detector, old: Detector, args: ModelArgs) -> int:
        calls0 = self._slot.calls
        deadline = self._clock() + args.watch_s
        while True:
            if self._slot.failure is not None:  # the slot already fell back to the old model
                self._roll_back(new, old, f"the new model failed in the detector loop: {self._slot.failure}")
            busy = self._slot.busy_for(new)
            if busy > args.stall_s:
                self._roll_back(
                    new,
                    old,
                    f"the detector loop stalled: a call on the new model ran {busy:.1f} s (stall_s {args.stall_s:g})",
                )
            if self._clock() >= deadline:
                return self._slot.calls - calls0
            self._sleep(WATCH_TICK_S)

    def _roll_back(self, new: Detector, old: Detector, reason: str) -> None:
        if self._slot.current is new:
            self._slot.swap(old)
        self._slot.end_probation()
        self._on_swapped(old)
        log.error("model %s rolled back to %s: %s", new.model_name, old.model_name, reason)
        raise RuntimeError(f"rolled back to {old.model_name}: {reason}")

    def _record_active(self, path: Path, sha256: str) -> None:
        record = {"path": str(path.resolve()), "sha256": sha256}
        write_atomic(self._dir / ACTIVE_FILE, json.dumps(record).encode(), 0o644)
