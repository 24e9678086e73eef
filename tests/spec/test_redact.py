"""Secret-like values never come back in a message, and the spec loader refuses duplicate keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rtdetr_spec import ExperimentSpec, SpecError, load_experiment
from rtdetr_spec.loading import dump_experiment, parse_yaml
from rtdetr_spec.redact import (
    REDACTED,
    is_secret_key,
    redact_mapping,
    redact_strings,
    redact_text,
)

SECRET = "hunter2-Zq9"


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("encryption_key", True),
        ("quantize.aws_secret_access_key", True),
        ("wandb.API_TOKEN", True),
        ("db.Password", True),
        ("x.credentials", True),
        ("train.num_gpus", False),
        ("dataset.train_data_sources.0.json_file", False),
        ("key_frames.0", False),  # the last segment decides
    ],
)
def test_is_secret_key_looks_at_the_last_segment(path: str, secret: bool) -> None:
    assert is_secret_key(path) is secret


@pytest.mark.parametrize(
    "text",
    [
        f"override 'encryption_key={SECRET}'",
        f"encryption_key: {SECRET}",
        f"{{'aws_secret_access_key': '{SECRET}', 'region': 'eu'}}",
        f'quantize.api_token = "{SECRET}"; next',
        f"failed: password={SECRET}, retrying",
    ],
)
def test_redact_text_removes_the_value_keeps_the_rest(text: str) -> None:
    out = redact_text(text)
    assert SECRET not in out and REDACTED in out
    assert redact_text(out) == out  # idempotent: status written twice compares equal


def test_redact_text_leaves_ordinary_messages_alone() -> None:
    for text in (
        "train.num_gpus: Input should be greater than or equal to 1 (got 0)",
        "/data/Camera_01.h5: key 'rgb_0001.jpg' not found in its 'rgb' group",
        "override 'nonsense' is not of the form key=value",
        "h5://Camera_01:rgb_00000.jpg",
        'spec.tolerations[0].key: Invalid value: "a/b": name part must be alphanumeric',
    ):
        assert redact_text(text) == text


def test_redact_mapping_and_strings_walk_nested_structures() -> None:
    data = {"quantize": {"aws_secret_access_key": SECRET, "layers": [1, 2]}, "encryption_key": None}
    out = redact_mapping(data)
    assert out == {
        "quantize": {"aws_secret_access_key": REDACTED, "layers": [1, 2]},
        **{"encryption_key": None},
    }
    assert data["quantize"]["aws_secret_access_key"] == SECRET  # a copy, the input untouched
    status = {"conditions": [{"message": f"exit 2: password={SECRET}"}], "restarts": 0}
    assert SECRET not in str(redact_strings(status))


def test_a_rejected_encryption_key_is_named_but_not_echoed() -> None:
    with pytest.raises(SpecError) as err:
        load_experiment(None, [f"encryption_key={SECRET}"])
    assert SECRET not in str(err.value) and "encryption_key" in str(err.value)
    assert all(SECRET not in p for p in err.value.problems)


@pytest.mark.parametrize(
    "override",
    [f"encryption_key {SECRET}", f".encryption_key={SECRET}", f"encryption_key=[{SECRET}, x]"],
)
def test_malformed_secret_overrides_are_not_echoed(override: str) -> None:
    with pytest.raises(SpecError) as err:
        load_experiment(None, [override])
    assert SECRET not in str(err.value)


def test_a_yaml_error_does_not_quote_the_source_line(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f'model_name: rtdetr\nencryption_key: "{SECRET}\n')
    with pytest.raises(SpecError, match=r"not valid YAML: line \d+, column \d+") as err:
        load_experiment(spec)
    assert SECRET not in str(err.value)


def test_results_copy_of_the_spec_is_redacted_the_workers_copy_is_not() -> None:
    spec = ExperimentSpec.model_validate({"quantize": {"aws_secret_access_key": SECRET}})
    assert SECRET not in dump_experiment(spec)
    assert yaml.safe_load(dump_experiment(spec))["quantize"]["aws_secret_access_key"] == REDACTED
    assert SECRET in dump_experiment(spec, redact=False)


def test_duplicate_keys_are_refused_with_path_and_both_lines(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("train:\n  num_epochs: 3\n  seed: 1\n  num_epochs: 80\nmodel_name: rtdetr\n")
    with pytest.raises(SpecError, match=r"train\.num_epochs: duplicate key \(lines 2 and 4\)"):
        load_experiment(spec)


def test_duplicate_top_level_and_list_item_keys() -> None:
    text = "a: 1\nb:\n  - x: 1\n    x: 2\na: 3\n"
    with pytest.raises(SpecError) as err:
        parse_yaml(text)
    assert err.value.problems == [
        "b.0.x: duplicate key (lines 3 and 4); keep one",
        "a: duplicate key (lines 1 and 5); keep one",
    ]


def test_merge_keys_and_shared_anchors_are_not_duplicates() -> None:
    text = "base: &b {lr: 1, wd: 2}\noptim:\n  <<: *b\n  lr: 3\nagain: *b\n"
    assert parse_yaml(text)["optim"] == {"lr": 3, "wd": 2}


def test_recursive_alias_and_unconstructible_scalars_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="alias used inside its own anchor"):
        parse_yaml("a: &x\n  b: *x\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_yaml("when: 2020-13-45\n")
    with pytest.raises(SpecError, match=r"override train\.seed: .*duplicate key"):
        load_experiment(None, ["train.seed={a: 1, a: 2}"])


def test_a_spec_that_is_not_utf8_is_a_spec_error(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(b"model_name: \xff\xfe\n")
    with pytest.raises(SpecError, match=r"not UTF-8 text \(byte 12\)"):
        load_experiment(spec)
