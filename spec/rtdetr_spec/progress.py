"""The live-progress line: how a running training tells the operator where it is.

Global rank 0 of ``rtdetr train`` prints one line to stdout at the end of every epoch and about
once a minute within an epoch::

    RTDETR_PROGRESS {"v":1,"epoch":3,"numEpochs":30,"step":120,"stepsPerEpoch":400,...}

The operator reads the tail of that pod's log through the Kubernetes pod log API (the pod needs
no API permissions of its own) and folds the newest line into ``status.trainingProgress``. This
module is the whole contract, imported by both sides; it is torch-free and I/O-free.

Reading is tolerant and bounded: anything that is not a well-formed line of a version this
module understands is skipped (a crashed print, an interleaved worker line, a newer trainer's
v2 line), only the last :data:`MAX_SCAN_BYTES` of a log are looked at, and a line over
:data:`MAX_LINE_BYTES` is ignored unread, so a hostile or chatty pod cannot make the operator
parse megabytes.
"""

from __future__ import annotations

import json
import math
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

#: What starts every progress line (followed by one space and a JSON object).
PREFIX = "RTDETR_PROGRESS "
#: The line format's version; readers skip lines of versions they do not know.
VERSION = 1
#: Longest line a reader parses (per-class AP50 of a few hundred classes fits).
MAX_LINE_BYTES = 16_384
#: How much of a log's end a reader scans.
MAX_SCAN_BYTES = 256 * 1024
#: Most classes a line may carry in ``perClassAP50`` (more are dropped, largest names first).
MAX_CLASSES = 256


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", frozen=True
    )


class Validation(_Wire):
    """COCO metrics of the latest validation during training."""

    epoch: int = Field(ge=1)
    """The epoch (1-based) after which the model was validated."""
    m_ap: float | None = Field(default=None, alias="mAP")
    m_ap50: float | None = Field(default=None, alias="mAP50")
    per_class_ap50: dict[str, float | None] = Field(default_factory=dict, alias="perClassAP50")

    @field_validator("m_ap", "m_ap50")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else round(v, 6)

    @field_validator("per_class_ap50")
    @classmethod
    def _classes(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        keep = sorted(v)[:MAX_CLASSES]
        return {
            str(k)[:63]: (
                None if v[k] is None or not math.isfinite(v[k]) else round(float(v[k]), 6)  # type: ignore[arg-type]
            )
            for k in keep
        }


class ProgressReport(_Wire):
    """One progress line: where training is and what it measured last."""

    v: int = VERSION
    epoch: int = Field(ge=0)
    """Epochs completed (0 while the first one runs)."""
    num_epochs: int = Field(ge=1)
    step: int = Field(default=0, ge=0)
    """Optimizer steps done in the current epoch (``stepsPerEpoch`` once it ended)."""
    steps_per_epoch: int = Field(default=0, ge=0)
    global_step: int = Field(default=0, ge=0)
    percent: float = Field(ge=0, le=100)
    """Share of all optimizer steps of the run done, 0-100."""
    eta_seconds: float | None = Field(default=None, ge=0)
    """Estimated seconds left (None until there is a rate to estimate from)."""
    loss: float | None = None
    """Latest training loss (a step's loss within an epoch, the epoch mean at its end)."""
    learning_rate: float | None = None
    validation: Validation | None = None
    """The latest validation of this process (None before the first one)."""
    time: datetime | None = None
    """When the trainer printed the line (UTC)."""

    @field_validator("loss", "learning_rate", "eta_seconds")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else v


def format_line(report: ProgressReport) -> str:
    """The line to print (no newline), or the same line without per-class AP50 if too long."""
    text = PREFIX + report.model_dump_json(by_alias=True, exclude_none=True)
    if len(text.encode()) > MAX_LINE_BYTES and report.validation is not None:
        slim = report.validation.model_copy(update={"per_class_ap50": {}})
        text = PREFIX + report.model_copy(update={"validation": slim}).model_dump_json(
            by_alias=True, exclude_none=True
        )
    return text


def parse_line(line: str) -> ProgressReport | None:
    """The report a log line carries, or None for any other or malformed line."""
    start = line.find(PREFIX)
    if start < 0 or len(line) > MAX_LINE_BYTES:
        return None
    payload = line[start + len(PREFIX) :].strip()
    try:
        raw = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(raw, dict) or raw.get("v") != VERSION:
        return None
    try:
        return ProgressReport.model_validate(raw)
    except ValidationError:
        return None


def parse_log(text: str) -> list[ProgressReport]:
    """Every readable report in the last :data:`MAX_SCAN_BYTES` of ``text``, oldest first."""
    if len(text) > MAX_SCAN_BYTES:
        text = text[-MAX_SCAN_BYTES:]
        text = text[text.find("\n") + 1 :]  # the cut line is partial
    return [r for line in text.splitlines() if (r := parse_line(line)) is not None]


def latest(text: str) -> ProgressReport | None:
    """The newest readable report in ``text`` (a pod log's tail), or None."""
    reports = parse_log(text)
    return reports[-1] if reports else None


def format_eta(seconds: float | None) -> str | None:
    """``2h05m``, ``7m30s``, ``45s`` (None stays None): what ``kubectl get`` shows."""
    if seconds is None:
        return None
    s = int(max(seconds, 0))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"
