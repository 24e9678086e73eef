"""``rtdetr dataset convert kitti``: outputs, splits, shards, and every loud bad-input case."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdetr_trainer.cli import main
from rtdetr_trainer.data.classmap import build_class_map
from rtdetr_trainer.data.coco import build_index, read_source
from rtdetr_trainer.data.kitti import kitti_to_coco
from rtdetr_trainer.data.kitti_labels import parse_class_map
from rtdetr_trainer.errors import DataError
from tests.trainer.trainer_fixtures import write_image

PED = "Pedestrian 0.00 0 -0.20 10.0 5.0 30.0 55.0 1.8 0.6 0.8 1 2 3 -0.1"
CAR = "Car 0.00 0 1.0 40.0 20.0 70.0 50.0 1.5 1.6 4.0 1 2 3 0.1"
DONT_CARE = "DontCare -1 -1 -10 0 0 5 5 -1 -1 -1 -1000 -1000 -1000 -10"


def _kitti(root: Path, n: int = 10, lines: tuple[str, ...] = (PED, CAR)) -> tuple[Path, Path]:
    images, labels = root / "image_2", root / "label_2"
    labels.mkdir(parents=True)
    for i in range(n):
        write_image(images / f"{i:06d}.png", (80, 60))
        (labels / f"{i:06d}.txt").write_text("\n".join(lines) + "\n")
    return images, labels


def _convert(images: Path, labels: Path, output: Path, *extra: str) -> int:
    args = ["dataset", "convert", "kitti", "--images", str(images), "--labels", str(labels)]
    return main([*args, "--output", str(output), *extra])


def test_output_file_is_exactly_that_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = _kitti(tmp_path, n=3)
    out = tmp_path / "out" / "kitti.json"
    assert _convert(images, labels, out, "--class-map", "pedestrian=person,car=vehicle") == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["kitti.json"]
    coco = json.loads(out.read_text())
    assert coco["categories"] == [{"id": 1, "name": "person"}, {"id": 2, "name": "vehicle"}]
    assert len(coco["images"]) == 3 and len(coco["annotations"]) == 6
    printed = capsys.readouterr().out
    assert "kitti: 3 image(s) (0 without boxes), 6 box(es), 2 class(es)" in printed
    assert f"wrote {out}" in printed


def test_val_split_and_shards_named_after_the_stem(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=10)
    out = tmp_path / "out" / "kitti.json"
    code = _convert(
        images, labels, out, "--val-split", "20", "--num-shards", "2", "--class-map",
        "Pedestrian=person,car=vehicle",
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "kitti-train-shard-00000-of-00002.json",
        "kitti-train-shard-00001-of-00002.json",
        "kitti-val-shard-00000-of-00002.json",
        "kitti-val-shard-00001-of-00002.json",
    ]
    cmap = build_class_map({1: "person", 2: "vehicle"}, 3)
    train = build_index(
        read_source(str(images), str(out.parent / "kitti-train-shard-*"), 0, "t"), cmap
    )
    val = build_index(read_source(str(images), str(out.parent / "kitti-val-shard-*"), 0, "v"), cmap)
    assert (len(train), len(val)) == (8, 2)
    assert train.num_annotations == 16 and val.num_annotations == 4
    ids = [json.loads(p.read_text())["images"] for p in sorted(out.parent.glob("*.json"))]
    names = [img["file_name"] for imgs in ids for img in imgs]
    assert sorted(names) == sorted(p.name for p in images.iterdir())  # every image once


def test_val_split_only(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=4)
    summary = kitti_to_coco(images, labels, tmp_path / "k.json", val_split=50)
    assert [p.name for p in summary.files] == ["k-train.json", "k-val.json"]
    assert summary.images == 4 and summary.categories == ["Car", "Pedestrian"]


def test_split_or_shard_that_would_be_empty_is_an_error(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=3)
    with pytest.raises(DataError, match="selects no val image"):
        kitti_to_coco(images, labels, tmp_path / "o" / "k.json", val_split=10)
    with pytest.raises(DataError, match="the val split has only 1 image"):
        kitti_to_coco(images, labels, tmp_path / "o" / "k.json", val_split=40, num_shards=2)
    assert not (tmp_path / "o").exists()


def test_missing_label_file_is_an_error_unless_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    images, labels = _kitti(tmp_path, n=4)
    (labels / "000002.txt").unlink()
    out = tmp_path / "out" / "k.json"
    assert _convert(images, labels, out) == 2
    err = capsys.readouterr().err
    assert "1 image(s) have no label file" in err and "000002.png" in err
    assert not out.parent.exists()  # nothing written
    summary = kitti_to_coco(images, labels, out, allow_unmatched=True)
    assert summary.images_without_labels == 1 and summary.empty_images == 1
    assert summary.images == 4 and summary.annotations == 6
    caplog.clear()
    assert _convert(images, labels, out, "--allow-unmatched") == 0
    assert caplog.messages == ["warning: 1 image(s) have no label file; kept empty"]
    printed = capsys.readouterr().out
    assert "unmatched: 1 image(s) without labels, 0 label file(s) without images" in printed


def test_label_file_without_image_is_an_error_unless_allowed(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=3)
    (labels / "000099.txt").write_text(PED + "\n")
    (labels / "000098.txt").write_text(PED + "\n")
    with pytest.raises(DataError, match=r"2 label file\(s\) have no image .*000098.txt, 000099"):
        kitti_to_coco(images, labels, tmp_path / "k.json")
    assert not (tmp_path / "k.json").exists()
    summary = kitti_to_coco(images, labels, tmp_path / "k.json", allow_unmatched=True)
    assert summary.labels_without_images == 2 and summary.images == 3
    assert summary.annotations == 6


def test_unmapped_classes_are_an_error_naming_them_with_counts(tmp_path: Path) -> None:
    misc = "Misc 0 0 0 1 1 9 9 0 0 0 0 0 0 0"
    images, labels = _kitti(tmp_path, n=3, lines=(PED, CAR, misc, misc, "Van 0 0 0 1 1 9 9"))
    with pytest.raises(DataError) as e:
        kitti_to_coco(images, labels, tmp_path / "k.json", class_map="pedestrian=person")
    message = str(e.value)
    assert "does not mention 3 class(es)" in message
    assert "Car (3 object(s)), Misc (6 object(s)), Van (3 object(s))" in message
    assert not (tmp_path / "k.json").exists()
    summary = kitti_to_coco(
        images, labels, tmp_path / "k.json", class_map="pedestrian=person,car=person,misc=,van="
    )
    assert summary.dropped_by_map == {"Misc": 6, "Van": 3}
    assert summary.annotations == 6 and summary.categories == ["person"]


def test_dont_care_clipped_and_degenerate_boxes_are_counted(tmp_path: Path) -> None:
    lines = (
        PED,
        DONT_CARE,
        "Car 0 0 0 -5.0 10.0 95.0 50.0",  # clipped on both sides (image is 80x60)
        "Car 0 0 0 85.0 10.0 95.0 50.0",  # wholly right of the image: no area left
        "Car 0 0 0 20.0 10.0 20.0 50.0",  # zero width
    )
    images, labels = _kitti(tmp_path, n=2, lines=lines)
    out = tmp_path / "k.json"
    summary = kitti_to_coco(images, labels, out, class_map="pedestrian=person,car=car")
    assert summary.dont_care == 2 and summary.clipped == 2 and summary.degenerate == 4
    assert summary.annotations == 4
    boxes = [a["bbox"] for a in json.loads(out.read_text())["annotations"]]
    assert boxes[:2] == [[10.0, 5.0, 20.0, 50.0], [0.0, 10.0, 80.0, 40.0]]
    warnings = summary.warnings()
    assert "dropped 2 DontCare region(s) (KITTI's unlabelled areas)" in warnings
    assert "clipped 2 box(es) to the image border" in warnings
    assert "dropped 4 box(es) with no area inside the image" in warnings
    # mapped explicitly, DontCare becomes a class like any other
    summary = kitti_to_coco(images, labels, out, class_map="pedestrian=p,car=c,dontcare=ignore")
    assert summary.dont_care == 0 and summary.categories == ["p", "c", "ignore"]


def test_malformed_lines_are_errors_naming_file_and_line(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=2)
    bad = labels / "000001.txt"
    bad.write_text(
        f"{PED}\n\nCar 0 0 0 1 2\nCar 0 0 0 a b c d\nCar 0 0 0 9 9 1 1\nCar 0 0 0 nan 1 2 3\n"
    )
    with pytest.raises(DataError) as e:
        kitti_to_coco(images, labels, tmp_path / "k.json")
    message = str(e.value)
    assert "4 problem(s)" in message
    assert f"{bad}:3: a KITTI line needs at least 8 fields" in message
    assert f"{bad}:4: x1 y1 x2 y2 (fields 5-8) must be numbers" in message
    assert f"{bad}:5: box corners are inverted" in message
    assert f"{bad}:6: box ['nan', '1', '2', '3'] is not finite" in message
    assert not (tmp_path / "k.json").exists()


def test_two_images_with_one_stem_are_an_error(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=2)
    write_image(images / "000001.jpg", (80, 60))
    with pytest.raises(DataError, match=r"000001\.jpg and 000001\.png share the stem"):
        kitti_to_coco(images, labels, tmp_path / "k.json")


def test_class_map_files_and_inline(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text("Pedestrian: person\nCar: vehicle\nMisc: null\n")
    m = parse_class_map(str(tmp_path / "m.yaml"))
    assert m.targets == {"pedestrian": "person", "car": "vehicle", "misc": None}
    assert m.order == ("person", "vehicle")
    (tmp_path / "m.json").write_text(json.dumps({"car": "vehicle", "van": "vehicle", "x": ""}))
    m = parse_class_map(str(tmp_path / "m.json"))
    assert m.order == ("vehicle",) and m.target("X") == (True, None)
    assert m.target("Tram") == (False, None)
    assert parse_class_map("a=b, c=").targets == {"a": "b", "c": None}
    with pytest.raises(DataError, match="neither an existing JSON/YAML file"):
        parse_class_map(str(tmp_path / "missing.json"))
    with pytest.raises(DataError, match="'Car' is mapped twice"):
        parse_class_map("car=a,Car=b")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot parse the file"):
        parse_class_map(str(tmp_path / "bad.json"))


def test_everything_dropped_is_an_error(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=2)
    with pytest.raises(DataError, match="no class is left"):
        kitti_to_coco(images, labels, tmp_path / "k.json", class_map="pedestrian=,car=")


def test_old_names_and_folder_output_still_work(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=4)
    (tmp_path / "m.json").write_text(json.dumps({"pedestrian": "person", "car": "vehicle"}))
    out = tmp_path / "out"
    out.mkdir()
    args = ["dataset", "convert", "kitti-to-coco", "--image-dir", str(images)]
    args += [
        "--label-dir",
        str(labels),
        "--output",
        str(out),
        "--mapping",
        str(tmp_path / "m.json"),
    ]
    assert main([*args, "--val-split", "50"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["train.json", "val.json"]


def test_stale_shards_of_an_earlier_run_are_refused(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=4)
    out = tmp_path / "out" / "k.json"
    kitti_to_coco(images, labels, out, num_shards=4)
    kitti_to_coco(images, labels, out, num_shards=4)  # the same run again overwrites its files
    with pytest.raises(DataError, match=r"k-shard-00000-of-00004\.json"):
        kitti_to_coco(images, labels, out, num_shards=2)
    assert len(list(out.parent.iterdir())) == 4


def test_output_that_is_a_file_but_not_json_is_an_error(tmp_path: Path) -> None:
    images, labels = _kitti(tmp_path, n=1)
    (tmp_path / "out.txt").write_text("keep me")
    with pytest.raises(DataError, match=r"not a folder, and not a \.json file name"):
        kitti_to_coco(images, labels, tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "keep me"
