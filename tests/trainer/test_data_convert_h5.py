"""``rtdetr dataset convert coco2h5`` and ``h52coco``: round trips, arrays, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from rtdetr_trainer.cli import main
from rtdetr_trainer.data.h5pack import coco_to_h5
from rtdetr_trainer.data.h5unpack import h5_to_coco
from rtdetr_trainer.errors import DataError
from tests.trainer.trainer_fixtures import rgb_array, synth_dataset, write_coco


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _h5_frames(path: Path, frames: dict[str, np.ndarray], order: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        group = f.create_group("rgb")
        if order:
            group.attrs["channel_order"] = order
        for key, arr in frames.items():
            group.create_dataset(key, data=arr)


def _h5_coco(root: Path, names: list[str], size: tuple[int, int] = (10, 8)) -> Path:
    images = [
        {"id": i + 1, "file_name": n, "width": size[0], "height": size[1]}
        for i, n in enumerate(names)
    ]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "area": 16}]
    return write_coco(root, images=images, annotations=anns, make_files=False)[1]


def test_round_trip_gives_identical_files_and_annotations(tmp_path: Path) -> None:
    paths = synth_dataset(tmp_path / "coco", num_images=6, width=64, height=48)
    src = tmp_path / "coco" / "images"
    (src / "extra").mkdir()  # a PNG in a second folder: a second camera, bytes kept too
    Image.fromarray(rgb_array(48, 64)).save(src / "extra" / "p.png")
    coco = json.loads(paths["train"].read_text())
    coco["images"].append({"id": 99, "file_name": "extra/p.png", "width": 64, "height": 48})
    paths["train"].write_text(json.dumps(coco))
    h5_dir, back = tmp_path / "h5", tmp_path / "back"
    convert = ["dataset", "convert"]
    args = ["--image-dir", str(src), "--json-file", str(paths["train"]), "--output", str(h5_dir)]
    assert main([*convert, "coco2h5", *args]) == 0
    assert sorted(p.name for p in h5_dir.iterdir()) == ["annotations", "extra.h5", "train.h5"]
    packed = h5_dir / "annotations" / "train.json"
    args = ["--image-dir", str(h5_dir), "--json-file", str(packed), "--output", str(back)]
    assert main([*convert, "h52coco", *args]) == 0
    restored = json.loads((back / "annotations" / "train.json").read_text())
    assert restored == coco  # same relative names, same everything else
    originals = {img["file_name"]: (src / img["file_name"]).read_bytes() for img in coco["images"]}
    unpacked = _files(back)
    assert unpacked.pop("annotations/train.json")
    assert unpacked == originals  # byte for byte, nothing more


def test_coco2h5_reports_counts(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    summary = coco_to_h5(image_dir, json_file, tmp_path / "h5", camera="single")
    assert summary.frames_per_file == {"Camera_01.h5": 2}
    assert (summary.images, summary.annotations) == (2, 2)
    assert "coco2h5: 2 image(s) as encoded bytes in 1 H5 file(s), 2 annotation(s)" in (
        summary.report()
    )
    names = [i["file_name"] for i in json.loads(summary.json_file.read_text())["images"]]
    assert names == ["h5://Camera_01:a.jpg", "h5://Camera_01:b.jpg"]


def test_array_frames_unpack_to_lossless_png(tmp_path: Path) -> None:
    bgr = rgb_array()[:, :, ::-1].copy()
    gray = np.arange(80, dtype=np.uint8).reshape(8, 10)
    bgra = np.dstack([bgr, np.full((8, 10), 7, np.uint8)])
    _h5_frames(tmp_path / "src" / "Camera_01.h5", {"a.jpg": bgr, "g": gray, "t.png": bgra})
    _h5_frames(tmp_path / "src" / "Camera_02.h5", {"r.jpg": rgb_array()}, order="RGB")
    names = ["h5://Camera_01:a.jpg", "h5://Camera_01:g", "h5://Camera_01:t.png"]
    json_file = _h5_coco(tmp_path / "meta", [*names, "h5://Camera_02:r.jpg"])
    summary = h5_to_coco(tmp_path / "src", json_file, tmp_path / "out")
    assert (summary.encoded, summary.png_from_arrays, summary.renamed) == (0, 4, 3)
    coco = json.loads((tmp_path / "out" / "annotations" / "train.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [
        "Camera_01/a.png",
        "Camera_01/g.png",
        "Camera_01/t.png",
        "Camera_02/r.png",
    ]
    out = tmp_path / "out"
    assert np.array_equal(np.asarray(Image.open(out / "Camera_01" / "a.png")), rgb_array())
    assert np.array_equal(np.asarray(Image.open(out / "Camera_02" / "r.png")), rgb_array())
    assert np.array_equal(np.asarray(Image.open(out / "Camera_01" / "g.png")), gray)
    rgba = np.asarray(Image.open(out / "Camera_01" / "t.png"))
    assert np.array_equal(rgba[:, :, :3], rgb_array()) and (rgba[:, :, 3] == 7).all()


def test_coco2h5_arrays_then_h52coco(tmp_path: Path) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    coco_to_h5(image_dir, json_file, tmp_path / "h5", arrays=True)
    packed = tmp_path / "h5" / "annotations" / "train.json"
    h5_to_coco(tmp_path / "h5", packed, tmp_path / "back")
    for name in ("a", "b"):
        original = np.asarray(Image.open(image_dir / f"{name}.jpg").convert("RGB"))
        restored = np.asarray(Image.open(tmp_path / "back" / "Camera_01" / f"{name}.png"))
        assert np.array_equal(original, restored)  # the decoded pixels, exactly


def test_h52coco_missing_key_or_file_names_the_image(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    _h5_frames(tmp_path / "src" / "Camera_01.h5", {"a.jpg": rgb_array()})
    names = ["h5://Camera_01:a.jpg", "h5://Camera_01:gone.jpg", "h5://Camera_09:x.jpg"]
    json_file = _h5_coco(tmp_path / "meta", names)
    out = tmp_path / "out"
    args = ["dataset", "convert", "h52coco", "--image-dir", str(tmp_path / "src")]
    assert main([*args, "--json-file", str(json_file), "--output", str(out)]) == 2
    err = capsys.readouterr().err
    assert "image id 2 (h5://Camera_01:gone.jpg)" in err and "key 'gone.jpg' not found" in err
    assert "image id 3 (h5://Camera_09:x.jpg)" in err and "H5 file not found" in err
    assert not out.exists()


def test_h52coco_refuses_plain_names_and_name_clashes(tmp_path: Path) -> None:
    _h5_frames(tmp_path / "src" / "Camera_01.h5", {"x.jpg": rgb_array(), "x.png": rgb_array()})
    Image.fromarray(rgb_array()).save(tmp_path / "src" / "plain.png")
    json_file = _h5_coco(tmp_path / "m1", ["h5://Camera_01:x.jpg", "plain.png"])
    with pytest.raises(DataError, match=r"image id 2 \(plain.png\): not an h5:// frame name"):
        h5_to_coco(tmp_path / "src", json_file, tmp_path / "out")
    json_file = _h5_coco(tmp_path / "m2", ["h5://Camera_01:x.jpg", "h5://Camera_01:x.png"])
    with pytest.raises(DataError, match=r"would be written as Camera_01/x\.png"):
        h5_to_coco(tmp_path / "src", json_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # every name is checked before anything is written


def test_h52coco_corrupt_frame_leaves_no_annotation_file(tmp_path: Path) -> None:
    good = np.frombuffer(_png_bytes(tmp_path), np.uint8)
    _h5_frames(tmp_path / "src" / "C.h5", {"a.png": good, "b.jpg": np.zeros(50, np.uint8)})
    json_file = _h5_coco(tmp_path / "meta", ["h5://C:a.png", "h5://C:b.jpg"])
    # width/height given, so validation does not decode; the bad bytes are found while unpacking
    with pytest.raises(DataError, match=r"C\.h5:b\.jpg \(image id 2\): not a readable JPEG/PNG"):
        h5_to_coco(tmp_path / "src", json_file, tmp_path / "out")
    assert not (tmp_path / "out" / "annotations").exists()


def _png_bytes(tmp_path: Path) -> bytes:
    Image.fromarray(rgb_array()).save(tmp_path / "tmp.png")
    return (tmp_path / "tmp.png").read_bytes()


def test_coco2h5_failure_keeps_earlier_output_and_leaves_no_temp(tmp_path: Path) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    coco_to_h5(image_dir, json_file, tmp_path / "h5", arrays=True)
    before = _files(tmp_path / "h5")
    (image_dir / "b.jpg").write_bytes(b"not a jpeg")  # exists, so it passes validation
    with pytest.raises(DataError, match=r"image id 2 \(b\.jpg\): .*b\.jpg is not a readable"):
        coco_to_h5(image_dir, json_file, tmp_path / "h5", arrays=True, overwrite=True)
    assert _files(tmp_path / "h5") == before  # no temp files, old H5 and JSON untouched


def test_coco2h5_refuses_names_that_clash_after_sanitising(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a b.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "a_b.jpg", "width": 64, "height": 48},
    ]
    image_dir, json_file = write_coco(tmp_path / "coco", images=images, annotations=[])
    with pytest.raises(DataError, match=r"frame Camera_01:a_b\.jpg is also image id 1"):
        coco_to_h5(image_dir, json_file, tmp_path / "h5")
    assert not (tmp_path / "h5").exists()


def test_coco2h5_old_name_still_works(tmp_path: Path) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    args = ["dataset", "convert", "coco-to-h5", "--image-dir", str(image_dir)]
    assert main([*args, "--json-file", str(json_file), "--output", str(tmp_path / "h5")]) == 0
    assert (tmp_path / "h5" / "Camera_01.h5").is_file()


def _jpeg(path: Path, size: tuple[int, int], orientation: int | None = None) -> bytes:
    """A JPEG whose left half is red, so a rotation is visible; optionally EXIF-oriented."""
    arr = np.zeros((size[1], size[0], 3), np.uint8)
    arr[:, : size[0] // 2, 0] = 255
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=95, exif=exif)
    return path.read_bytes()


def test_coco2h5_refuses_a_truncated_image_unless_told_not_to_decode(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 640, "height": 480},
        {"id": 2, "file_name": "b.jpg", "width": 640, "height": 480},
    ]
    image_dir, json_file = write_coco(tmp_path / "coco", images=images, annotations=[])
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(noise).save(image_dir / "b.jpg", quality=95)
    raw = (image_dir / "b.jpg").read_bytes()
    (image_dir / "b.jpg").write_bytes(raw[: len(raw) // 2])  # the header survives, the scan not
    with pytest.raises(DataError, match=r"image id 2 \(b\.jpg\): .*b\.jpg is not a readable"):
        coco_to_h5(image_dir, json_file, tmp_path / "h5")
    assert not [p for p in (tmp_path / "h5").rglob("*") if p.is_file()]
    # without the decode only the header is checked: the bytes are stored as they are
    coco_to_h5(image_dir, json_file, tmp_path / "h5", verify=False)
    with h5py.File(tmp_path / "h5" / "Camera_01.h5") as f:
        assert f["rgb"]["b.jpg"][()].tobytes() == raw[: len(raw) // 2]


@pytest.mark.parametrize("verify", [True, False])
def test_coco2h5_refuses_a_size_the_annotation_file_does_not_declare(
    tmp_path: Path, verify: bool
) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    _jpeg(image_dir / "b.jpg", (48, 64))  # portrait, where the file says 64x48
    msg = r"image id 2 \(b\.jpg\): the image is 48x64 but the annotation file says 64x48"
    with pytest.raises(DataError, match=msg):
        coco_to_h5(image_dir, json_file, tmp_path / "h5", verify=verify)


@pytest.mark.parametrize("arrays", [True, False])
def test_coco2h5_sees_exif_orientation_as_training_does(tmp_path: Path, arrays: bool) -> None:
    """Orientation 6 (rotate 90 degrees clockwise): stored 64x48, shown and trained 48x64."""
    images = [{"id": 1, "file_name": "r.jpg", "width": 48, "height": 64}]
    image_dir, json_file = write_coco(tmp_path / "coco", images=images, annotations=[])
    _jpeg(image_dir / "r.jpg", (64, 48), orientation=6)
    coco_to_h5(image_dir, json_file, tmp_path / "h5", arrays=arrays)
    with h5py.File(tmp_path / "h5" / "Camera_01.h5") as f:
        stored = f["rgb"]["r.jpg"][()]
    if arrays:
        rgb = stored[:, :, ::-1]
        assert rgb.shape == (64, 48, 3)
        assert rgb[:20, :, 0].mean() > 200 and rgb[-20:, :, 0].mean() < 50  # red half on top
    else:
        assert stored.tobytes() == (image_dir / "r.jpg").read_bytes()


def test_h52coco_refuses_a_frame_cut_short_after_its_header(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "n.jpg", quality=95)
    raw = (tmp_path / "n.jpg").read_bytes()
    cut = np.frombuffer(raw[: len(raw) // 2], np.uint8)
    _h5_frames(tmp_path / "src" / "C.h5", {"n.jpg": cut})
    json_file = _h5_coco(tmp_path / "meta", ["h5://C:n.jpg"], size=(80, 64))
    with pytest.raises(DataError, match=r"C\.h5:n\.jpg \(image id 1\): not a readable JPEG/PNG"):
        h5_to_coco(tmp_path / "src", json_file, tmp_path / "out")
    assert not (tmp_path / "out" / "n.jpg").exists()
