"""The progress-line contract: what rank 0 prints is what the operator reads, garbage skipped."""

from __future__ import annotations

import json
import math

from rtdetr_spec import progress
from rtdetr_spec.progress import (
    MAX_LINE_BYTES,
    MAX_SCAN_BYTES,
    PREFIX,
    ProgressReport,
    Validation,
    format_eta,
    format_line,
    latest,
    parse_line,
    parse_log,
)


def report(**kw: object) -> ProgressReport:
    base: dict[str, object] = {"epoch": 2, "num_epochs": 30, "step": 17, "percent": 7.5}
    base.update(kw)
    return ProgressReport.model_validate(base)


def test_round_trip_with_validation_and_camel_case_wire_names() -> None:
    r = report(
        eta_seconds=4321.0,
        loss=12.5,
        learning_rate=1e-4,
        validation=Validation(epoch=2, mAP=0.51, mAP50=0.83, perClassAP50={"person": 0.9}),
    )
    line = format_line(r)
    assert line.startswith(PREFIX) and "\n" not in line
    wire = json.loads(line[len(PREFIX) :])
    assert wire["v"] == progress.VERSION and wire["numEpochs"] == 30
    assert wire["etaSeconds"] == 4321.0 and wire["validation"]["mAP50"] == 0.83
    assert parse_line(line) == r


def test_a_line_inside_a_log_prefix_is_found() -> None:
    # kubectl logs --timestamps and some runtimes put text before the line.
    line = "2026-12-02T10:00:00.000Z " + format_line(report())
    parsed = parse_line(line)
    assert parsed is not None and parsed.step == 17


def test_garbage_is_skipped_not_fatal() -> None:
    good = format_line(report(step=3))
    text = "\n".join(
        [
            "epoch 1/30  step 3/400  loss 12.0  eta 5m",
            PREFIX + "{not json",
            PREFIX + json.dumps({"v": 2, "epoch": 1, "numEpochs": 3, "percent": 1}),  # newer
            PREFIX + json.dumps({"v": 1, "epoch": -1, "numEpochs": 3, "percent": 1}),  # invalid
            PREFIX + json.dumps({"v": 1, "epoch": 1, "numEpochs": 3, "percent": 101}),
            PREFIX + "[1, 2]",
            "\x00\xff binary noise",
            good,
            PREFIX + '{"v": 1, "epoch": 4',  # cut off mid-write by a crash
        ]
    )
    reports = parse_log(text)
    assert [r.step for r in reports] == [3]
    assert latest(text) == reports[-1]
    assert latest("no progress here\n") is None and latest("") is None


def test_non_finite_numbers_become_unknown() -> None:
    r = report(loss=math.nan, eta_seconds=math.inf)
    assert r.loss is None and r.eta_seconds is None
    v = Validation(epoch=1, mAP50=math.nan, perClassAP50={"a": math.inf, "b": 0.5})
    assert v.m_ap50 is None and v.per_class_ap50 == {"a": None, "b": 0.5}


def test_reading_is_bounded() -> None:
    huge = PREFIX + json.dumps(
        {"v": 1, "epoch": 1, "numEpochs": 3, "percent": 1, "x": "y" * 20_000}
    )
    assert len(huge) > MAX_LINE_BYTES and parse_line(huge) is None
    old = format_line(report(step=1))
    filler = ("x" * 1000 + "\n") * (MAX_SCAN_BYTES // 1000 + 10)
    new = format_line(report(step=2))
    # Only the end of a long log is scanned: the old line falls outside, the new one is found.
    assert [r.step for r in parse_log(old + "\n" + filler + new)] == [2]


def test_too_many_classes_keep_the_line_readable() -> None:
    per_class = {f"class_{i:04d}_with_a_long_descriptive_name": 0.5 for i in range(1000)}
    r = report(validation=Validation(epoch=1, mAP50=0.5, perClassAP50=per_class))
    assert r.validation is not None and len(r.validation.per_class_ap50) == progress.MAX_CLASSES
    line = format_line(r)
    parsed = parse_line(line)
    assert len(line.encode()) <= MAX_LINE_BYTES and parsed is not None
    assert parsed.validation is not None and parsed.validation.m_ap50 == 0.5


def test_eta_for_people() -> None:
    assert format_eta(None) is None
    assert [format_eta(s) for s in (0, 45.9, 450, 7500)] == ["0s", "45s", "7m30s", "2h05m"]
