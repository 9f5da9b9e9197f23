from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from edge_agent.node.assets import AssetError, fetch, install_file, load_manifest, sha256_file
from tests.paths import ASSETS, ROOT

MANIFEST = ROOT / "models" / "manifest.yaml"


def test_manifest_hashes_match_the_real_files() -> None:
    m = load_manifest(MANIFEST)
    assert m.model(m.default_model).file == "yolo11n_coco_640_int8dyn.onnx"
    assert len(m.class_sets["coco80"]) == 80
    for entry in m.models:
        assert sha256_file(ASSETS / "models" / entry.file) == entry.sha256, entry.file
        assert "AGPL-3.0" in entry.licence
    tokyo = m.video("tokyo_omotesando_street_sidewalk_960x540")
    assert sha256_file(ASSETS / "videos" / tokyo.file) == tokyo.sha256


def test_install_refuses_a_mismatch_and_keeps_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(b"tampered")
    dest = tmp_path / "out" / "model.onnx"
    with pytest.raises(AssetError, match="does not match"):
        install_file(src, dest, hashlib.sha256(b"original").hexdigest(), log=lambda _m: None)
    assert not dest.exists()


def test_install_copies_verified_and_skips_when_present(tmp_path: Path) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"payload")
    digest = hashlib.sha256(b"payload").hexdigest()
    dest = tmp_path / "d" / "a.bin"
    assert install_file(src, dest, digest, log=lambda _m: None) is True
    assert dest.read_bytes() == b"payload"
    assert install_file(src, dest, digest, log=lambda _m: None) is False


def test_fetch_from_mirror_puts_the_default_model_in_place(tmp_path: Path) -> None:
    m = load_manifest(MANIFEST)
    lines: list[str] = []
    fetch(m, tmp_path, mirror=ASSETS, models=[m.default_model], videos=[], datasets=[], log=lines.append)
    out = tmp_path / "models" / "yolo11n_coco_640_int8dyn.onnx"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == m.model(m.default_model).sha256
    assert lines[-1] == "assets ready"


def test_fetch_without_a_source_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="--mirror"):
        fetch(load_manifest(MANIFEST), tmp_path, mirror=None, models=[], videos=[], datasets=[])
    with pytest.raises(AssetError, match="unknown model"):
        load_manifest(MANIFEST).model("yolo99")
