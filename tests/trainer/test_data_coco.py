"""COCO sources: class mapping rule, up-front validation errors naming the culprit, H5 frames."""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from rtdetr_trainer.data.classmap import build_class_map, merge_categories
from rtdetr_trainer.data.coco import build_index, read_source
from rtdetr_trainer.data.h5 import H5Reader, decode_frame, parse_h5_uri
from rtdetr_trainer.data.images import ImageLoader
from rtdetr_trainer.errors import DataError
from rtdetr_trainer.evaluation.ground_truth import coco_ground_truth
from tests.trainer.trainer_fixtures import SEVEN, rgb_array, write_coco, write_image

CATS = {i + 1: n for i, n in enumerate(SEVEN)}


# ---------------------------------------------------------------- class mapping
def test_ids_1_to_7_with_num_classes_8_keep_tao_convention() -> None:
    cm = build_class_map(CATS, 8)
    assert cm.index_of_category() == {i: i for i in range(1, 8)}
    assert cm.names_by_index()[0] is None and cm.names_by_index()[7] == "pallet"


def test_ids_1_to_7_with_num_classes_7_map_contiguously(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO"):
        cm = build_class_map(CATS, 7)
    assert cm.index_of_category() == {i + 1: i for i in range(7)}
    assert cm.names_by_index() == SEVEN
    assert "contiguous" in caplog.text


def test_too_small_num_classes_is_refused_naming_ids() -> None:
    with pytest.raises(DataError) as e:
        build_class_map(CATS, 5)
    assert "num_classes is 5" in str(e.value) and "1..7" in str(e.value)


def test_conflicting_category_names_across_files() -> None:
    with pytest.raises(DataError, match="category id 1 is named 'human'"):
        merge_categories(
            [("a.json", [{"id": 1, "name": "person"}]), ("b.json", [{"id": 1, "name": "human"}])]
        )


# ---------------------------------------------------------------- validation
def _index(tmp_path: Path, **kwargs):
    image_dir, json_file = write_coco(tmp_path, **kwargs)
    files = read_source(str(image_dir), str(json_file), 0, "dataset.train_data_sources.0")
    return build_index(files, build_class_map(CATS, 8))


def test_valid_source_builds_index(tmp_path: Path) -> None:
    index = _index(tmp_path)
    assert len(index) == 2 and index.num_annotations == 2
    assert index.labels.tolist() == [1, 7]
    assert index.boxes[0].tolist() == [4, 4, 24, 34]


def test_missing_image_file_is_named(tmp_path: Path) -> None:
    image_dir, json_file = write_coco(tmp_path)
    (image_dir / "b.jpg").unlink()
    files = read_source(str(image_dir), str(json_file), 0, "src")
    with pytest.raises(DataError, match=r"image id 2 \(b.jpg\): image file .*b.jpg not found"):
        build_index(files, build_class_map(CATS, 8))


def test_box_outside_image_names_annotation(tmp_path: Path) -> None:
    anns = [{"id": 77, "image_id": 1, "category_id": 1, "bbox": [50, 10, 30, 10]}]
    with pytest.raises(DataError, match=r"annotation id 77 .*outside the 64x48 image"):
        _index(tmp_path, annotations=anns)


def test_non_positive_box_names_annotation(tmp_path: Path) -> None:
    anns = [{"id": 78, "image_id": 1, "category_id": 1, "bbox": [5, 5, 0, 10]}]
    with pytest.raises(DataError, match=r"annotation id 78 .*non-positive size"):
        _index(tmp_path, annotations=anns)


def test_small_overhang_is_clipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    anns = [{"id": 5, "image_id": 1, "category_id": 1, "bbox": [-0.4, 2, 64.6, 46.5]}]
    with caplog.at_level("WARNING"):
        index = _index(tmp_path, annotations=anns)
    assert index.boxes[0].tolist() == [0, 2, 64, 48]
    assert "clipped 1 box" in caplog.text


def test_unknown_category_names_annotation(tmp_path: Path) -> None:
    anns = [{"id": 91, "image_id": 1, "category_id": 12, "bbox": [1, 1, 5, 5]}]
    with pytest.raises(DataError, match="annotation id 91 has unknown category id 12"):
        _index(tmp_path, annotations=anns)


def test_duplicate_image_ids(tmp_path: Path) -> None:
    images = [
        {"id": 3, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 3, "file_name": "b.jpg", "width": 64, "height": 48},
    ]
    with pytest.raises(DataError, match="duplicate image id 3"):
        _index(tmp_path, images=images, annotations=[])


def test_empty_and_imageless_files(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    empty = tmp_path / "empty.json"
    empty.write_text("")
    with pytest.raises(DataError, match=r"empty\.json: the annotation file is empty"):
        read_source(str(tmp_path / "images"), str(empty), 0, "src")
    none = tmp_path / "none.json"
    none.write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DataError, match=r"none\.json: the annotation file lists no images"):
        read_source(str(tmp_path / "images"), str(none), 0, "src")


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    anns = [
        {"id": 1, "image_id": 1, "category_id": 99, "bbox": [1, 1, 5, 5]},
        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, -5, 5]},
        {"id": 3, "image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]},
    ]
    with pytest.raises(DataError) as e:
        _index(tmp_path, annotations=anns)
    text = str(e.value)
    assert "3 problem(s)" in text and "annotation id 3 refers to unknown image id 42" in text


