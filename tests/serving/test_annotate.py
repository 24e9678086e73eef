"""Boxes drawn on images (rtdetr inference and rtdetr-serve infer --annotate)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from rtdetr_serving.annotate import draw_boxes, palette_colors, save_atomic


def test_boxes_are_drawn_in_their_class_colour_and_uncoloured_classes_are_skipped() -> None:
    img = Image.new("RGB", (64, 48), (0, 0, 0))
    colors = palette_colors(["person", None, "pallet"])
    out = draw_boxes(
        img,
        [("person", 0.9, (10, 20, 30, 40)), ("forklift", 0.8, (0, 0, 63, 47))],
        colors,
        width=1,
    )
    assert img.getpixel((10, 30)) == (0, 0, 0)  # the input is not modified
    assert out.getpixel((10, 30)) == colors["person"]  # left edge of the person box
    assert out.getpixel((0, 30)) == (0, 0, 0)  # forklift has no colour: not drawn
    assert set(colors) == {"person", "pallet"} and colors["person"] != colors["pallet"]


def test_saved_images_replace_atomically(tmp_path: Path) -> None:
    target = tmp_path / "a" / "frame.jpg"
    save_atomic(Image.new("RGB", (8, 8), (255, 0, 0)), target)
    with Image.open(target) as im:
        assert im.format == "JPEG" and im.size == (8, 8)
    assert [p.name for p in target.parent.iterdir()] == ["frame.jpg"]
