"""All-or-nothing output: every file of an export is written beside its final name, then renamed.

An export writes several files (ONNX, manifest, FP16 ONNX and its manifest, DeepStream config and
labels). Each is first written to a hidden temporary file in the destination folder (same file
system, so the final rename is atomic); only when every file is written and checked are they
renamed into place, ONNX files first and manifests after them. A failure before that point
removes the temporary files and leaves a previous export untouched. A consumer that finds a new
ONNX with an old manifest (a crash between two renames) refuses it: the manifest records the
ONNX's sha256.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import NoReturn

from rtdetr_spec.artifacts import umask
from rtdetr_spec.storage import output_error
from rtdetr_trainer.errors import StorageError
from rtdetr_trainer.export.errors import ExportInputError

log = logging.getLogger(__name__)


def check_writable(folder: Path, key: str) -> None:
    """Create ``folder`` if needed and prove a file can be written there.

    Raises:
        StorageError: the volume is full, read-only or not writable (exit 3), naming ``key``.
        ExportInputError: any other reason (e.g. a path under a file), naming ``key``.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        Path(probe).unlink()
    except OSError as e:
        storage = output_error(e, folder)
        if storage is not None:  # full, read-only or not ours: the volume's problem (exit 3)
            raise StorageError(f"{key}: {storage}") from None
        raise ExportInputError(f"{key}: cannot write to {folder} ({e.strerror or e})") from None


def _raise_storage(e: OSError, final: Path | str) -> NoReturn:
    """Re-raise ``e``, as :class:`OutputWriteError` naming ``final`` when the storage refused."""
    err = output_error(e, final)
    if err is None:
        raise e
    raise err from e


class StagedFiles:
    """Temporary files that become their final paths together in :meth:`commit`.

    Use as a context manager: leaving the block with an exception discards every staged file.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._committed = False

    def temp_for(self, final: str | Path) -> Path:
        """A fresh empty temporary file in ``final``'s folder that will become ``final``."""
        final = Path(final)
        if any(f == final for _, f in self._pending):
            raise ValueError(f"{final} is staged twice")
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
        except OSError as e:
            _raise_storage(e, final)
        os.close(fd)
        # mkstemp makes 0600 files; the results are for other users too (serving, DeepStream).
        Path(tmp).chmod(0o666 & ~umask())
        self._pending.append((Path(tmp), final))
        return Path(tmp)

    def write_text(self, final: str | Path, text: str) -> Path:
        tmp = self.temp_for(final)
        try:
            with open(tmp, "w") as f:
                f.write(text)
        except OSError as e:
            _raise_storage(e, final)
        return tmp

    def commit(self) -> list[Path]:
        """fsync every staged file, then rename each over its final path, in staging order."""
        for tmp, final in self._pending:
            try:
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
            except OSError as e:
                _raise_storage(e, final)
        done = []
        for tmp, final in self._pending:
            try:
                tmp.replace(final)
            except OSError as e:
                _raise_storage(e, final)
            done.append(final)
        self._committed = True
        self._pending = []
        return done

    def discard(self) -> None:
        for tmp, _ in self._pending:
            tmp.unlink(missing_ok=True)
        self._pending = []

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None or not self._committed:
            if self._pending:
                log.info("discarding %d unfinished export files", len(self._pending))
            self.discard()
