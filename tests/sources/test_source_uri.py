"""Source URIs: s3, https (with sha256), hf and ngc mapped to their download URLs."""

from __future__ import annotations

import pytest

from rtdetr_spec.sources.uri import SourceURIError, parse

SHA = "a" * 64


def test_s3_objects_and_folders() -> None:
    obj = parse("s3://warehouse-data/pretrained/rtdetr_r50.pth")
    assert (obj.bucket, obj.key, obj.name, obj.is_folder) == (
        "warehouse-data",
        "pretrained/rtdetr_r50.pth",
        "rtdetr_r50.pth",
        False,
    )
    assert parse("s3://warehouse-data/coco/train/").is_folder


def test_https_needs_a_sha256() -> None:
    assert parse("https://example.com/m/r50.pth", sha256=SHA).url == "https://example.com/m/r50.pth"
    with pytest.raises(SourceURIError, match="needs its sha256"):
        parse("https://example.com/m/r50.pth")
    with pytest.raises(SourceURIError, match="64 lowercase hex"):
        parse("https://example.com/m/r50.pth", sha256="ABC")


def test_hugging_face_files() -> None:
    u = parse("hf://nvidia/rtdetr-warehouse/weights/model.pth")
    assert u.url == "https://huggingface.co/nvidia/rtdetr-warehouse/resolve/main/weights/model.pth"
    u = parse("hf://nvidia/rtdetr-warehouse@v1.0/model.onnx")
    assert u.url == "https://huggingface.co/nvidia/rtdetr-warehouse/resolve/v1.0/model.onnx"
    assert u.name == "model.onnx"
    with pytest.raises(SourceURIError, match="expected hf://"):
        parse("hf://nvidia/model.onnx")


def test_ngc_files() -> None:
    u = parse("ngc://nvidia/tao/rtdetr_warehouse:deployable_v1.0/rtdetr_warehouse_v1.0.fp16.onnx")
    assert u.url == (
        "https://api.ngc.nvidia.com/v2/org/nvidia/team/tao/models/rtdetr_warehouse/versions/"
        "deployable_v1.0/files/rtdetr_warehouse_v1.0.fp16.onnx"
    )
    no_team = parse("ngc://myorg/no-team/detector:1/model.pth")
    assert no_team.url == (
        "https://api.ngc.nvidia.com/v2/org/myorg/models/detector/versions/1/files/model.pth"
    )
    with pytest.raises(SourceURIError, match="expected ngc://"):
        parse("ngc://nvidia/tao/rtdetr_warehouse/file.onnx")


def test_refusals_never_echo_credentials() -> None:
    with pytest.raises(SourceURIError) as e:
        parse("https://user:hunter2@example.com/m.pth", sha256=SHA)
    assert "hunter2" not in str(e.value) and "Secret" in str(e.value)
    for bad, words in [
        ("http://example.com/m.pth", "plain http"),
        ("gs://b/m.pth", "unsupported scheme"),
        ("s3://B_/m.pth", "not an S3 bucket"),
        ("s3://bucket", "name an object"),
        ("s3://bucket/a/../../etc", "'..'"),
    ]:
        with pytest.raises(SourceURIError, match=words):
            parse(bad)
