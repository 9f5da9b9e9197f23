"""Cases and signed exports through HTTP (SQLite and PostgreSQL): a case takes only its ward's events, the
export zip carries manifest, signature, summary and evidence, every export is audited, ``verify-case`` passes
on the download and names a changed byte, an added file and a removed file; case evidence survives retention."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central import retention
from central.db.models import AuditRow, EvidenceRow
from central.db.session import Database
from tests.central.conftest import FakeClock
from tests.central.factories import JPEG_BYTES, make_event, snapshot_ref
from tests.central.workspace import add_user, add_wards, client_as, ingest, upload
from tests.paths import ROOT


def _csrf(c: TestClient, path: str = "/cases") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', c.get(path).text)
    assert match
    return match.group(1)


def _case_with_events(admin: TestClient, db: Database) -> tuple[TestClient, str, list[str], str]:
    add_wards(db)
    add_user(db, "lan", "officer", ("w1",))
    officer = client_as(admin, "lan")
    image = JPEG_BYTES + b"case"
    sha = upload(admin, image)
    ids = []
    for k in range(2):
        event = make_event(
            node_id="node-1", camera_id="cam-1", zone_id=f"z{k}", evidence=[snapshot_ref(image)]
        )
        ingest(admin, event)
        ids.append(str(event.event_id))
    officer.post(f"/api/v1/events/{ids[0]}/decision", json={"decision": "confirm", "version": 1})
    made = officer.post(
        "/cases",
        data={
            "title": "Đỗ xe trên vỉa hè Lê Lợi",
            "description": "Tháng 3",
            "ward_id": "w1",
            "csrf_token": _csrf(officer),
        },
        follow_redirects=False,
    )
    assert made.status_code == 303
    case_id = made.headers["location"].rsplit("/", 1)[1]
    for eid in ids:
        added = officer.post(
            "/cases/add-event",
            data={"case_id": case_id, "event_id": eid, "csrf_token": _csrf(officer, f"/events/{eid}")},
            follow_redirects=False,
        )
        assert added.status_code == 303, added.text
    return officer, case_id, ids, sha


def _verify(zip_path: Path, key: Path | None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "central.cli", "verify-case", str(zip_path)]
    if key is not None:
        command += ["--public-key", str(key)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


def _rewrite(
    src: Path, dst: Path, *, change: str | None = None, add: str | None = None, drop: str | None = None
) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename == drop:
                continue
            data = zin.read(info.filename)
            if info.filename == change:
                data = data[:-1] + bytes([data[-1] ^ 0x01])
            zout.writestr(info.filename, data)
        if add:
            zout.writestr(add, b"planted")


def test_export_verifies_and_names_each_tampering(admin: TestClient, db: Database, tmp_path: Path) -> None:
    officer, case_id, ids, sha = _case_with_events(admin, db)
    response = officer.get(f"/cases/{case_id}/export.zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    original = tmp_path / "case.zip"
    original.write_bytes(response.content)
    key = tmp_path / "central.pem"
    key.write_text(officer.get("/api/v1/signing-key").text)

    with zipfile.ZipFile(original) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("manifest.json"))
        summary = archive.read("summary.html").decode()
    evidence_name = f"evidence/{sha}.jpg"
    assert names == {"manifest.json", "manifest.sig", "summary.html", evidence_name}
    assert [e["event_id"] for e in manifest["events"]] == ids
    assert manifest["events"][0]["decisions"][0]["username"] == "lan"
    assert manifest["events"][0]["decisions"][0]["decided_at"].endswith("+00:00")  # UTC in exports
    actions = {(a["action"], a["target"]) for a in manifest["audit"]}
    assert ("event.confirm", f"event:{ids[0]}") in actions and ("case.create", f"case:{case_id}") in actions
    entry = next(f for f in manifest["files"] if f["path"] == evidence_name)
    assert (entry["sha256"], entry["size"], entry["content_type"]) == (sha, len(JPEG_BYTES) + 4, "image/jpeg")
    assert "Bản xuất hồ sơ" in summary and "Case export" in summary and "Đỗ xe trên vỉa hè Lê Lợi" in summary

    ok = _verify(original, key)
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr

    for kind, kwargs, expected in (
        ("changed", {"change": evidence_name}, f"changed: {evidence_name}"),
        ("added", {"add": "evidence/extra.jpg"}, "added: evidence/extra.jpg"),
        ("removed", {"drop": evidence_name}, f"removed: {evidence_name}"),
        ("summary", {"change": "summary.html"}, "changed: summary.html"),
        ("manifest", {"change": "manifest.json"}, "changed: manifest.json"),
    ):
        tampered = tmp_path / f"{kind}.zip"
        _rewrite(original, tampered, **kwargs)
        result = _verify(tampered, key)
        assert result.returncode == 1, (kind, result.stdout)
        assert expected in result.stdout.splitlines()[0] or expected in result.stdout, (kind, result.stdout)
        assert "OK" not in result.stdout

    other_key = tmp_path / "other.pem"
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from central import signing

    other_key.write_text(signing.public_pem(Ed25519PrivateKey.generate().public_key()))
    wrong = _verify(original, other_key)
    assert wrong.returncode == 1 and "changed: manifest.json (signature does not match" in wrong.stdout

    with db.session() as s:
        exports = s.scalars(select(AuditRow).where(AuditRow.action == "case.export")).all()
    assert [(a.username, a.target) for a in exports] == [("lan", f"case:{case_id}")]


def test_a_case_takes_only_its_wards_events(admin: TestClient, db: Database) -> None:
    officer, case_id, _ids, _sha = _case_with_events(admin, db)
    other = make_event(node_id="node-2", camera_id="cam-2")
    ingest(admin, other)
    # the officer cannot even see it: 404, and nothing is added
    refused = officer.post(
        "/cases/add-event",
        data={"case_id": case_id, "event_id": str(other.event_id), "csrf_token": _csrf(officer)},
    )
    assert refused.status_code == 404
    # the admin sees both, but a w2 event does not go into a w1 case
    mixed = admin.post(
        "/cases/add-event",
        data={"case_id": case_id, "event_id": str(other.event_id), "csrf_token": _csrf(admin)},
    )
    assert mixed.status_code == 422 and "another ward" in mixed.text


def test_case_evidence_survives_retention(admin: TestClient, db: Database, clock: FakeClock) -> None:
    _officer, _case_id, _ids, sha = _case_with_events(admin, db)
    loose = upload(admin, JPEG_BYTES + b"loose")
    ingest(
        admin, make_event(node_id="node-1", camera_id="cam-1", evidence=[snapshot_ref(JPEG_BYTES + b"loose")])
    )
    central = admin.app.state.central  # type: ignore[attr-defined]
    clock.advance(3600)
    with db.session() as s:
        result = retention.purge_evidence(s, central.evidence, before=clock.now, now=clock.now)
    assert (result.deleted, result.kept_locked) == (1, 1)
    with db.session() as s:
        assert s.get(EvidenceRow, sha) is not None and s.get(EvidenceRow, loose) is None
    assert central.evidence.path_of(sha).is_file() and not central.evidence.path_of(loose).exists()


def test_verify_case_reports_a_missing_file(tmp_path: Path) -> None:
    result = _verify(tmp_path / "nope.zip", None)
    assert result.returncode == 2 and "does not exist" in result.stderr


@pytest.mark.skipif(shutil.which("unzip") is None, reason="no unzip")
def test_export_is_a_plain_zip(admin: TestClient, db: Database, tmp_path: Path) -> None:
    officer, case_id, _ids, _sha = _case_with_events(admin, db)
    path = tmp_path / "c.zip"
    path.write_bytes(officer.get(f"/cases/{case_id}/export.zip").content)
    listing = subprocess.run(["unzip", "-l", str(path)], capture_output=True, text=True, check=True).stdout
    assert "manifest.json" in listing and "summary.html" in listing
