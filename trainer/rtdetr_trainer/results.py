"""What every task leaves in its results folder, and the summary it hands to Kubernetes.

``<results_dir>/<task>/`` (or ``<task>.results_dir``) gets, as TAO's tasks do:

* ``experiment.yaml``: the fully resolved spec (defaults + YAML + command-line overrides), with
  secret-like values redacted (a record for people and tools; resuming reads checkpoints, never
  this file, and the training processes get an unredacted copy in a private folder);
* ``status.json``: TAO's status log, one JSON object per line, appended (``date``, ``time``,
  ``status`` STARTED/RUNNING/SUCCESS/FAILURE, ``verbosity``, ``message``, and for training
  ``epoch``, ``max_epoch``, ``time_per_epoch``, ``eta``, ``kpi``). The last line is the current
  state. TAO's own tools (and the TAO API) read this format;
* ``metrics.jsonl`` (training): one JSON object per logged step/epoch.

A finished task also writes a compact :class:`rtdetr_spec.reporting.TaskSummary` as the
container's termination message, which the operator reads from the pod status
(:func:`rtdetr_spec.reporting.write_termination_message`: where, how much, how). Torch-free.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from rtdetr_spec import ExperimentSpec, dump_experiment
from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_spec.redact import redact_text
from rtdetr_spec.storage import (
    OutputWriteError,
    ensure_dir,
    output_error,
    probe_writable,
    storage_cause,
)
from rtdetr_trainer.errors import UserInputError

log = logging.getLogger(__name__)


class TaskResults:
    """A task's results folder: resolved spec, TAO status log and metrics lines.

    Args:
        spec: the resolved spec.
        task: train, evaluate, inference, export.
        writer: False on every process but global rank 0, which then writes nothing.
    """

    def __init__(self, spec: ExperimentSpec, task: str, *, writer: bool = True) -> None:
        self.spec, self.task, self.writer = spec, task, writer
        self.dir = Path(spec.task_results_dir(task))
        self.started = time.time()

    @property
    def status_file(self) -> Path:
        return self.dir / "status.json"

    @property
    def metrics_file(self) -> Path:
        return self.dir / "metrics.jsonl"

    def prepare(self, *, spec_file: bool = True) -> None:
        """Create the folder and, unless told not to, write ``experiment.yaml`` (atomically).

        Training passes ``spec_file=False`` and writes it with :meth:`write_spec` only once the
        run has accepted the folder's checkpoints: a refused resume must not replace the spec
        that describes them.
        """
        if not self.writer:
            return
        ensure_dir(self.dir)
        if spec_file:
            self.write_spec()

    def write_spec(self) -> None:
        """``experiment.yaml``: the resolved spec, secret-like values redacted."""
        if self.writer:
            atomic_write_text(self.dir / "experiment.yaml", dump_experiment(self.spec))

    def status(self, status: str, message: str | None = None, **data: Any) -> None:
        """Append one TAO status line: STARTED, RUNNING, SUCCESS or FAILURE."""
        if not self.writer:
            return
        now = datetime.now()
        record: dict[str, Any] = {
            **data,
            "date": f"{now.month}/{now.day}/{now.year}",
            "time": f"{now.hour}:{now.minute}:{now.second}",
            "status": status,
            "verbosity": "INFO" if status != "FAILURE" else "ERROR",
        }
        if message:
            record["message"] = redact_text(message)
        _append_line(self.status_file, record)

    def metrics(self, record: dict[str, Any]) -> None:
        if self.writer:
            _append_line(self.metrics_file, {"time": round(time.time(), 3), **record})


def unwritable(path: str | Path) -> str | None:
    """Why no file could be created at or under ``path`` (None: it could), creating nothing."""
    return _write_probe(path)[0]


def _write_probe(path: str | Path) -> tuple[str | None, OSError | None]:
    """(why ``path`` cannot be written or None, the OS error behind it if the create failed)."""
    base, err = probe_writable(path)
    if err is None:
        return None, None
    if isinstance(err, NotADirectoryError) and err.filename == str(base):
        what = "a broken symbolic link" if base.is_symlink() else "not a folder"
        return f"{base} is {what}", None
    return f"cannot create files in {base} ({err.strerror or err})", err


def check_results_dir(spec: ExperimentSpec, task: str) -> Path:
    """Refuse, before any work, a results folder that is a file or cannot be written.

    A path that runs through a regular file is the spec's mistake (exit 2); a volume that is
    read-only, full or denies this user is the storage's (exit 3, which the operator does not
    retry blindly), the same verdict a failed write would get later.

    Raises:
        UserInputError: naming the spec key, the path and the cause (exit 2).
        OutputWriteError: naming the path, the cause and the fix (exit 3).
    """
    own = getattr(getattr(spec, task, None), "results_dir", None)
    key = f"{task}.results_dir" if own else "results_dir"
    path = Path(spec.task_results_dir(task))
    problem, cause = _write_probe(path)
    if cause is not None and storage_cause(cause) is not None:
        code = cause.errno or errno.EACCES
        raise OutputWriteError(code, cause.strerror or os.strerror(code), f"{path} ({key})")
    if problem:
        raise UserInputError(f"{key}: {path}: {problem}")
    return path


def _append_line(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line (append-only logs: a torn last line is skipped by readers)."""
    ensure_dir(path.parent)
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        err = output_error(e, path)
        if err is None:
            raise
        raise err from e


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):
        return value.item()  # numpy / torch scalars
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def last_status(path: str | Path) -> dict[str, Any] | None:
    """The last parseable line of a TAO ``status.json`` (None if there is none)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return json.loads(line)
        except json.JSONDecodeError:
            continue
    return None


@contextmanager
def failure_recorded(results: TaskResults) -> Iterator[None]:
    """Append a FAILURE status line (with the reason) if the body raises."""
    try:
        yield
    except BaseException as e:
        reason = str(e) or type(e).__name__
        try:
            results.status("FAILURE", reason[:4000])
        except OSError as status_error:  # the volume that failed the task fails this line too
            log.warning("could not record the failure in %s: %s", results.status_file, status_error)
        raise
