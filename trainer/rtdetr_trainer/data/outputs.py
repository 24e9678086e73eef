"""Where the dataset tools may write: never over their own input, never over a dataset unasked.

``rtdetr dataset synth`` and ``convert coco2h5|h52coco`` work out every file they will
write before writing the first one, and :func:`check_outputs` refuses, with one line naming the
path (exit 2):

* an ``--output`` that exists and is not a folder, or that cannot be written (a read-only
  volume): found now, not after minutes of conversion;
* a file to be written that is one of the command's inputs (the annotation file, a source image
  or H5 file), even with ``--overwrite``: a failure half-way would leave neither the old nor the
  new file, and converting in place is never needed;
* a file to be written that already exists (an annotation file, an H5 file, an image), unless
  ``--overwrite``: another dataset, or an earlier run, lives there.

The writers then put every file in place by rename (temp file in the same folder), so a failure
loses nothing that was there before.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from rtdetr_trainer.errors import UserInputError
from rtdetr_trainer.results import unwritable


def _real(path: str | Path) -> str:
    return os.path.realpath(path)


def check_output_folder(output: str | Path, flag: str = "--output") -> Path:
    """``output`` as a Path, refused if it is a file or no file can be created in it."""
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{flag} {out}: exists and is not a folder")
    problem = unwritable(out)
    if problem:
        raise UserInputError(f"{flag} {out}: {problem}")
    return out


def check_outputs(
    output: str | Path,
    targets: Iterable[Path],
    inputs: Iterable[str | Path],
    *,
    overwrite: bool,
    flag: str = "--output",
) -> None:
    """Refuse writing any of ``targets`` (see the module docstring); call before any write."""
    check_output_folder(output, flag)
    sources = {_real(p) for p in inputs}
    existing: Path | None = None
    for target in targets:
        if _real(target) in sources:
            raise UserInputError(
                f"{flag} {output}: would write {target}, which is an input of this command; "
                "choose another output folder"
            )
        if existing is None and target.exists():
            existing = target
    if existing is not None and not overwrite:
        raise UserInputError(
            f"{flag} {output}: {existing} already exists and would be replaced; choose an empty "
            "folder, or pass --overwrite to replace what is there"
        )