def test_extensionless_json_file_is_a_glob(tmp_path: Path) -> None:
    write_coco(tmp_path, name="shard-0.json")
    images = [{"id": 5, "file_name": "c.jpg", "width": 64, "height": 48}]
    write_coco(tmp_path, images=images, annotations=[], name="shard-1.json")
    files = read_source(str(tmp_path / "images"), str(tmp_path / "annotations" / "shard-*"), 0, "s")
    assert [f.path.name for f in files] == ["shard-0.json", "shard-1.json"]
    with pytest.raises(DataError, match="no annotation files match"):
        read_source(str(tmp_path / "images"), str(tmp_path / "nothing*"), 0, "s")


def test_missing_sizes_are_read_from_the_image(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "a.jpg"}]
    write_image(tmp_path / "images" / "a.jpg", (40, 30))
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    index = _index(tmp_path, images=images, annotations=anns, make_files=False)
    assert (int(index.widths[0]), int(index.heights[0])) == (40, 30)


def test_ground_truth_dict_renumbers_annotations(tmp_path: Path) -> None:
    index = _index(tmp_path)
    gt = coco_ground_truth(index, CATS)
    assert [a["id"] for a in gt["annotations"]] == [1, 2]
    assert gt["annotations"][0]["bbox"] == [4.0, 4.0, 20.0, 30.0]


def test_corrupt_image_named_at_load_time(tmp_path: Path) -> None:
    image_dir, _ = write_coco(tmp_path)
    (image_dir / "a.jpg").write_bytes(b"not a jpeg")
    index = _index(tmp_path, make_files=False)
    with pytest.raises(DataError, match=r"a.jpg: corrupt or unreadable image"):
        ImageLoader(index).load(0)


# ---------------------------------------------------------------- H5
def _jpeg_bytes(arr: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def test_h5_uri_parsing() -> None:
    assert parse_h5_uri("h5://Camera_01:rgb_00000.jpg") == ("Camera_01.h5", "rgb_00000.jpg")
    assert parse_h5_uri("h5://sub/Cam.h5:k") == ("sub/Cam.h5", "k")
    with pytest.raises(DataError):
        parse_h5_uri("h5://Camera_01")


def test_h5_frames_bytes_arrays_and_channel_order(tmp_path: Path) -> None:
    arr = rgb_array()
    path = tmp_path / "Camera_01.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("rgb")
        g.create_dataset("png", data=_jpeg_bytes(arr))
        g.create_dataset("bgr", data=arr[:, :, ::-1])  # TAO's convention: arrays are BGR
        rgb = g.create_dataset("declared_rgb", data=arr)
        rgb.attrs["channel_order"] = "RGB"
        g.create_dataset("gray", data=arr[:, :, 0])
        g.create_dataset(
            "bgra", data=np.dstack([arr[:, :, ::-1], np.full(arr.shape[:2], 255, np.uint8)])
        )
        g.create_dataset("bad", data=np.zeros((2, 2, 2, 2), np.uint8))
    reader = H5Reader()
    for key in ("png", "bgr", "declared_rgb", "bgra"):
        assert np.asarray(reader.read(str(path), key))[0, 0].tolist() == [200, 100, 10], key
    assert np.asarray(reader.read(str(path), "gray"))[0, 0].tolist() == [200, 200, 200]
    with pytest.raises(DataError, match="bad: unsupported frame shape"):
        reader.read(str(path), "bad")
    with pytest.raises(DataError, match="key 'nope' not found"):
        reader.read(str(path), "nope")


def test_h5_source_validation_names_missing_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with h5py.File(tmp_path / "images" / "Camera_01.h5", "w") as f:
        f.create_group("rgb").create_dataset("rgb_0.jpg", data=_jpeg_bytes(rgb_array(48, 64)))
    images = [
        {"id": 1, "file_name": "h5://Camera_01:rgb_0.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": "h5://Camera_01:rgb_9.jpg", "width": 64, "height": 48},
        {"id": 3, "file_name": "h5://Camera_02:rgb_0.jpg", "width": 64, "height": 48},
    ]
    with pytest.raises(DataError) as e:
        _index(tmp_path, images=images, annotations=[])
    text = str(e.value)
    assert "key 'rgb_9.jpg' not found" in text
    assert "Camera_02.h5: H5 file not found" in text
    good = _index(tmp_path, images=images[:1], annotations=[])
    assert ImageLoader(good).load(0).size == (64, 48)


def test_decode_frame_rejects_float_arrays() -> None:
    with pytest.raises(DataError, match="must be uint8"):
        decode_frame(np.zeros((4, 4, 3), np.float32), rgb=True, label="x")
