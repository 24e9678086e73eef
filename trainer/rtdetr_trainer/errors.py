"""The trainer's typed errors and the exit code each one maps to.

The CLI is the only place that turns an exception into an exit status; everything else raises
one of these. ``exit_code`` follows the product's contract:

* 2 - bad input: a spec, a dataset, a checkpoint or a launch environment the user must fix.
  Retrying the same command cannot help (a Kubernetes pod-failure policy may treat it as fatal).
* 1 - a runtime failure: something broke while running (a peer vanished, a rendezvous timed out);
  retrying may help.
* 3 - storage: a result could not be written because the volume is full, over quota, read-only
  or not writable for this user. The message names the path and the cause. Retrying before
  someone fixes the volume cannot help, and a retry that reloads everything only to fail at
  the next checkpoint wastes the accelerators; the operator stalls the run instead.

Messages always name the thing to fix: the file, the annotation/image id, the spec key or the
environment variable. Torch-free, so the CLI can import it before deciding to import torch.
"""

from __future__ import annotations

from rtdetr_spec.storage import OutputWriteError, final_path, storage_cause

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2
#: Storage: fix the volume (space, quota, read-only mount, permissions), then run again.
EXIT_STORAGE = 3


class TrainerError(Exception):
    """Base of every error the trainer raises on purpose."""

    exit_code: int = EXIT_RUNTIME


class UserInputError(TrainerError):
    """Something the user gave us is wrong; the message says what and where."""

    exit_code = EXIT_BAD_INPUT


class DataError(UserInputError):
    """A dataset problem: missing/corrupt image, bad box, unknown category, duplicate id...

    Attributes:
        problems: one line per problem (already in the message, kept for programmatic use).
    """

    def __init__(self, problems: list[str] | str, *, total: int | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        total = len(self.problems) if total is None else total
        if len(self.problems) == 1 and total == 1:
            message = self.problems[0]
        else:
            shown = "\n".join(f"  - {p}" for p in self.problems)
            more = (
                f"\n  ... and {total - len(self.problems)} more"
                if total > len(self.problems)
                else ""
            )
            message = f"{total} problem(s) in the dataset:\n{shown}{more}"
        super().__init__(message)


class CheckpointError(UserInputError):
    """A checkpoint that cannot be read, or whose weights do not fit the spec's model."""


class LaunchError(UserInputError):
    """A multi-node launch environment (WORLD_SIZE, NODE_RANK, MASTER_ADDR, ...) that is wrong."""


class RendezvousError(TrainerError):
    """The nodes could not meet (MASTER_ADDR:MASTER_PORT unreachable within the timeout)."""


class ModelFileError(UserInputError, ValueError):
    """An exported model file that evaluate/inference refuse to run; the message names it."""


class StorageError(TrainerError):
    """A result could not be written: the volume is full, read-only or not ours to write.

    Not retryable as is (exit 3): the same write fails until someone fixes the volume.
    """

    exit_code = EXIT_STORAGE


def storage_failure(exc: BaseException) -> StorageError | None:
    """The :class:`StorageError` an unexpected exception amounts to, or None.

    A write of ours that failed on the storage (:class:`OutputWriteError`, anywhere in the
    chain) or an error only a write can cause (no space, quota, read-only file system) counts;
    a permission error of a read does not (that is the input's problem).
    """
    cause = storage_cause(exc, writing=False)
    if cause is None:
        return None
    if not isinstance(cause, OutputWriteError):
        where = final_path(cause.filename) if cause.filename else "a result file"
        cause = OutputWriteError(cause.errno, cause.strerror, where)
    return StorageError(str(cause))
