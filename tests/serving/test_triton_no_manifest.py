"""A real tritonserver serving an ONNX that came without our manifest (TAO's own exports)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rtdetr_serving.client import RTDETRClient
from rtdetr_serving.repository import write_repository
from rtdetr_serving.triton_local import LocalTriton
from rtdetr_spec.artifacts import ExportManifest
from tests.serving.conftest import ExportedModel
from tests.serving.test_triton_inference import onnxruntime_results

pytestmark = pytest.mark.triton


def test_triton_serves_an_onnx_without_manifest_with_the_same_answers(
    exported_model: ExportedModel, images: list[Path], tmp_path: Path
) -> None:
    bare = tmp_path / "tao" / exported_model.onnx.name
    bare.parent.mkdir()
    shutil.copy2(exported_model.onnx, bare)  # the ONNX only, no <stem>.manifest.json
    (bare.parent / "labels.txt").write_text(
        "".join(f"{n}\n" for n in exported_model.manifest.class_names)
    )
    assert not ExportManifest.path_for(bare).exists()
    repo = tmp_path / "repo"
    write_repository(bare, repo, gpus=[], flavor="cpu", cpu_threads=1)
    want = onnxruntime_results(exported_model, images)
    with LocalTriton(repo, load_models=["rtdetr"], log_path=tmp_path / "triton.log") as server:
        for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
            got = RTDETRClient(url, protocol, "rtdetr").detect(images)
            assert len(got) == len(want)
            for g, w in zip(got, want, strict=True):
                assert [d.label for d in g.detections] == [d.label for d in w.detections]
                assert all(d.category_id is None for d in g.detections)  # names only
                got_scores = [d.score for d in g.detections]
                assert np.allclose(got_scores, [d.score for d in w.detections], atol=1e-4)
