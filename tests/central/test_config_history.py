"""Config history: readable diffs by id, every version listed with its author, rollback as a new audited version."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow, NodeConfigRow, NodeRow, Role
from central.db.session import Database
from central.fleet.history import Change, diff_configs
from tests.central.conftest import login
from tests.central.test_nodes import PASSWORD, add_user
from tests.central.test_nodes_config import KERB, camera, config_body, node_id  # noqa: F401 - fixture

WIDE = [[0.10, 0.96], [0.30, 0.96], [0.385, 0.62], [0.33, 0.62]]


def cfg(**cam: Any) -> dict[str, Any]:
    return config_body(cameras=camera(**cam))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            cfg(),
            cfg(rules=[{"id": "no-stop", "type": "illegal_stopping", "zone": "kerb", "min_dwell_s": 45}]),
            [Change("cameras[cam-1].rules[no-stop].min_dwell_s", "changed", "20", "45")],
        ),
        (
            cfg(zones=[{"id": "kerb", "polygon": KERB}, {"id": "bus", "polygon": WIDE}]),
            cfg(zones=[{"id": "bus", "polygon": WIDE}, {"id": "kerb", "polygon": KERB}]),
            [],  # reordering is not a change
        ),
        (
            cfg(),
            cfg(zones=[{"id": "kerb", "polygon": WIDE}]),
            [
                Change(
                    "cameras[cam-1].zones[kerb].polygon",
                    "changed",
                    "(0.100, 0.960) (0.250, 0.960) (0.385, 0.620) (0.330, 0.620)",
                    "(0.100, 0.960) (0.300, 0.960) (0.385, 0.620) (0.330, 0.620)",
                )
            ],
        ),
        (
            {**cfg(), "config_version": 1},
            {**cfg(detect_fps=2), "config_version": 7},
            [Change("cameras[cam-1].detect_fps", "added", None, "2")],
        ),
    ],
)
def test_diff_names_what_changed_by_id(
    old: dict[str, Any], new: dict[str, Any], expected: list[Change]
) -> None:
    assert diff_configs(old, new) == expected


def test_the_first_version_is_all_additions() -> None:
    changes = diff_configs(None, cfg())
    assert changes and {c.kind for c in changes} == {"added"}


def test_a_whole_zone_or_rule_added_or_removed_is_one_line() -> None:
    line = {"id": "l1", "points": [[0.1, 0.5], [0.5, 0.5]], "direction": 90}
    rule = {"id": "late", "type": "illegal_stopping", "zone": "kerb", "min_dwell_s": 3}
    old, new = cfg(), cfg(lines=[line], rules=[*camera()[0]["rules"], rule])
    added = [
        Change(
            "cameras[cam-1].lines[l1]", "added", None, "points=(0.100, 0.500) (0.500, 0.500); direction=90"
        ),
        Change(
            "cameras[cam-1].rules[late]", "added", None, "type='illegal_stopping'; zone='kerb'; min_dwell_s=3"
        ),
    ]
    assert diff_configs(old, new) == added
    assert diff_configs(new, old) == [Change(c.path, "removed", c.new, None) for c in added]


def test_history_and_rollback(admin: TestClient, node_id: str, db: Database) -> None:  # noqa: F811
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=cfg()).status_code == 201
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=cfg(detect_fps=2)).status_code == 201
    history = admin.get(f"/api/v1/nodes/{node_id}/configs").json()
    assert [h["version"] for h in history] == [2, 1]
    assert history[0]["created_by"] == "admin"
    assert history[0]["changes"] == [
        {"path": "cameras[cam-1].detect_fps", "kind": "changed", "old": "5.0", "new": "2.0"}
    ]

    r = admin.post(f"/api/v1/nodes/{node_id}/configs/1/rollback")
    assert r.status_code == 201, r.text
    assert r.json() == {"node_id": node_id, "restored": 1, "version": 3, "published": False}
    with db.session() as s:
        row = s.get(NodeConfigRow, (node_id, 3))
        assert row is not None and row.rollback_of == 1 and row.note == "rollback to version 1"
        assert row.config["cameras"][0]["detect_fps"] == 5.0 and row.config["config_version"] == 3
        node = s.get(NodeRow, node_id)
        assert node is not None and node.desired_version == 3
        rollback = s.scalars(select(AuditRow).where(AuditRow.action == "node.config.rollback")).one()
        assert rollback.username == "admin" and rollback.detail == {"restores": 1, "as_version": 3}
    assert admin.post(f"/api/v1/nodes/{node_id}/configs/99/rollback").status_code == 404

    page = admin.get(f"/nodes/{node_id}/history")
    assert page.status_code == 200
    assert "rollback to version 1" in page.text and "cameras[cam-1].detect_fps" in page.text


def test_officers_see_no_history_and_cannot_roll_back(admin: TestClient, node_id: str, db: Database) -> None:  # noqa: F811
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=cfg()).status_code == 201
    add_user(db, "olga", Role.OFFICER)
    login(admin, "olga", PASSWORD)
    assert admin.get(f"/api/v1/nodes/{node_id}/configs").status_code == 403
    assert admin.post(f"/api/v1/nodes/{node_id}/configs/1/rollback").status_code == 403
    assert admin.get(f"/nodes/{node_id}/history").status_code == 403


def test_rule_schemas_carry_descriptions_and_bounds(admin: TestClient) -> None:
    schemas = admin.get("/api/v1/rule-schemas").json()
    stopping = schemas["rules"]["illegal_stopping"]["properties"]["min_dwell_s"]
    assert (
        stopping["exclusiveMinimum"] == 0.0 and stopping["description"] == "Seconds stationary before start."
    )
    assert set(schemas["rules"]) >= {"illegal_stopping", "wrong_way", "red_light", "speeding", "gathering"}


def test_zone_editor_page_embeds_the_config_and_schemas(admin: TestClient, node_id: str) -> None:  # noqa: F811
    assert admin.put(f"/api/v1/nodes/{node_id}/config", json=cfg()).status_code == 201
    page = admin.get(f"/nodes/{node_id}/zones?lang=vi")
    assert page.status_code == 200
    assert 'id="ze-boot"' in page.text and "Lấy khung hình trực tiếp" in page.text
    boot = json.loads(
        page.text.split('<script id="ze-boot" type="application/json">')[1].split("</script>")[0]
    )
    assert boot["rule_names"]["illegal_stopping"] == "Dừng đỗ sai quy định"
    assert boot["field_help"]["min_dwell_s"] == "Số giây đứng yên trước khi báo vi phạm."
    assert boot["config"]["cameras"][0]["id"] == "cam-1" and boot["csrf"]
    english = admin.get(f"/nodes/{node_id}/zones?lang=en").text
    assert '"field_help": {}' in english and '"illegal_stopping": "Illegal stopping"' in english
    assert "/static/zone_editor.js" in page.text
