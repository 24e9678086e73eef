"""An annotation file cannot make the trainer open files outside its source's image folder."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from rtdetr_trainer.cli import main
from tests.trainer.trainer_fixtures import write_coco, write_image

MODEL_CARD_SPEC = (
    Path(__file__).resolve().parents[2] / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
)


def _validate(image_dir: Path, json_file: Path, val_json: Path) -> list[str]:
    return [
        "dataset",
        "validate",
        f"-e={MODEL_CARD_SPEC}",
        f"dataset.train_data_sources.image_dir={image_dir}",
        f"dataset.train_data_sources.json_file={json_file}",
        f"dataset.val_data_sources.image_dir={image_dir}",
        f"dataset.val_data_sources.json_file={val_json}",
    ]


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "h5-dotdot", "h5-absolute"])
def test_file_names_outside_image_dir_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture, kind: str
) -> None:
    outside = write_image(tmp_path / "elsewhere" / "x.jpg", (64, 48))
    cams = tmp_path / "elsewhere" / "Camera_09.h5"
    with h5py.File(cams, "w") as f:
        f.create_group("rgb").create_dataset(
            "x.jpg", data=np.frombuffer(outside.read_bytes(), np.uint8)
        )
    name = {
        "dotdot": "../../elsewhere/x.jpg",
        "absolute": str(outside),
        "h5-dotdot": "h5://../../elsewhere/Camera_09:x.jpg",
        "h5-absolute": f"h5://{cams}:x.jpg",
    }[kind]
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},
        {"id": 2, "file_name": name, "width": 64, "height": 48},
    ]
    anns = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 30], "area": 600}]
    # write_coco writes each named image: the outside one exists, so only the name can be refused
    image_dir, json_file = write_coco(tmp_path / "data", images=images, annotations=anns)
    assert outside.is_file()
    _, val_json = write_coco(tmp_path / "data", name="val.json")
    assert main(_validate(image_dir, json_file, val_json)) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error" in line]
    assert len(lines) == 1, err
    assert str(json_file) in lines[0] and "image id 2" in lines[0] and repr(name) in lines[0]
