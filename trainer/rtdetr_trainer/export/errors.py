"""Typed errors of the export package, in the trainer's hierarchy (the CLI maps them to exits).

* :class:`ExportInputError` (exit 2): something the user gave is wrong - a checkpoint that does
  not fit the spec, an output path that cannot be written, a spec value export cannot honour.
  The message names the spec key or the file.
* :class:`ExportVerificationError` (exit 1): the exported graph does not compute what the
  PyTorch model computes. That is a defect of the exporter or the runtime, not of the input.
"""

from __future__ import annotations

from rtdetr_trainer.errors import TrainerError, UserInputError


class ExportError(TrainerError):
    """Base of every error the export package raises on purpose."""


class ExportInputError(UserInputError, ExportError, ValueError):
    """A spec value, checkpoint or path that export cannot use; the message names it."""


class ExportVerificationError(ExportError, RuntimeError):
    """The exported graph's outputs disagree with PyTorch's beyond the stated tolerance."""
