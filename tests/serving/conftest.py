"""Fixtures for the serving tests: an exported model (ONNX + manifest) and test images.

Every test takes the model from ``exported_model``. By default it is a small ONNX with the exact
RT-DETR export signature (tests/serving/onnx_factory.py); set ``RTDETR_SERVING_TEST_ONNX`` to a
real ``rtdetr export`` output (its ``<stem>.manifest.json`` next to it) to run the same tests on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtdetr_serving.repository import write_repository
from rtdetr_serving.triton_local import LocalTriton
from rtdetr_spec.artifacts import ExportManifest
from tests.serving.onnx_factory import make_export

REAL_ONNX_ENV = "RTDETR_SERVING_TEST_ONNX"


@dataclass(frozen=True)
class ExportedModel:
    onnx: Path
    manifest: ExportManifest


@pytest.fixture(scope="session")
def exported_model(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    real = os.environ.get(REAL_ONNX_ENV)
    if real:
        return ExportedModel(Path(real), ExportManifest.read(real))
    path = tmp_path_factory.mktemp("export") / "rtdetr_test.onnx"
    return ExportedModel(path, make_export(path))


@pytest.fixture(scope="session")
def exported_model_bg(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """Same signature with a background logit column first (``background_index: 0``)."""
    path = tmp_path_factory.mktemp("export_bg") / "rtdetr_bg.onnx"
    return ExportedModel(path, make_export(path, background=True, seed=1))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real image files of different sizes, formats and modes."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    out = []
    for i, (w, h, fmt, mode) in enumerate(
        [
            (320, 240, "JPEG", "RGB"),
            (150, 100, "PNG", "RGBA"),
            (64, 64, "PNG", "L"),
            (97, 201, "BMP", "RGB"),
        ]
    ):
        arr = rng.integers(0, 256, (h, w, len(mode) if mode != "L" else 1), dtype=np.uint8)
        img = Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode)
        p = d / f"img{i}.{fmt.lower()}"
        img.save(p, fmt)
        out.append(p)
    return out


@pytest.fixture(scope="session")
def not_images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("not_images")
    text = d / "notes.jpg"
    text.write_text("this is not a picture\n")
    return [text]


@dataclass(frozen=True)
class TritonUnderTest:
    server: LocalTriton
    repository: Path


@pytest.fixture(scope="session")
def triton(
    tmp_path_factory: pytest.TempPathFactory,
    exported_model: ExportedModel,
    exported_model_bg: ExportedModel,
) -> Iterator[TritonUnderTest]:
    """``rtdetr-serve local`` (the real tritonserver) on a CPU-flavour repository.

    Models: ``rtdetr`` (loaded at start), ``rtdetr_bg`` (background column; loaded by tests).
    """
    repo = tmp_path_factory.mktemp("triton_repo")
    write_repository(exported_model.onnx, repo, gpus=[], flavor="cpu", cpu_threads=1)
    write_repository(
        exported_model_bg.onnx, repo, gpus=[], flavor="cpu", model_name="rtdetr_bg", cpu_threads=1
    )
    log = tmp_path_factory.mktemp("triton_log") / "tritonserver.log"
    with LocalTriton(repo, load_models=["rtdetr"], metrics=True, log_path=log) as server:
        yield TritonUnderTest(server, repo)
