"""Detector models at central: checked at upload (real ONNX files), served to nodes, assigned as commands."""

from __future__ import annotations

import hashlib
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from central.db.models import AuditRow
from tests.central.conftest import NODE_TOKEN
from tests.paths import ASSETS

MODEL_320 = ASSETS / "models" / "yolo11n_coco_320_int8dyn.onnx"


@pytest.fixture
def model_bytes() -> bytes:
    if not MODEL_320.exists():
        pytest.skip("assets missing (make assets)")
    return MODEL_320.read_bytes()


def test_a_real_model_is_checked_recorded_and_served_to_nodes(admin: TestClient, model_bytes: bytes) -> None:
    r = admin.post("/api/v1/models", files={"file": (MODEL_320.name, model_bytes)})
    assert r.status_code == 201, r.text
    body = r.json()
    sha = hashlib.sha256(model_bytes).hexdigest()
    assert (body["sha256"], body["input_width"], body["input_height"]) == (sha, 320, 320)
    assert len(body["classes"]) == 80 and body["classes"][0] == "person"
    assert admin.post("/api/v1/models", files={"file": (MODEL_320.name, model_bytes)}).status_code == 200
    assert [m["sha256"] for m in admin.get("/api/v1/models").json()] == [sha]

    assert admin.get(f"/api/v1/models/{sha}/file").status_code == 401  # a user session is not a node
    served = admin.get(f"/api/v1/models/{sha}/file", headers={"Authorization": f"Bearer {NODE_TOKEN}"})
    assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == sha

    page = admin.get("/models?lang=vi")
    assert page.status_code == 200 and sha in page.text and "320×320" in page.text
    with admin.app.state.central.db.session() as session:  # type: ignore[attr-defined]
        actions = [(a.action, a.target) for a in session.scalars(select(AuditRow))]
    assert (
        actions.count(("model.upload", f"model:{sha}")) == 1
    )  # the second, identical upload changed nothing


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"definitely not protobuf" * 10, "onnxruntime cannot load it"),
    ],
    ids=["empty", "garbage"],
)
def test_a_file_that_does_not_load_is_refused_with_the_reason(
    admin: TestClient, data: bytes, words: str
) -> None:
    r = admin.post("/api/v1/models", files={"file": ("broken.onnx", data)})
    assert r.status_code == 422 and words in r.json()["detail"]
    assert admin.get("/api/v1/models").json() == []


def test_a_truncated_real_model_is_refused(admin: TestClient, model_bytes: bytes) -> None:
    r = admin.post("/api/v1/models", files={"file": ("cut.onnx", model_bytes[: len(model_bytes) // 2])})
    assert r.status_code == 422, r.text


def test_assigning_to_an_unknown_node_says_so_per_node(admin: TestClient, model_bytes: bytes) -> None:
    sha = admin.post("/api/v1/models", files={"file": (MODEL_320.name, model_bytes)}).json()["sha256"]
    r = admin.post(f"/api/v1/models/{sha}/assign", json={"nodes": ["ghost"]})
    assert r.status_code == 200
    assert r.json() == [
        {"node_id": "ghost", "request_id": None, "state": "refused", "error": "no node ghost"}
    ]
    assert admin.post("/api/v1/models/" + "0" * 64 + "/assign", json={"nodes": ["x"]}).status_code == 404


def test_the_models_page_uploads_and_assigns_with_its_forms(admin: TestClient, model_bytes: bytes) -> None:
    page = admin.get("/models")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    refused = admin.post(
        "/models/upload", files={"file": ("x.onnx", b"junk" * 100)}, data={"csrf_token": "nope"}
    )
    assert refused.status_code == 403 and admin.get("/api/v1/models").json() == []
    done = admin.post(
        "/models/upload",
        files={"file": (MODEL_320.name, model_bytes)},
        data={"csrf_token": token[1]},
        follow_redirects=False,
    )
    assert done.status_code == 303
    sha = hashlib.sha256(model_bytes).hexdigest()
    bad = admin.post(
        "/models/upload", files={"file": ("bad.onnx", b"junk" * 100)}, data={"csrf_token": token[1]}
    )
    assert bad.status_code == 422 and "onnxruntime cannot load it" in bad.text
    sent = admin.post(f"/models/{sha}/assign", data={"csrf_token": token[1], "nodes": ["ghost"]})
    assert sent.status_code == 200 and 'data-node-id="ghost"' in sent.text and "no node ghost" in sent.text
