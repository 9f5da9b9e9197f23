"""Preview at central: the uploaded clip goes through the real node pipeline (real ONNX model) with the drawn zones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from central.fleet.preview import MODEL_ENV
from tests.central.test_nodes_config import config_body, node_id  # noqa: F401 - fixture
from tests.paths import MODEL_640, TOKYO

RIGHT_KERB = [[0.7, 0.6], [1.0, 0.6], [1.0, 1.0], [0.7, 1.0]]


def camera(dwell: float = 2.0) -> dict[str, Any]:
    return {
        "id": "omotesando-01",
        "source": "ignored: the clip is the source",
        "detect_fps": 5,
        "zones": [{"id": "right-kerb", "polygon": RIGHT_KERB}],
        "rules": [{"id": "ns", "type": "illegal_stopping", "zone": "right-kerb", "min_dwell_s": dwell}],
    }


def preview(client: TestClient, node: str, cam: dict[str, Any], clip: bytes, seconds: float = 6) -> Any:
    return client.post(
        f"/api/v1/nodes/{node}/preview",
        files={"clip": ("clip.mp4", clip, "video/mp4")},
        data={"camera": json.dumps(cam), "max_seconds": str(seconds)},
    )


@pytest.mark.slow
def test_preview_replays_the_clip_and_returns_tracks_and_the_events_of_the_new_zone(
    admin: TestClient,
    node_id: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if not (MODEL_640.is_file() and TOKYO.is_file()):
        pytest.skip("assets missing: scripts/fetch_assets.py")
    monkeypatch.setenv(MODEL_ENV, str(MODEL_640))
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body()).status_code == 201
    r = preview(admin, node_id, camera(), TOKYO.read_bytes())
    assert r.status_code == 200, r.text
    out = r.json()
    assert 5.9 <= out["seconds"] <= 6.2 and out["frames"] >= 170
    assert len(out["tracks"]) >= 5 and all(len(t["points"]) >= 2 for t in out["tracks"])
    stopping = [e for e in out["events"] if e["type"] == "illegal_stopping"]
    assert stopping and {e["zone_id"] for e in stopping} == {"right-kerb"}
    for e in stopping:  # the event is drawn where the stopped vehicle stands: inside the zone
        assert 0.7 <= e["at"][0] <= 1.0 and 0.6 <= e["at"][1] <= 1.0
        assert e["measurements"]["dwell_s"] >= 2.0


def test_preview_refuses_a_bad_zone_with_the_field_and_explains_a_missing_model(
    admin: TestClient,
    node_id: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body()).status_code == 201
    monkeypatch.delenv(MODEL_ENV, raising=False)
    r = preview(admin, node_id, camera(), b"not a video")
    assert r.status_code == 501 and f"set {MODEL_ENV}" in r.json()["detail"]
    monkeypatch.setenv(MODEL_ENV, str(MODEL_640))
    r = preview(admin, node_id, camera(dwell=-1), b"not a video")
    assert r.status_code == 422 and "min_dwell_s" in r.json()["detail"]


@pytest.mark.slow
def test_preview_of_the_last_minute_the_node_recorded(
    admin: TestClient,
    node_id: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node part (its recording and ``extract``) is played by a fake link here; the real one is in
    tests/e2e/test_extraction_live.py. Central's part is real: command, wait, the clip from the evidence
    store, the real pipeline."""
    import hashlib
    import threading
    import time

    from edge_agent.contract import Command, CommandResult, CommandState
    from tests.central.factories import TOPICS
    from tests.central.test_commands import FakeLink
    from tests.central.test_nodes_config import fleet_of

    if not (MODEL_640.is_file() and TOKYO.is_file()):
        pytest.skip("assets missing: scripts/fetch_assets.py")
    monkeypatch.setenv(MODEL_ENV, str(MODEL_640))
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body()).status_code == 201
    clip = TOKYO.read_bytes()
    sha = hashlib.sha256(clip).hexdigest()
    # the node's upload of the clip (the evidence route itself is tested in tests/central/test_evidence.py)
    stored = admin.app.state.central.evidence.path_of(sha)  # type: ignore[attr-defined]
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(clip)
    link = FakeLink()
    fleet = fleet_of(admin)
    fleet.link = link  # type: ignore[assignment]

    def node() -> None:  # answers the extract command as the node would, once it was sent
        deadline = time.monotonic() + 30
        while not link.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        cmd = Command.from_json(link.sent[0][1])
        result = {
            "sha256": sha,
            "size": len(clip),
            "recorded_start": cmd.args["start"],
            "recorded_end": cmd.args["end"],
            "segments": 2,
        }
        answer = CommandResult(
            request_id=cmd.request_id,
            node_id=node_id,
            name="extract",
            state=CommandState.OK,
            result=result,
            at=cmd.issued_at,
        )
        fleet.commands.handle_result(TOPICS.cmd_result(node_id), answer.to_json())

    answering = threading.Thread(target=node)
    answering.start()
    r = admin.post(f"/api/v1/nodes/{node_id}/preview/recent", json={"camera": camera(), "seconds": 6})
    answering.join(30)
    assert r.status_code == 200, r.text
    cmd = Command.from_json(link.sent[0][1])
    assert cmd.name == "extract" and cmd.args["camera_id"] == "omotesando-01"
    out = r.json()
    assert out["tracks"] and {e["zone_id"] for e in out["events"]} == {"right-kerb"}


def test_preview_of_the_recent_past_says_why_when_the_node_has_none(
    admin: TestClient,
    node_id: str,  # noqa: F811
) -> None:
    from tests.central.test_commands import FakeLink
    from tests.central.test_nodes_config import fleet_of

    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=config_body()).status_code == 201
    fleet_of(admin).link = FakeLink(accept=False)  # type: ignore[assignment]
    r = admin.post(f"/api/v1/nodes/{node_id}/preview/recent", json={"camera": camera(), "seconds": 30})
    assert r.status_code == 409
    assert r.json()["detail"] == "the node has no recent recording to preview: not sent: publish failed"
