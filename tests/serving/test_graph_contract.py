"""An ONNX without our manifest: described from its graph, or refused naming what differs."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from rtdetr_serving.errors import ModelContractError
from rtdetr_serving.graph_contract import derive_manifest, read_export
from rtdetr_serving.repository import RepositoryIndex, write_repository
from rtdetr_spec import WAREHOUSE_CLASSES
from rtdetr_spec.artifacts import ExportManifest
from tests.serving.onnx_factory import make_export, make_rtdetr_like_onnx


def _bare(tmp_path: Path, *, background: bool = False, labels: bool = True) -> tuple[Path, dict]:
    """An export with its manifest removed (and labels.txt written, as DeepStream's)."""
    onnx_path = tmp_path / "model.onnx"
    original = make_export(onnx_path, height=64, width=96, background=background)
    ExportManifest.path_for(onnx_path).unlink()
    if labels:
        (tmp_path / "labels.txt").write_text("".join(f"{n}\n" for n in original.class_names))
    return onnx_path, original.model_dump()


def test_derived_manifest_matches_what_the_exporter_wrote(tmp_path: Path) -> None:
    onnx_path, original = _bare(tmp_path, background=True)
    derived = derive_manifest(onnx_path).model_dump()
    for key in (
        "onnx_file",
        "onnx_sha256",
        "precision",
        "opset",
        "input_height",
        "input_width",
        "batch_size",
        "num_queries",
        "class_names",
        "background_index",
        "inputs",
        "outputs",
    ):
        assert derived[key] == original[key], key
    assert derived["category_ids"] == [None] * len(original["class_names"])


def test_class_names_from_the_caller_and_counts_that_do_not_fit(tmp_path: Path) -> None:
    onnx_path, _ = _bare(tmp_path, labels=False)
    with pytest.raises(ModelContractError, match=r"no model\.manifest\.json and no labels\.txt"):
        derive_manifest(onnx_path)
    names = [f"c{i}" for i in range(len(WAREHOUSE_CLASSES))]
    assert derive_manifest(onnx_path, names).class_names == names
    with pytest.raises(ModelContractError, match=r"has 7 logit columns but the class list"):
        derive_manifest(onnx_path, ["a", "b"])
    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(ModelContractError, match=r"labels\.txt names 2 classes"):
        derive_manifest(onnx_path)


def test_an_existing_manifest_wins_and_must_agree_with_given_names(tmp_path: Path) -> None:
    onnx_path = tmp_path / "model.onnx"
    original = make_export(onnx_path)
    assert read_export(onnx_path) == original
    with pytest.raises(ModelContractError, match="differ from the ones given"):
        read_export(onnx_path, ["x"] * 7)


def _graph(path: Path, inputs: list, outputs: list) -> Path:
    nodes = [helper.make_node("Identity", [inputs[0].name], [o.name]) for o in outputs]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    onnx.save(model, str(path))
    return path


def test_a_graph_that_is_not_rtdetrs_contract_is_refused_naming_each_difference(
    tmp_path: Path,
) -> None:
    f = TensorProto.FLOAT
    yolo = _graph(
        tmp_path / "yolo.onnx",
        [helper.make_tensor_value_info("images", f, [1, 3, 640, 640])],
        [helper.make_tensor_value_info("output0", f, [1, 84, 8400])],
    )
    with pytest.raises(ModelContractError) as e:
        derive_manifest(yolo, ["x"])
    message = str(e.value)
    assert "not RT-DETR's contract" in message and "\n" not in message
    assert "input 'images' has a fixed batch 1, expected a dynamic one" in message
    assert "no output 'pred_logits' or 'pred_boxes' (outputs: ['output0'])" in message
    odd = _graph(
        tmp_path / "odd.onnx",
        [helper.make_tensor_value_info("inputs", f, ["b", 3, 64])],
        [
            helper.make_tensor_value_info("pred_logits", f, ["b", 300, 7]),
            helper.make_tensor_value_info("pred_boxes", f, ["b", 100, 5]),
        ],
    )
    with pytest.raises(ModelContractError) as e:
        derive_manifest(odd, ["x"] * 7)
    message = str(e.value)
    assert "input 'inputs' is [?, 3, 64], expected [batch, 3, H, W]" in message
    assert "output 'pred_boxes' has 5 values per box, expected 4" in message
    assert "outputs have 300 and 100 queries, expected the same Q" in message
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelContractError, match="not a readable ONNX model"):
        derive_manifest(tmp_path / "junk.onnx", ["x"])


def test_a_repository_from_an_onnx_without_manifest(tmp_path: Path) -> None:
    onnx_path, original = _bare(
        tmp_path / "src" if (tmp_path / "src").mkdir() is None else tmp_path
    )
    model_dir = write_repository(onnx_path, tmp_path / "repo", gpus=[], flavor="cpu")
    index = RepositoryIndex.read(model_dir)
    written = json.loads((model_dir / index.manifest_file).read_text())
    assert written["class_names"] == original["class_names"]
    assert written["onnx_sha256"] == original["onnx_sha256"] == index.onnx_sha256
    assert (model_dir / "config.pbtxt").is_file()


def test_a_repository_refuses_a_wrong_graph_with_one_message(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    make_rtdetr_like_onnx(path, num_queries=10, num_logits=3)
    with pytest.raises(ModelContractError, match="3 logit columns but the class list"):
        write_repository(path, tmp_path / "repo", gpus=[], flavor="cpu", class_names=["a"])
    assert not (tmp_path / "repo" / "rtdetr").exists()


def test_the_cli_serves_an_onnx_without_manifest_and_refuses_a_wrong_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtdetr_serving.cli import main

    onnx_path, _ = _bare(tmp_path, labels=False)
    out = tmp_path / "repo"
    base = ["repository", "--onnx", str(onnx_path), "--output", str(out), "--flavor", "cpu"]
    names = [x for n in WAREHOUSE_CLASSES for x in ("--class-name", n)]
    assert main([*base, "--by-revision", *names]) == 0
    (model,) = out.glob("*/rtdetr")
    assert RepositoryIndex.read(model).onnx_sha256.startswith(model.parent.name)
    capsys.readouterr()
    assert main([*base, "--force", "--class-name", "a"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has 7 logit columns but the class list given names 1" in err[0]
