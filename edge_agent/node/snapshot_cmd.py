"""The ``snapshot`` command: a fresh frame of each camera, uploaded to central as evidence, hashes answered.

An operator draws zones on what the camera sees *now* (a camera may have been moved since the last event), so
the frame is the reader's newest one, refused as stale beyond ``max_age_s``. The JPEG goes through the same
content-addressed evidence store and the same ``PUT /api/v1/evidence/{sha256}`` as event evidence (central
re-hashes it), but synchronously from the command's worker thread rather than via the outbox: the answer is
only useful while the operator waits, and an ``ok`` must mean central already has the bytes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Final

import httpx

from edge_agent.capture.reader import CameraReader
from edge_agent.contract import CameraSnapshot, EvidenceKind, SnapshotArgs, SnapshotResult
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore, encode_jpeg
from edge_agent.node.commands import CommandRefused, Progress

log = logging.getLogger(__name__)

UPLOAD_ATTEMPTS: Final = 3
RETRY_PAUSE_S: Final = 1.0


def upload_evidence(http: httpx.Client, file: EvidenceFile) -> None:
    """PUT one evidence file to central (retried a few times); raises ``RuntimeError`` with central's reason."""
    error = ""
    for attempt in range(UPLOAD_ATTEMPTS):
        try:
            response = http.put(
                f"/api/v1/evidence/{file.ref.sha256}",
                content=file.path.read_bytes(),
                headers={"Content-Type": file.ref.content_type},
            )
        except (httpx.HTTPError, OSError) as err:
            error = f"{type(err).__name__}: {err}"
        else:
            if 200 <= response.status_code < 300:
                return
            error = f"HTTP {response.status_code}: {response.text[:300]}"
            if response.status_code in (401, 403, 413, 415, 422):
                break  # the same request will be refused again
        if attempt + 1 < UPLOAD_ATTEMPTS:
            time.sleep(RETRY_PAUSE_S)
    raise RuntimeError(f"central did not accept the snapshot: {error}")


class SnapshotCommand:
    """``handler(args, progress)`` for the command runner; reads frames from the agent's capture readers."""

    def __init__(
        self,
        readers: Callable[[], Mapping[str, CameraReader]],
        store: EvidenceStore,
        upload: Callable[[EvidenceFile], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._readers = readers
        self._store = store
        self._upload = upload
        self._clock = clock

    def __call__(self, args: SnapshotArgs, progress: Progress) -> SnapshotResult:
        readers = self._readers()
        unknown = [c for c in args.cameras if c not in readers]
        if unknown:
            raise CommandRefused(
                f"cameras: unknown camera(s) {', '.join(unknown)} (node has {', '.join(readers)})"
            )
        wanted = list(args.cameras) or list(readers)
        snapshots: list[CameraSnapshot] = []
        missing: dict[str, str] = {}
        for i, camera_id in enumerate(wanted):
            frame = readers[camera_id].latest()
            if frame is None:
                missing[camera_id] = "no frame read yet (camera down or starting)"
                continue
            age = self._clock() - frame.mono
            if age > args.max_age_s:
                missing[camera_id] = f"newest frame is {age:.0f} s old (camera stalled?)"
                continue
            file = self._store.put(
                encode_jpeg(frame.image, args.quality), EvidenceKind.SNAPSHOT, "image/jpeg"
            )
            progress.report(i / len(wanted), f"uploading {camera_id}")
            self._upload(file)
            snapshots.append(
                CameraSnapshot(
                    camera_id=camera_id,
                    sha256=file.ref.sha256,
                    width=frame.width,
                    height=frame.height,
                    captured_at=frame.wall,
                )
            )
            log.info("snapshot of %s uploaded (%s)", camera_id, file.ref.sha256[:12])
        if not snapshots:
            raise RuntimeError(
                "no camera had a fresh frame: " + "; ".join(f"{k}: {v}" for k, v in missing.items())
            )
        return SnapshotResult(snapshots=snapshots, missing=missing)
