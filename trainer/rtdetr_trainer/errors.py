"""The trainer's typed errors and the exit code each one maps to.

The CLI is the only place that turns an exception into an exit status; everything else raises
one of these. ``exit_code`` follows the product's contract:

* 2 - bad input: a spec, a dataset, a checkpoint or a launch environment the user must fix.
  Retrying the same command cannot help (a Kubernetes pod-failure policy may treat it as fatal).
* 1 - a runtime failure: something broke while running (a peer vanished, a rendezvous timed out,
  a disk filled up); retrying may help.

Messages always name the thing to fix: the file, the annotation/image id, the spec key or the
environment variable. Torch-free, so the CLI can import it before deciding to import torch.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


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


class ExportUnavailableError(UserInputError):
    """``rtdetr export`` was asked for, but this build carries no export module."""
