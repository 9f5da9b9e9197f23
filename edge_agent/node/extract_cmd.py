"""The ``extract`` command: cut a camera's recorded footage for a time range and upload it as a clip.

Answers, in the order central turns them into an extraction's states:

* ``refused: not-available: ...`` when nothing of the range is recorded: outside the retention (with what the
  recording does cover), recording off, or the camera was down the whole time;
* ``progress`` ``recording-found: ...`` once segments overlapping the range were found;
* ``progress`` ``uploading ...`` while the clip goes to central through the evidence upload
  (``PUT /api/v1/evidence/<sha256>``: content-addressed, so an interrupted upload is simply sent again and
  central re-hashes what it gets);
* ``ok`` with the clip's hash and the time range it really covers (cuts start on a keyframe, at most one second
  before the asked start).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path

from edge_agent.contract import EvidenceKind, ExtractArgs, ExtractResult
from edge_agent.evidence.footage import FootageStore
from edge_agent.evidence.snapshot import EvidenceFile, EvidenceStore
from edge_agent.node.commands import CommandRefused, Progress

log = logging.getLogger(__name__)


def _fmt(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


class ExtractCommand:
    def __init__(
        self,
        footage: FootageStore | None,
        cameras: Callable[[], Collection[str]],
        store: EvidenceStore,
        upload: Callable[[EvidenceFile], None],
    ) -> None:
        self._footage = footage
        self._cameras = cameras
        self._store = store
        self._upload = upload

    def __call__(self, args: ExtractArgs, progress: Progress) -> ExtractResult:
        known = self._cameras()
        if args.camera_id not in known:
            raise CommandRefused(
                f"camera_id: unknown camera {args.camera_id} (node has {', '.join(sorted(known))})"
            )
        if self._footage is None:
            raise CommandRefused(
                "not-available: this node does not record footage (recording.enabled is off)"
            )
        covered = self._footage.covered(args.camera_id)
        if covered is None:
            raise CommandRefused(
                f"not-available: no recording of {args.camera_id} yet (camera offline or starting)"
            )
        first, last = covered
        if args.end <= first or args.start >= last:
            raise CommandRefused(
                f"not-available: outside retention: the recording of {args.camera_id} covers "
                f"{_fmt(first)} to {_fmt(last)}"
            )
        with tempfile.TemporaryDirectory(prefix="extract-") as tmp:
            out = Path(tmp) / "clip.mp4"
            try:
                start, end, segments = self._footage.cut(args.camera_id, args.start, args.end, out)
            except LookupError:
                raise CommandRefused(
                    f"not-available: no recording of {args.camera_id} in that range (camera offline then)"
                ) from None
            progress.report(0.3, f"recording-found: {segments} segment(s), {_fmt(start)} to {_fmt(end)}")
            data = out.read_bytes()
        file = self._store.put(data, EvidenceKind.CLIP, "video/mp4")
        progress.report(0.6, f"uploading {len(data)} bytes")
        self._upload(file)
        log.info(
            "extract of %s %s..%s uploaded (%s)", args.camera_id, _fmt(start), _fmt(end), file.ref.sha256[:12]
        )
        return ExtractResult(
            sha256=file.ref.sha256,
            size=file.ref.size,
            recorded_start=start,
            recorded_end=end,
            segments=segments,
        )
