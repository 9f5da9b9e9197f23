"""Signed case exports and their verification.

A case export is a zip holding:

* ``manifest.json``: the case, its events (facts as decided, the changes kept after a decision), every decision
  with user and time, the audit rows that concern the case and its events (with their chain hashes), and
  every other file in the zip with its SHA-256, size and content type; all times in UTC;
* ``manifest.sig``: the Ed25519 signature (base64) of the exact bytes of ``manifest.json``;
* ``summary.html``: a readable summary in Vietnamese and English;
* ``evidence/<sha256>.<ext>``: the evidence files.

``verify`` re-checks all of it and names exactly which file was changed, added or removed. The public key comes
from the caller (obtained out of band); the copy inside the manifest is only a fallback for integrity checks.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from central import signing
from central.cases import case_events
from central.db.models import AuditRow, EventRow, EvidenceRow
from central.db.wards import CaseRow, EventHistoryRow
from central.evidence import EvidenceStore
from central.i18n import translator
from central.timefmt import PageFormat, utc_text

FORMAT = "streetwatch-case-export/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
SUMMARY = "summary.html"
_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "video/mp4": "mp4", "video/webm": "webm"}
_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _event_entry(session: Session, row: EventRow) -> dict[str, Any]:
    history = session.scalars(
        select(EventHistoryRow).where(EventHistoryRow.event_id == row.event_id).order_by(EventHistoryRow.id)
    )
    return {
        "event_id": row.event_id,
        "ward_id": row.ward_id,
        "node_id": row.node_id,
        "camera_id": row.camera_id,
        "zone_id": row.zone_id,
        "rule_id": row.rule_id,
        "type": row.type,
        "phase": row.phase,
        "started_at": _iso(row.started_at),
        "observed_at": _iso(row.observed_at),
        "ended_at": _iso(row.ended_at),
        "objects": row.objects,
        "measurements": row.measurements,
        "evidence": row.evidence,
        "model": {"name": row.model_name, "sha256": row.model_sha256},
        "config_version": row.config_version,
        "received_at": _iso(row.received_at),
        "review_status": row.review_status,
        "version": row.version,
        "decisions": [
            {
                "decision": d.decision,
                "reason": d.reason,
                "username": d.username,
                "decided_at": _iso(d.decided_at),
                "event_version": d.event_version,
            }
            for d in row.decisions
        ],
        "changes_after_decision": [
            {
                "received_at": _iso(h.received_at),
                "phase": h.phase,
                "observed_at": _iso(h.observed_at),
                "ended_at": _iso(h.ended_at),
                "objects": h.objects,
                "measurements": h.measurements,
                "evidence": h.evidence,
            }
            for h in history
        ],
    }


def _audit_rows(session: Session, case: CaseRow, event_ids: list[str]) -> list[dict[str, Any]]:
    targets = [f"case:{case.id}", *(f"event:{e}" for e in event_ids)]
    rows: list[AuditRow] = []
    for start in range(0, len(targets), 500):  # keep IN lists short on every backend
        chunk = targets[start : start + 500]
        rows += session.scalars(select(AuditRow).where(or_(AuditRow.target.in_(chunk))))
    rows.sort(key=lambda r: r.id)
    return [
        {
            "id": r.id,
            "at": _iso(r.at),
            "actor": r.username,
            "action": r.action,
            "target": r.target,
            "details": r.detail,
            "prev_hash": r.prev_hash,
            "hash": r.hash,
        }
        for r in rows
    ]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def build_case_export(
    session: Session,
    store: EvidenceStore,
    case: CaseRow,
    key: Ed25519PrivateKey,
    *,
    username: str,
    now: datetime,
    timezone: str,
) -> bytes:
    """The signed zip of ``case`` (caller checks scope and writes the audit row)."""
    events = case_events(session, case)
    event_entries = [_event_entry(session, e) for e in events]
    files: list[dict[str, Any]] = []
    payloads: list[tuple[str, Path]] = []
    seen: set[str] = set()
    for event in events:
        for ref in event.evidence:
            sha = str(ref.get("sha256", ""))
            if sha in seen:
                continue
            seen.add(sha)
            row = session.get(EvidenceRow, sha)
            path = store.path_of(sha)
            if row is None or not path.is_file():
                continue  # referenced but never uploaded: listed in the event's evidence, no file
            name = f"evidence/{sha}.{_EXTENSIONS.get(row.content_type, 'bin')}"
            files.append(
                {
                    "path": name,
                    "sha256": sha,
                    "size": row.size,
                    "content_type": row.content_type,
                    "kind": ref.get("kind"),
                    "event_id": event.event_id,
                }
            )
            payloads.append((name, path))
    public = key.public_key()
    case_entry = {
        "id": case.id,
        "title": case.title,
        "description": case.description,
        "owner": case.owner,
        "ward_id": case.ward_id,
        "created_at": _iso(case.created_at),
        "updated_at": _iso(case.updated_at),
    }
    summary = _summary(case_entry, events, files, username=username, now=now, timezone=timezone, key=public)
    files.append(
        {
            "path": SUMMARY,
            "sha256": _sha(summary),
            "size": len(summary),
            "content_type": "text/html; charset=utf-8",
            "kind": "summary",
            "event_id": None,
        }
    )
    manifest = {
        "format": FORMAT,
        "generated_at": _iso(now),
        "generated_by": username,
        "display_timezone": timezone,
        "signing_key": {
            "algorithm": "Ed25519",
            "public_key": base64.b64encode(signing.raw_public(public)).decode("ascii"),
            "fingerprint": signing.fingerprint(public),
        },
        "case": case_entry,
        "events": event_entries,
        "audit": _audit_rows(session, case, [e.event_id for e in events]),
        "files": files,
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8")
    signature = base64.b64encode(key.sign(manifest_bytes))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST, manifest_bytes)
        archive.writestr(SIGNATURE, signature)
        archive.writestr(SUMMARY, summary)
        for name, path in payloads:
            archive.write(path, name, compress_type=zipfile.ZIP_STORED)  # JPEG/MP4 do not deflate
    return out.getvalue()


def _summary(
    case: dict[str, Any],
    events: list[EventRow],
    files: list[dict[str, Any]],
    *,
    username: str,
    now: datetime,
    timezone: str,
    key: Ed25519PublicKey,
) -> bytes:
    sections = []
    for lang in ("vi", "en"):
        t = translator(lang)
        sections.append({"lang": lang, "t": t, "fmt": PageFormat(timezone, lang, t)})
    html = _TEMPLATES.get_template("case_summary.html").render(
        case=case,
        events=events,
        files=files,
        sections=sections,
        username=username,
        generated_utc=utc_text(now),
        now=now,
        timezone=timezone,
        fingerprint=signing.fingerprint(key),
    )
    return html.encode("utf-8")


@dataclass
class VerifyReport:
    """What ``verify`` found; ``ok`` only when the signature holds and every file matches."""

    signature_ok: bool = False
    key_source: str = ""
    changed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return self.signature_ok and not (self.changed or self.added or self.removed or self.errors)

    def lines(self) -> list[str]:
        out = [f"error: {e}" for e in self.errors]
        out += [f"changed: {p}" for p in self.changed]
        out += [f"added: {p}" for p in self.added]
        out += [f"removed: {p}" for p in self.removed]
        if self.ok:
            out.append(
                f"OK: signature valid ({self.key_source}), {self.files_checked} files match the manifest"
            )
        return out


def verify(zip_path: Path, public_key: Ed25519PublicKey | None = None) -> VerifyReport:
    """Check the signature of the manifest, then every file against it; name each difference."""
    report = VerifyReport()
    try:
        archive = zipfile.ZipFile(zip_path)
    except (OSError, zipfile.BadZipFile) as exc:
        report.errors.append(f"not a readable zip: {exc}")
        return report
    with archive:
        names = [i.filename for i in archive.infolist() if not i.is_dir()]
        if MANIFEST not in names:
            report.removed.append(MANIFEST)
            return report
        if SIGNATURE not in names:
            report.removed.append(SIGNATURE)
            return report
        manifest_bytes = archive.read(MANIFEST)
        try:
            manifest = json.loads(manifest_bytes)
            listed = {str(f["path"]): f for f in manifest["files"]}
        except (ValueError, KeyError, TypeError) as exc:
            report.changed.append(f"{MANIFEST} (unreadable: {exc})")
            return report
        if public_key is None:
            try:
                public_key = signing.load_public(manifest["signing_key"]["public_key"])
                report.key_source = "key inside the manifest: proves integrity only, not who signed"
            except (KeyError, ValueError, TypeError) as exc:
                report.errors.append(f"no public key given and none readable in the manifest: {exc}")
                return report
        else:
            report.key_source = f"given key {signing.fingerprint(public_key)}"
        try:
            public_key.verify(base64.b64decode(archive.read(SIGNATURE), validate=True), manifest_bytes)
            report.signature_ok = True
        except (InvalidSignature, ValueError):
            report.changed.append(f"{MANIFEST} (signature does not match the given key)")
        for name in sorted(listed):
            entry = listed[name]
            if name not in names:
                report.removed.append(name)
                continue
            data = archive.read(name)
            report.files_checked += 1
            if _sha(data) != entry.get("sha256") or len(data) != entry.get("size"):
                report.changed.append(name)
        for name in sorted(set(names) - set(listed) - {MANIFEST, SIGNATURE}):
            report.added.append(name)
    return report
