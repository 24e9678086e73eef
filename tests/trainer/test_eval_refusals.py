"""Results that would be wrong are refused, not reported: undefined mAP, renamed classes, and a
training set without a single box."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtdetr_spec import load_experiment
from rtdetr_trainer.cli import main
from rtdetr_trainer.data.pipeline import prepare_train_data
from rtdetr_trainer.errors import DataError
from tests.trainer.trainer_fixtures import synth_dataset, tiny_checkpoint, tiny_spec_dict


def _edit(path: Path, fn) -> None:
    d = json.loads(path.read_text())
    fn(d)
    path.write_text(json.dumps(d))


def _evaluate(spec_file: Path, ckpt: Path, capsys) -> tuple[int, str, str]:
    code = main(["evaluate", "-e", str(spec_file), f"evaluate.checkpoint={ckpt}"])
    out = capsys.readouterr()
    return code, out.out, out.err


def _errors(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("rtdetr evaluate: error:")]


def test_test_set_without_annotations_is_refused_not_scored_zero(tmp_path, capsys) -> None:
    spec_file, ckpt, paths = tiny_checkpoint(tmp_path)
    _edit(paths["test"], lambda d: d.update(annotations=[]))
    code, out, err = _evaluate(spec_file, ckpt, capsys)
    assert code == 2, err[-2000:]
    (line,) = _errors(err)
    assert "dataset.test_data_sources" in line and "not one annotated box" in line
    assert "mAP50" in line and "undefined" in line
    assert "SUCCESS" not in out and "mAP50" not in out
    assert not (tmp_path / "results" / "evaluate" / "metrics.json").exists()


def test_renamed_and_unknown_categories_are_refused_naming_both_lists(tmp_path, capsys) -> None:
    spec_file, ckpt, paths = tiny_checkpoint(tmp_path)

    def rename(d: dict) -> None:
        for c in d["categories"]:
            if c["id"] == 3:
                c["name"] = "forklift"
        d["categories"].append({"id": 9, "name": "cat"})

    _edit(paths["test"], rename)
    old = {c["id"]: c["name"] for c in json.loads(paths["train"].read_text())["categories"]}
    code, _, err = _evaluate(spec_file, ckpt, capsys)
    assert code == 2, err[-2000:]
    (line,) = _errors(err)
    assert f"id 3 is 'forklift' here but {old[3]!r} in the checkpoint" in line
    assert "id 9 'cat' is not a class of the checkpoint" in line
    assert f"1 {old[1]!r}" in line  # the checkpoint's own list


def test_a_class_without_ground_truth_is_undefined_not_zero(tmp_path, capsys, caplog) -> None:
    spec_file, ckpt, paths = tiny_checkpoint(tmp_path)
    test = json.loads(paths["test"].read_text())
    present = sorted({a["category_id"] for a in test["annotations"]})
    gone = present[0]
    _edit(paths["test"], lambda d: d.update(
        annotations=[a for a in d["annotations"] if a["category_id"] != gone]
    ))  # fmt: skip
    code, _, err = _evaluate(spec_file, ckpt, capsys)
    assert code == 0, err[-2000:]
    metrics = json.loads((tmp_path / "results" / "evaluate" / "metrics.json").read_text())
    name = {c["id"]: c["name"] for c in test["categories"]}[gone]
    assert metrics["per_class_AP50"][name] is None
    assert "AP50 undefined (no ground truth in the test set) for:" in caplog.text
    assert name in caplog.text.split("for:")[1]


def test_training_set_without_a_single_box_is_refused(tmp_path: Path) -> None:
    paths = synth_dataset(tmp_path / "data", num_images=8, width=64, height=64)
    spec = load_experiment(data=tiny_spec_dict(tmp_path, paths))
    train = json.loads(paths["train"].read_text())
    _edit(paths["train"], lambda d: d.update(annotations=d["annotations"][:1]))
    assert prepare_train_data(spec).train.num_annotations == 1  # some empty images are fine
    _edit(paths["train"], lambda d: d.update(annotations=[]))
    with pytest.raises(DataError) as err:
        prepare_train_data(spec)
    msg = str(err.value)
    assert msg.startswith(
        f"dataset.train_data_sources: {len(train['images'])} images but not one box"
    )
    assert str(paths["train"]) in msg
