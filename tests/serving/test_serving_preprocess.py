"""The canonical preprocessing and decoding (rtdetr_serving.preprocess)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtdetr_serving.preprocess import (
    NotAnImageError,
    decode_detections,
    load_rgb,
    preprocess_batch,
    to_model_input,
)


def test_load_rgb_converts_every_mode(images: list[Path]) -> None:
    for p in images:
        img = load_rgb(p)
        assert img.mode == "RGB"
        with Image.open(p) as raw:
            assert img.size == raw.size


def test_load_rgb_accepts_bytes_arrays_and_images(images: list[Path]) -> None:
    data = images[0].read_bytes()
    from_bytes = load_rgb(data)
    arr = np.asarray(from_bytes)
    assert np.array_equal(np.asarray(load_rgb(arr)), arr)
    assert np.array_equal(np.asarray(load_rgb(from_bytes)), arr)


def test_not_an_image_names_the_file(not_images: list[Path], tmp_path: Path) -> None:
    with pytest.raises(NotAnImageError, match=r"notes\.jpg"):
        load_rgb(not_images[0])
    truncated = tmp_path / "cut.png"
    buf = io.BytesIO()
    Image.new("RGB", (50, 50), (1, 2, 3)).save(buf, "PNG")
    truncated.write_bytes(buf.getvalue()[:40])
    with pytest.raises(NotAnImageError, match=r"cut\.png"):
        load_rgb(truncated)
    with pytest.raises(NotAnImageError, match="frame-7"):
        load_rgb(b"\x00\x01", name="frame-7")
    with pytest.raises(NotAnImageError, match="HxWx3 uint8"):
        load_rgb(np.zeros((4, 4), np.uint8))
    with pytest.raises(FileNotFoundError):
        load_rgb(tmp_path / "missing.jpg")


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    p = tmp_path / "rotated.jpg"
    img.save(p, "JPEG", exif=exif.tobytes())
    assert load_rgb(p).size == (20, 40)


def test_to_model_input_scales_and_resizes() -> None:
    img = Image.new("RGB", (50, 30), (10, 20, 30))
    x = to_model_input(img, 16, 24)
    assert x.shape == (3, 16, 24) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    assert np.allclose(x[:, 0, 0], np.array([10, 20, 30]) / 255.0, atol=1e-7)


def test_preprocess_batch_sizes_are_width_height() -> None:
    batch, sizes = preprocess_batch([Image.new("RGB", (50, 30)), Image.new("RGB", (7, 9))], 8, 8)
    assert batch.shape == (2, 3, 8, 8)
    assert sizes.tolist() == [[50, 30], [7, 9]]


def _reference_decode(logits, boxes, size, k, background=None):  # type: ignore[no-untyped-def]
    """Straightforward re-statement of TAO's postprocess: sigmoid, flat top-k, cxcywh->xyxy."""
    q, c = logits.shape
    items = []
    for qi in range(q):
        for ci in range(c):
            if ci == background:
                continue
            items.append((1 / (1 + np.exp(-float(logits[qi, ci]))), qi, ci))
    items.sort(key=lambda t: -t[0])
    w, h = size
    out = []
    for s, qi, ci in items[:k]:
        cx, cy, bw, bh = (float(v) for v in boxes[qi])
        x1, y1 = min(max((cx - bw / 2) * w, 0), w), min(max((cy - bh / 2) * h, 0), h)
        x2, y2 = min(max((cx + bw / 2) * w, 0), w), min(max((cy + bh / 2) * h, 0), h)
        out.append((s, ci, (x1, y1, x2, y2)))
    return out


@pytest.mark.parametrize("background", [None, 0])
def test_decode_matches_reference(background: int | None) -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 2, (2, 20, 5)).astype(np.float32)
    boxes = rng.uniform(0, 1, (2, 20, 4)).astype(np.float32)
    sizes = np.array([[640, 480], [100, 300]], np.float32)
    got = decode_detections(logits, boxes, sizes, num_select=15, background_index=background)
    for b in range(2):
        ref = _reference_decode(logits[b], boxes[b], sizes[b], 15, background)
        assert len(got[b]["scores"]) == len(ref) == 15
        assert np.allclose(got[b]["scores"], [r[0] for r in ref], atol=1e-6)
        assert got[b]["labels"].tolist() == [r[1] for r in ref]
        assert np.allclose(got[b]["boxes"], [r[2] for r in ref], atol=1e-3)
        if background is not None:
            assert background not in got[b]["labels"].tolist()


def test_decode_box_geometry_is_exact() -> None:
    logits = np.full((1, 2, 1), -10.0, np.float32)
    logits[0, 1, 0] = 5.0
    boxes = np.array([[[0.5, 0.5, 0.2, 0.2], [0.25, 0.5, 0.5, 2.0]]], np.float32)
    d = decode_detections(logits, boxes, np.array([[200, 100]]), num_select=1)[0]
    assert d["labels"].tolist() == [0]
    # cx 50px, w 100px -> x 0..100; cy 50px, h 200px -> clipped to 0..100.
    assert d["boxes"].tolist() == [[0.0, 0.0, 100.0, 100.0]]
