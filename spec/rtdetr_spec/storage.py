"""Results that cannot be written: which failures are the storage's, and how to say so.

A full volume, a quota, a read-only mount or a folder we may not write are not bugs and not bad
input: the same command succeeds once someone fixes the volume, and retrying before that only
burns time (a training retry reloads data and the model, then fails at the next checkpoint).
Writers of results (:func:`rtdetr_spec.artifacts.atomic_write` and the others built on it) turn
such failures into :class:`OutputWriteError`, naming the final path (not a temp file) and the
cause; the CLIs map it to their "storage" exit status (3 for ``rtdetr``). Torch-free.

Libraries that write through Python file objects may wrap the OS error (``torch.save`` raises
``RuntimeError: [enforce fail at inline_container.cc...]`` with the ``OSError`` as its context),
so :func:`storage_cause` looks along the whole exception chain.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path

#: Failures of a write that only a change to the storage can fix.
STORAGE_ERRNOS: frozenset[int] = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
)
#: Of those, the ones no read can produce: found anywhere, they are the storage's.
WRITE_ONLY_ERRNOS: frozenset[int] = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})

_ADVICE = {
    errno.ENOSPC: "free space on the volume (or give it more)",
    errno.EDQUOT: "raise the quota or free space",
    errno.EFBIG: "the file system cannot hold a file this large; use another volume",
    errno.EROFS: "mount the volume read-write",
    errno.EACCES: "make the folder writable for this user",
    errno.EPERM: "make the folder writable for this user",
}


class OutputWriteError(OSError):
    """A result could not be written because of the storage (full, quota, read-only, denied)."""

    def __str__(self) -> str:
        code = errno.errorcode.get(self.errno or 0, str(self.errno))
        advice = _ADVICE.get(self.errno or 0, "fix the volume")
        return (
            f"cannot write {self.filename}: {self.strerror} ({code}); {advice}, then run the "
            "task again"
        )


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or while handling, outermost first."""
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in out:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def storage_cause(exc: BaseException, *, writing: bool = True) -> OSError | None:
    """The storage ``OSError`` behind ``exc``, if any.

    Args:
        writing: ``exc`` came from a write, so a denied permission is the storage's too;
            otherwise only errors no read can produce (no space, quota, read-only) count.
    """
    codes = STORAGE_ERRNOS if writing else WRITE_ONLY_ERRNOS
    for e in chain(exc):
        if isinstance(e, OutputWriteError):
            return e
        if isinstance(e, OSError) and e.errno in codes:
            return e
    return None


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp$")


def final_path(path: str | Path) -> str:
    """The result a hidden temp file (``.<name>.<random>.tmp``, as our writers make) becomes."""
    p = Path(path)
    m = _TEMP_NAME.match(p.name)
    return str(p.with_name(m.group("name"))) if m else str(p)


def output_error(exc: BaseException, path: str | Path) -> OutputWriteError | None:
    """:class:`OutputWriteError` for a failed write of ``path``, or None (not the storage)."""
    cause = storage_cause(exc)
    if cause is None:
        return None
    if isinstance(cause, OutputWriteError):
        return cause
    code = cause.errno or errno.EIO
    return OutputWriteError(code, cause.strerror or os.strerror(code), final_path(path))


def ensure_dir(folder: str | Path) -> Path:
    """``mkdir -p folder``; a storage failure becomes :class:`OutputWriteError`."""
    p = Path(folder)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        err = output_error(e, e.filename or p)
        if err is None:
            raise
        raise err from e
    return p


def nearest_existing(path: str | Path) -> Path:
    """The deepest existing path at or above ``path`` (what ``mkdir -p`` would create under)."""
    p = Path(path)
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def probe_writable(path: str | Path) -> tuple[Path, OSError | None]:
    """Whether a file could be created at or under ``path``, creating nothing that stays.

    Returns the folder that was tried (the deepest existing one at or above ``path``) and the
    error that creating a temp file there gave, or None. Only a real create answers the question
    for root too (a read-only volume or sysfs passes ``os.access``); a path running through a
    regular file gives ``ENOTDIR``.
    """
    base = nearest_existing(Path(path).absolute())
    if not base.is_dir():
        return base, NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(base))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".rtdetr-write-probe.", dir=base)
    except OSError as e:
        return base, e
    os.close(fd)
    Path(tmp).unlink()
    return base, None
