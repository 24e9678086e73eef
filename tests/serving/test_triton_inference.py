"""A real tritonserver serving the CPU flavour: parity, readiness, load/unload, bad requests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.utils import InferenceServerException

from rtdetr_serving.client import ImageResult, RTDETRClient, to_image_result
from rtdetr_serving.errors import InferenceFailedError, ModelContractError, ModelNotReadyError
from rtdetr_serving.preprocess import NotAnImageError, decode_detections, load_rgb, preprocess_batch
from tests.serving.conftest import ExportedModel, TritonUnderTest

pytestmark = pytest.mark.triton


def onnxruntime_results(
    model: ExportedModel, images: list[Path], threshold: float = 0.5
) -> list[ImageResult]:
    """What local onnxruntime gives through the same preprocessing and decode."""
    m = model.manifest
    pil = [load_rgb(p) for p in images]
    batch, sizes = preprocess_batch(pil, m.input_height, m.input_width)
    sess = ort.InferenceSession(str(model.onnx), providers=["CPUExecutionProvider"])
    logits, boxes = sess.run(["pred_logits", "pred_boxes"], {"inputs": batch})
    decoded = decode_detections(logits, boxes, sizes, background_index=m.background_index)
    return [
        to_image_result(str(p), im, d, m, threshold)
        for p, im, d in zip(images, pil, decoded, strict=True)
    ]


def assert_same(a: list[ImageResult], b: list[ImageResult], atol: float = 1e-4) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.source, x.width, x.height) == (y.source, y.width, y.height)
        assert [d.label for d in x.detections] == [d.label for d in y.detections]
        assert [d.category_id for d in x.detections] == [d.category_id for d in y.detections]
        assert np.allclose(
            [d.score for d in x.detections], [d.score for d in y.detections], atol=atol
        )
        assert np.allclose(
            np.array([d.box for d in x.detections]).reshape(-1, 4),
            np.array([d.box for d in y.detections]).reshape(-1, 4),
            atol=atol * 1000,
        )


def clients(triton: TritonUnderTest, model: str = "rtdetr") -> list[RTDETRClient]:
    s = triton.server
    return [RTDETRClient(s.http_url, "http", model), RTDETRClient(s.grpc_url, "grpc", model)]


def test_readiness(triton: TritonUnderTest) -> None:
    for c in clients(triton):
        assert c.server_ready() and c.model_ready()
    for c in clients(triton, "rtdetr_bg"):
        assert c.server_ready() and not c.model_ready()


def test_http_grpc_and_onnxruntime_agree(
    triton: TritonUnderTest, exported_model: ExportedModel, images: list[Path]
) -> None:
    http, grpc = clients(triton)
    m = exported_model.manifest
    batch, _ = preprocess_batch([load_rgb(p) for p in images], m.input_height, m.input_width)
    ref = ort.InferenceSession(str(exported_model.onnx), providers=["CPUExecutionProvider"]).run(
        ["pred_logits", "pred_boxes"], {"inputs": batch}
    )
    raw_http, raw_grpc = http.infer_batch(batch), grpc.infer_batch(batch)
    for a, b, r in zip(raw_http, raw_grpc, ref, strict=True):
        assert np.array_equal(a, b)
        assert np.allclose(a, r, atol=1e-5)
    expected = onnxruntime_results(exported_model, images)
    assert any(r.detections for r in expected)
    got_http, got_grpc = http.detect(images), grpc.detect(images)
    assert got_http == got_grpc
    assert_same(got_http, expected)
    assert http.manifest == m and http.max_batch_size == 4


def test_batching_and_concurrency_do_not_change_answers(
    triton: TritonUnderTest, exported_model: ExportedModel, images: list[Path]
) -> None:
    many = images * 3
    expected = onnxruntime_results(exported_model, many)
    for c in clients(triton):
        assert_same(c.detect(many, batch_size=1, concurrency=4), expected)
        assert_same(c.detect(many, batch_size=4, concurrency=2), expected)
        with pytest.raises(InferenceFailedError, match=r"batch size 5 must be in 1\.\.4"):
            c.detect(images, batch_size=5)


def wait_ready(client: RTDETRClient, ready: bool, timeout_s: float = 20.0) -> None:
    """Until the model's readiness is ``ready`` and the server is ready again.

    With strict readiness (Triton's default) the server reports not ready while any model is
    still loading or unloading.
    """
    deadline = time.monotonic() + timeout_s
    while not (client.server_ready() and client.model_ready() == ready):
        assert time.monotonic() < deadline, f"model never became ready={ready}"
        time.sleep(0.1)


def test_explicit_load_and_unload(
    triton: TritonUnderTest, exported_model_bg: ExportedModel, images: list[Path]
) -> None:
    admin = thttp.InferenceServerClient(triton.server.http_url)
    bg = RTDETRClient(triton.server.grpc_url, "grpc", "rtdetr_bg")
    with pytest.raises(ModelNotReadyError, match="rtdetr_bg"):
        bg.detect(images[:1])
    admin.load_model("rtdetr_bg")
    try:
        wait_ready(bg, True)
        got = RTDETRClient(triton.server.grpc_url, "grpc", "rtdetr_bg").detect(images)
        assert_same(got, onnxruntime_results(exported_model_bg, images))
        labels = {d.label for r in got for d in r.detections}
        assert labels and "background" not in labels
    finally:
        admin.unload_model("rtdetr_bg")
    wait_ready(bg, False)
    with pytest.raises(ModelNotReadyError):
        RTDETRClient(triton.server.http_url, "http", "rtdetr_bg").detect(images[:1])


def still_serving(triton: TritonUnderTest, images: list[Path]) -> None:
    for c in clients(triton):
        assert c.server_ready() and c.model_ready()
        assert len(c.detect(images[:2])) == 2


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(
    triton: TritonUnderTest,
    exported_model: ExportedModel,
    images: list[Path],
    not_images: list[Path],
) -> None:
    m = exported_model.manifest
    h, w = m.input_height, m.input_width
    for c in clients(triton):
        # Wrong shape and dtype: refused before sending, and by the server when sent anyway.
        small = np.zeros((1, 3, h // 2, w), np.float32)
        with pytest.raises(ModelContractError, match=rf"must be FP32 \[B, 3, {h}, {w}\]"):
            c.infer_batch(small)
        with pytest.raises(InferenceFailedError, match="unexpected shape"):
            c.infer_batch(small, check=False)
        as_double = np.zeros((1, 3, h, w), np.float64)
        with pytest.raises(ModelContractError, match="got FP64"):
            c.infer_batch(as_double)
        with pytest.raises(
            InferenceFailedError, match=r"data-type is 'FP64', but model 'rtdetr' expects 'FP32'"
        ):
            c.infer_batch(as_double, check=False)
        too_many = np.zeros((5, 3, h, w), np.float32)
        with pytest.raises(InferenceFailedError, match="exceeds max_batch_size 4"):
            c.infer_batch(too_many)
        with pytest.raises(InferenceFailedError, match="batch-size must be <= 4"):
            c.infer_batch(too_many, check=False)
        # Unknown model, and an input that is not an image (named, nothing sent).
        with pytest.raises(ModelNotReadyError, match="'nope'"):
            RTDETRClient(c.url, c.protocol, "nope").detect(images[:1])
        with pytest.raises(NotAnImageError, match=r"notes\.jpg"):
            c.detect([images[0], not_images[0]])
        still_serving(triton, images)


def test_raw_protocol_errors(triton: TritonUnderTest, exported_model: ExportedModel) -> None:
    """The server's own answers to malformed requests, without our client in between."""
    m = exported_model.manifest
    for mod, url in [(thttp, triton.server.http_url), (tgrpc, triton.server.grpc_url)]:
        raw = mod.InferenceServerClient(url)
        x = mod.InferInput("inputs", [1, 3, m.input_height, m.input_width], "INT32")
        x.set_data_from_numpy(np.zeros((1, 3, m.input_height, m.input_width), np.int32))
        with pytest.raises(InferenceServerException, match=r"data-type is 'INT32'"):
            raw.infer("rtdetr", [x])
        with pytest.raises(InferenceServerException, match=r"unknown model|not found"):
            raw.infer("nope", [x])
        assert raw.is_model_ready("rtdetr")
