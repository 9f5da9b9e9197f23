"""Evidence images: an annotated snapshot (zone, boxes, track ids, measurements) addressed by its SHA-256.

Files are written to the node's evidence folder under their hash before anything is sent, so an upload that
fails can be retried from disk and central can check every byte it receives.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_agent.contract import EvidenceKind, EvidenceRef
from edge_agent.rules.base import TrackSnapshot
from edge_agent.types import Image

ZONE_COLOUR = (0, 200, 255)  # amber, BGR
BOX_COLOUR = (40, 40, 230)  # red
TEXT_COLOUR = (255, 255, 255)


@dataclass(frozen=True, slots=True)
class EvidenceFile:
    ref: EvidenceRef
    path: Path


def annotate(
    image: Image,
    zone_px: Sequence[tuple[float, float]],
    objects: Sequence[TrackSnapshot],
    caption: str,
) -> Image:
    """Draw the zone (translucent), each object's box with its track id and label, and a caption bar."""
    out = image.copy()
    poly = np.array([[round(x), round(y)] for x, y in zone_px], dtype=np.int32)
    overlay = out.copy()
    cv2.fillPoly(overlay, [poly], ZONE_COLOUR)
    cv2.addWeighted(overlay, 0.25, out, 0.75, 0, dst=out)
    cv2.polylines(out, [poly], isClosed=True, color=ZONE_COLOUR, thickness=2, lineType=cv2.LINE_AA)
    for obj in objects:
        x1, y1, x2, y2 = (round(float(v)) for v in obj.xyxy)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, 2, cv2.LINE_AA)
        label = f"#{obj.track_id} {obj.label} {obj.score:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        ty = max(th + 4, y1)
        cv2.rectangle(out, (x1, ty - th - 4), (x1 + tw + 4, ty), BOX_COLOUR, -1)
        cv2.putText(out, label, (x1 + 2, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, TEXT_COLOUR, 1, cv2.LINE_AA)
    (cw, ch), _ = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 1)
    cv2.rectangle(out, (0, 0), (min(out.shape[1], cw + 12), ch + 12), (0, 0, 0), -1)
    cv2.putText(out, caption, (6, ch + 5), cv2.FONT_HERSHEY_SIMPLEX, 0.6, TEXT_COLOUR, 1, cv2.LINE_AA)
    return out


def encode_jpeg(image: Image, quality: int = 90) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return bytes(buf.tobytes())


class EvidenceStore:
    """The node's local, content-addressed evidence folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, data: bytes, kind: EvidenceKind, content_type: str) -> EvidenceFile:
        digest = hashlib.sha256(data).hexdigest()
        path = self.root / digest[:2] / digest
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{digest}.part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        ref = EvidenceRef.model_validate(
            {"kind": kind, "sha256": digest, "content_type": content_type, "size": len(data)}
        )
        return EvidenceFile(ref, path)

    def path_of(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256
