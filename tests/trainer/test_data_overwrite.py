"""The dataset tools never write over their input, nor over a dataset unless told to, and a
failure half-way loses nothing that was there (``synth``, ``convert coco2h5|h52coco``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr_trainer.cli import main
from rtdetr_trainer.data import synth
from rtdetr_trainer.data.synth import SynthConfig, generate
from tests.trainer.trainer_fixtures import write_coco

CONVERT = ["dataset", "convert"]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _one_line_naming(err: str, path: Path) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0], err


def _to_h5(image_dir: Path, json_file: Path, out: Path, *extra: str) -> int:
    args = ["--image-dir", str(image_dir), "--json-file", str(json_file), "--output", str(out)]
    return main([*CONVERT, "coco2h5", *args, *extra])


def _to_coco(h5_dir: Path, json_file: Path, out: Path, *extra: str) -> int:
    args = ["--image-dir", str(h5_dir), "--json-file", str(json_file), "--output", str(out)]
    return main([*CONVERT, "h52coco", *args, *extra])


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_coco2h5_into_the_folder_holding_its_annotation_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, overwrite: list[str]
) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")  # coco/annotations/train.json
    before = _snapshot(tmp_path / "coco")
    assert _to_h5(image_dir, json_file, tmp_path / "coco", *overwrite) == 2
    _one_line_naming(capsys.readouterr().err, json_file)
    assert _snapshot(tmp_path / "coco") == before  # not even an H5 file was added


def test_coco2h5_into_an_earlier_output_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    assert _to_h5(image_dir, json_file, tmp_path / "h5") == 0
    before = _snapshot(tmp_path / "h5")
    capsys.readouterr()
    assert _to_h5(image_dir, json_file, tmp_path / "h5", "--arrays") == 2
    _one_line_naming(capsys.readouterr().err, tmp_path / "h5" / "annotations" / "train.json")
    assert _snapshot(tmp_path / "h5") == before
    assert _to_h5(image_dir, json_file, tmp_path / "h5", "--arrays", "--overwrite") == 0
    assert _snapshot(tmp_path / "h5") != before


def test_h52coco_over_its_own_annotation_file_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    assert _to_h5(image_dir, json_file, tmp_path / "h5") == 0
    h5_json = tmp_path / "h5" / "annotations" / "train.json"
    before = _snapshot(tmp_path / "h5")
    capsys.readouterr()
    assert _to_coco(tmp_path / "h5", h5_json, tmp_path / "h5", "--overwrite") == 2
    _one_line_naming(capsys.readouterr().err, h5_json)
    assert _snapshot(tmp_path / "h5") == before


def test_h52coco_back_into_the_original_images_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image_dir, json_file = write_coco(tmp_path / "coco")
    assert _to_h5(image_dir, json_file, tmp_path / "h5") == 0
    (image_dir / "Camera_01").mkdir()
    (image_dir / "Camera_01" / "a.jpg").write_bytes(b"someone else's image")
    capsys.readouterr()
    h5_json = tmp_path / "h5" / "annotations" / "train.json"
    assert _to_coco(tmp_path / "h5", h5_json, image_dir) == 2
    _one_line_naming(capsys.readouterr().err, image_dir / "Camera_01" / "a.jpg")
    assert (image_dir / "Camera_01" / "a.jpg").read_bytes() == b"someone else's image"


@pytest.mark.parametrize("fmt", ["coco", "h5"])
def test_synth_into_an_existing_dataset_needs_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str
) -> None:
    args = ["dataset", "synth", "--output", str(tmp_path), "--num-images", "4", "--format", fmt]
    small = ["--image-size", "64x64"]
    assert main([*args, *small]) == 0
    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert main([*args, *small, "--seed", "9"]) == 2
    _one_line_naming(capsys.readouterr().err, tmp_path / "annotations" / "train.json")
    assert _snapshot(tmp_path) == before
    assert main([*args, *small, "--seed", "9", "--overwrite"]) == 0
    assert _snapshot(tmp_path) != before


def test_synth_failing_half_way_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = SynthConfig(num_images=6, width=64, height=64, format="h5", cameras=2)
    generate(tmp_path, cfg)
    before = _snapshot(tmp_path)
    real, calls = synth._jpeg, []

    def failing(img):  # the disk fills up at the fourth frame
        calls.append(1)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        return real(img)

    monkeypatch.setattr(synth, "_jpeg", failing)
    with pytest.raises(OSError, match="No space left"):
        generate(tmp_path, SynthConfig(**{**cfg.__dict__, "seed": 5}), overwrite=True)
    assert _snapshot(tmp_path) == before  # old H5 files and JSON intact, no temp file left


def test_an_output_that_is_a_file_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "out").write_text("keep me")
    assert main(["dataset", "synth", "--output", str(tmp_path / "out"), "--num-images", "2"]) == 2
    _one_line_naming(capsys.readouterr().err, tmp_path / "out")
    assert (tmp_path / "out").read_text() == "keep me"


def test_an_unwritable_output_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from rtdetr_trainer.results import unwritable

    if not Path("/sys").is_dir() or unwritable("/sys") is None:
        pytest.skip("no unwritable sysfs here")
    image_dir, json_file = write_coco(tmp_path / "coco")
    assert _to_h5(image_dir, json_file, Path("/sys/rtdetr-h5")) == 2
    _one_line_naming(capsys.readouterr().err, Path("/sys/rtdetr-h5"))
