"""Small pieces of the tooling: frame sampling arithmetic, calibration reader, head scopes, section writing."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

from models.tooling import ToolingError
from models.tooling.calibration import LetterboxCalibrationReader, even_indices, sample_frames, split_quota
from models.tooling.qdq import HeadScope, excluded_nodes, head_prefix
from models.tooling.report import write_section


def test_split_quota_and_even_indices():
    assert split_quota(64, 3) == [22, 21, 21]
    assert split_quota(2, 4) == [1, 1, 0, 0]
    assert even_indices(142, 4) == [17, 53, 88, 124]
    assert even_indices(3, 10) == [0, 1, 2]
    assert even_indices(0, 5) == []


def test_sample_frames_from_clip_and_folder(clip_path, coco128):
    frames = sample_frames([str(clip_path), str(coco128 / "images" / "train2017")], 5, log=lambda _m: None)
    assert len(frames) == 5
    assert frames[0].shape == (720, 1006, 3) and frames[0].dtype == np.uint8
    with pytest.raises(FileNotFoundError, match="does not exist"):
        sample_frames(["/nonexistent/clip.mp4"], 2, log=lambda _m: None)


def test_reader_letterboxes_and_rewinds(clip_path):
    frames = sample_frames([str(clip_path)], 2, log=lambda _m: None)
    reader = LetterboxCalibrationReader(frames, "images", 320)
    first = reader.get_next()
    assert first is not None and first["images"].shape == (1, 3, 320, 320)
    assert (
        first["images"].dtype == np.float32 and 0.0 <= first["images"].min() <= first["images"].max() <= 1.0
    )
    assert reader.get_next() is not None and reader.get_next() is None
    reader.rewind()
    again = reader.get_next()
    assert again is not None and np.array_equal(again["images"], first["images"])


def test_head_scopes_are_nested(dequantized_320):
    fp32, _ = dequantized_320
    assert head_prefix(fp32) == "/model.23/"
    scopes = {s: set(excluded_nodes(fp32, s)) for s in HeadScope}
    assert scopes[HeadScope.NONE] == set()
    decode = scopes[HeadScope.DECODE]
    assert {"/model.23/dfl/Softmax", "/model.23/dfl/conv/Conv", "/model.23/Sigmoid"} <= decode
    assert not any(n.endswith("2/Conv") for n in decode)  # the last branch convs are not in the decode
    last = scopes[HeadScope.DECODE_LAST_CONV] - decode
    assert len(last) == 6 and all(n.endswith(".2/Conv") for n in last)  # cv2.k.2 and cv3.k.2, 3 scales
    assert decode < scopes[HeadScope.HEAD] and not any(
        n.endswith("/Conv") and "dfl" not in n for n in scopes[HeadScope.HEAD]
    )


def test_head_prefix_needs_ultralytics_names():
    node = helper.make_node("Relu", ["x"], ["y"], name="relu")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    with pytest.raises(ToolingError, match="Detect head"):
        head_prefix(helper.make_model(graph))


def test_write_section_keeps_other_sections(tmp_path):
    doc = tmp_path / "b.md"
    doc.write_text("# T\n\n<!-- eval:x -->\nother\n<!-- /eval:x -->\n", encoding="utf-8")
    write_section(doc, "a.onnx", "<!-- quantize:a.onnx -->\nv1\n<!-- /quantize:a.onnx -->")
    write_section(doc, "a.onnx", "<!-- quantize:a.onnx -->\nv2\n<!-- /quantize:a.onnx -->")
    text = doc.read_text(encoding="utf-8")
    assert "<!-- eval:x -->\nother\n<!-- /eval:x -->" in text
    assert "v2" in text and "v1" not in text and text.count("quantize:a.onnx -->") == 2


def test_opset_upgrade_for_per_channel_qdq_changes_nothing(dequantized_320, coco128):
    from edge_agent.perception.detector.preprocess import letterbox
    from models.tooling.graph import ai_onnx_opset, run, session
    from models.tooling.qdq import ensure_qdq_opset
    from tests.models.conftest import IMAGES, read_image

    fp32, _ = dequantized_320
    assert ai_onnx_opset(fp32) == 12  # the 320 export's opset: too old for per-channel Q/DQ
    upgraded = ensure_qdq_opset(fp32, log=lambda _m: None)
    assert ai_onnx_opset(upgraded) == 13
    tensor = letterbox(read_image(coco128, IMAGES[0]), 320)[0][None]
    np.testing.assert_allclose(run(session(upgraded), tensor), run(session(fp32), tensor), atol=1e-4)
