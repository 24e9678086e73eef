"""Typed errors of the export package and the exit status each one means.

* :class:`ExportInputError` (exit 2): something the user gave is wrong - a checkpoint that does
  not fit the spec, an output path that cannot be written, a spec value export cannot honour.
  The message names the spec key or the file.
* :class:`ModelFileError` (exit 2): an exported ONNX given to evaluate/inference that cannot be
  trusted (no manifest next to it, or the file changed since the manifest was written).
* :class:`ExportVerificationError` (exit 1): the exported graph does not compute what the
  PyTorch model computes. That is a defect of the exporter or the runtime, not of the input.
"""

from __future__ import annotations

EXIT_RUNTIME = 1
EXIT_BAD_INPUT = 2


class ExportError(Exception):
    """Base of every error the export package raises on purpose."""

    exit_code: int = EXIT_RUNTIME


class ExportInputError(ExportError, ValueError):
    """A spec value, checkpoint or path that export cannot use; the message names it."""

    exit_code = EXIT_BAD_INPUT


class ModelFileError(ExportError, ValueError):
    """An exported model file that evaluate/inference refuse to run; the message names it."""

    exit_code = EXIT_BAD_INPUT


class ExportVerificationError(ExportError, RuntimeError):
    """The exported graph's outputs disagree with PyTorch's beyond the stated tolerance."""

    exit_code = EXIT_RUNTIME
