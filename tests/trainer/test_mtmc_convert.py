"""``rtdetr dataset convert mtmc`` on a real (synthetic) scene: H.264 videos, ground truth,
calibration. Every visible box of every sampled frame must come out with its class, frames must
be the video frames their keys name, and reruns must resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import pytest
import yaml

from rtdetr_trainer.cli import main
from rtdetr_trainer.data.mtmc.classes import default_class, parse_class_map
from rtdetr_trainer.data.mtmc.synth import read_stamp
from rtdetr_trainer.errors import DataError
from tests.trainer.mtmc_fixtures import (
    CONFIG,
    coco_boxes,
    convert,
    expected_boxes,
    load_coco,
    make_scene,
    read_frame,
)
from tests.trainer.trainer_fixtures import tiny_spec_dict


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scene(tmp_path_factory.mktemp("scene"))


def _assert_same_boxes(got: dict, expected: dict) -> None:
    """Same images, and per image the same (class, box) multiset, boxes to within 0.01 px."""
    assert set(got) == set(expected)
    for key, boxes in expected.items():
        a, b = sorted(got[key]), sorted(boxes)
        assert [n for n, _ in a] == [n for n, _ in b], key
        for (_, x), (_, y) in zip(a, b, strict=True):
            assert max(abs(u - v) for u, v in zip(x, y, strict=True)) < 0.01, (key, x, y)


@pytest.mark.parametrize("stride", [1, 4])
def test_every_visible_box_of_every_sampled_frame_is_kept(
    scene: Path, tmp_path: Path, stride: int
) -> None:
    assert convert(scene, tmp_path / "out", "--frame-stride", str(stride)) == 0
    coco = load_coco(tmp_path / "out" / "annotations" / "Warehouse_900.json")
    expected = expected_boxes(scene, stride)
    _assert_same_boxes(coco_boxes(coco), expected)
    assert [c["name"] for c in coco["categories"]][:7] == [
        "person", "agility_digit", "gr1_t2", "nova_carter", "transporter", "forklift", "pallet"
    ]  # fmt: skip
    sampled = range(0, CONFIG.frames, stride)
    cams = ["Camera", "Camera_01", "Camera_02"]
    names = {img["file_name"] for img in coco["images"]}
    # frames where a camera sees nothing are images too: empty, not missing
    assert names == {f"h5://{c}:rgb_{f:05d}.jpg" for c in cams for f in sampled}
    assert len({img["id"] for img in coco["images"]}) == len(coco["images"])
    seen = {name for boxes in expected.values() for name, _ in boxes}
    assert seen == {c["name"] for c in coco["categories"][:7]}  # the scene has all seven


def test_frames_are_the_video_frames_their_keys_name(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert convert(scene, out, "--frame-stride", "3") == 0
    for cam in ("Camera", "Camera_02"):
        with h5py.File(out / f"{cam}.h5", "r") as f:
            keys = sorted(f["rgb"].keys())
        assert keys == [f"rgb_{i:05d}.jpg" for i in range(0, CONFIG.frames, 3)]
        for key in keys:
            image = read_frame(out, cam, key)
            assert image.size == (CONFIG.width, CONFIG.height)
            assert read_stamp(image) == int(key[4:9]), (cam, key)


def test_the_converted_set_passes_the_training_data_checks(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert (
        convert(scene, out, "--split", "camera", "--val", "Camera_01", "--test", "Camera_02") == 0
    )
    paths = {s: out / "annotations" / f"{s}.json" for s in ("train", "val", "test")}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec_dict(tmp_path, paths)))
    assert main(["dataset", "validate", "-e", str(spec)]) == 0
    evaluate = ["--task", "evaluate", f"evaluate.checkpoint={tmp_path / 'unused.pth'}"]
    assert main(["dataset", "validate", "-e", str(spec), *evaluate]) == 0


def test_parallel_cameras_write_the_same_dataset_as_one_process(
    scene: Path, tmp_path: Path
) -> None:
    assert convert(scene, tmp_path / "seq", "--workers", "1", "--frame-stride", "2") == 0
    assert convert(scene, tmp_path / "par", "--workers", "3", "--frame-stride", "2") == 0
    rel = Path("annotations") / "Warehouse_900.json"
    assert (tmp_path / "seq" / rel).read_bytes() == (tmp_path / "par" / rel).read_bytes()
    for cam in ("Camera", "Camera_01", "Camera_02"):
        with (
            h5py.File(tmp_path / "seq" / f"{cam}.h5") as a,
            h5py.File(tmp_path / "par" / f"{cam}.h5") as b,
        ):
            assert sorted(a["rgb"]) == sorted(b["rgb"])
            assert all(a["rgb"][k][()].tobytes() == b["rgb"][k][()].tobytes() for k in a["rgb"])


def test_rerun_resumes_finished_cameras_and_redoes_the_rest(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert convert(scene, out, "--frame-stride", "2") == 0
    first = (out / "annotations" / "Warehouse_900.json").read_bytes()
    (out / "Camera_01.h5").unlink()
    assert convert(scene, out, "--frame-stride", "2") == 0
    report = json.loads((out / "conversion.json").read_text())
    assert {c["camera"]: c["resumed"] for c in report["cameras"]} == {
        "Camera": True, "Camera_01": False, "Camera_02": True
    }  # fmt: skip
    assert (out / "annotations" / "Warehouse_900.json").read_bytes() == first
    # a different stride invalidates every camera
    assert convert(scene, out, "--frame-stride", "3") == 0
    report = json.loads((out / "conversion.json").read_text())
    assert not any(c["resumed"] for c in report["cameras"])


def test_a_failed_camera_leaves_no_finished_looking_output_then_resumes(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    work = tmp_path / "scene"
    shutil.copytree(scene, work)
    video = work / "videos" / "Camera_01.mp4"
    good = video.read_bytes()
    data = bytearray(good)
    mid = len(data) // 2
    data[mid : mid + 3000] = bytes((i * 37 + 11) % 256 for i in range(3000))
    video.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert convert(work, out, "--workers", "1") == 2
    err = capsys.readouterr().err
    assert "Camera_01.mp4" in err and ("decoding failed" in err or "decoding error" in err), err
    assert not (out / "conversion.json").exists()
    assert not (out / "annotations").exists() or not list((out / "annotations").iterdir())
    assert not (out / "Camera_01.h5").exists()
    assert not list(out.glob("*.partial")) and not list((out / ".convert").glob("*.partial"))
    assert (out / "Camera.h5").exists()  # finished before the damaged camera: kept
    video.write_bytes(good)
    assert convert(work, out, "--workers", "1") == 0
    report = json.loads((out / "conversion.json").read_text())
    assert [c["resumed"] for c in report["cameras"]] == [True, False, False]


def test_splits_by_camera_and_by_time(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "cam"
    assert convert(scene, out, "--split", "camera", "--val", "Camera_01,Camera_02") == 0
    ann = out / "annotations"
    assert sorted(p.name for p in ann.iterdir()) == ["train.json", "val.json"]
    cams = {
        s: {i["camera"] for i in load_coco(ann / f"{s}.json")["images"]} for s in ("train", "val")
    }
    assert cams == {"train": {"Camera"}, "val": {"Camera_01", "Camera_02"}}

    out = tmp_path / "time"
    args = ["--split", "time", "--val", "0.2", "--test", "0.2", "--gap", "2"]
    assert convert(scene, out, *args) == 0
    frames = {
        s: {i["frame"] for i in load_coco(out / "annotations" / f"{s}.json")["images"]}
        for s in ("train", "val", "test")
    }
    assert max(frames["train"]) < min(frames["val"]) and max(frames["val"]) < min(frames["test"])
    # every timestamp is in one split for all cameras, and the gap frames are in none
    gap = set(range(CONFIG.frames)) - set().union(*frames.values())
    assert gap == {16, 17, 22, 23}
    report = json.loads((out / "conversion.json").read_text())
    assert report["counts"]["frames_in_gaps"] == len(gap) * 3


def test_class_map_drops_and_renames_with_counts(scene: Path, tmp_path: Path) -> None:
    pallets = sum(
        1 for boxes in expected_boxes(scene, 1).values() for name, _ in boxes if name == "pallet"
    )
    assert pallets
    out = tmp_path / "drop"
    assert convert(scene, out, "--class-map", "Pallet=") == 0
    report = json.loads((out / "conversion.json").read_text())
    assert report["counts"]["dropped"] == {"class_map": pallets}
    assert report["counts"]["dropped_types"] == {"Pallet": pallets}
    coco = load_coco(out / "annotations" / "Warehouse_900.json")
    assert all(
        c["name"] != "pallet"
        for c in [coco["categories"][a["category_id"] - 1] for a in coco["annotations"]]
    )
    mapping = tmp_path / "map.yaml"
    mapping.write_text("Pallet: crate\nforklift: forklift\n")
    out = tmp_path / "rename"
    assert convert(scene, out, "--class-map", str(mapping)) == 0
    coco = load_coco(out / "annotations" / "Warehouse_900.json")
    assert coco["categories"][7] == {"id": 8, "name": "crate"}
    assert sum(a["category_id"] == 8 for a in coco["annotations"]) == pallets


def test_default_type_names() -> None:
    assert default_class("Fourier GR1-T2") == "gr1_t2"
    assert default_class("fork lift") == "forklift"
    assert default_class("AgilityDigit") == "agility_digit"
    assert default_class("NovaCarter") == "nova_carter"
    for pallet in ("Pallet", "pallets", "WoodenPallet", "Pallet_03"):
        assert default_class(pallet) == "pallet", pallet
    assert default_class("PalletJack") is None
    assert default_class("Box") is None
    assert parse_class_map("Box=,PalletJack=forklift").resolve("pallet jack") == (True, "forklift")
    assert parse_class_map("Box=").resolve("box") == (True, None)
    with pytest.raises(DataError, match="'forklift' is mapped twice"):
        parse_class_map("Fork Lift=forklift,forklift=pallet")


def test_filters_count_what_they_drop(scene: Path, tmp_path: Path) -> None:
    gt = json.loads((scene / "ground_truth.json").read_text())
    small = hidden = 0
    for objects in gt.values():
        for obj in objects:
            for cam, (x1, y1, x2, y2) in obj["2d bounding box visible"].items():
                if min(x2 - x1, y2 - y1) < 12:
                    small += 1
                    continue
                f = obj["2d bounding box"][cam]
                if (x2 - x1) * (y2 - y1) / ((f[2] - f[0]) * (f[3] - f[1])) < 0.7:
                    hidden += 1
    assert small and hidden
    out = tmp_path / "out"
    assert convert(scene, out, "--min-box-size", "12", "--min-visibility", "0.7") == 0
    report = json.loads((out / "conversion.json").read_text())
    assert report["counts"]["dropped"] == {"min_box_size": small, "min_visibility": hidden}


def test_synth_writes_a_scene_the_converter_reads(tmp_path: Path) -> None:
    scene = tmp_path / "Warehouse_019"
    args = ["--format", "mtmc", "--num-images", "6", "--cameras", "2", "--image-size", "96x64"]
    assert main(["dataset", "synth", "--output", str(scene), *args]) == 0
    assert sorted(p.name for p in (scene / "videos").iterdir()) == ["Camera.mp4", "Camera_01.mp4"]
    assert convert(scene, tmp_path / "out") == 0
    coco = load_coco(tmp_path / "out" / "annotations" / "Warehouse_019.json")
    assert len(coco["images"]) == 12
    assert main(["dataset", "synth", "--output", str(scene), *args[:-1], "95x64"]) == 2
