"""Open ``.pth`` files without running code from them.

A ``torch.save`` file is a pickle, and a pickle can import and call anything. Checkpoints come
from shared volumes and downloads, so every load here is ``torch.load(weights_only=True)``: torch's
restricted unpickler builds tensors and plain containers and nothing else. The few other globals
that TAO's Lightning checkpoints and ours carry are allow-listed for the duration of one load
(``torch.serialization.safe_globals``), and most of them are inert stand-ins registered under the
original name, so no method of omegaconf, Lightning or any other package runs either:

* omegaconf containers and nodes (``DictConfig``, ``ListConfig``, ``ContainerMetadata``,
  ``Metadata``, ``AnyNode`` and the typed value nodes), which Lightning pickles when hyper-
  parameters are an OmegaConf config: each becomes an :class:`InertRecord` holding its state;
* ``collections.defaultdict`` (omegaconf's resolver cache) and Lightning's ``AttributeDict``:
  a plain ``dict``;
* ``typing.Any`` and the builtin types ``dict``/``list``/``tuple``/``str``/``int``/``float``/
  ``bool`` as values (omegaconf's ``ref_type``/``object_type``/``key_type``);
* ``pathlib`` paths (pure values) and numpy scalars, dtypes and arrays (metrics a callback kept).

Anything else (``os.system``, ``builtins.eval``, a class of some package) is refused with one line
naming the file and the global it wanted. :data:`TRUST_ENV` set to ``1`` is the only way to
unpickle a file fully; nothing in the product sets it, and the operator refuses it in a CR's
``spec.env``.
"""

from __future__ import annotations

import importlib
import logging
import os
import pathlib
import pickle
import re
import typing
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

#: Set to ``1`` to fully unpickle checkpoints that the safe load refuses (trusted files only).
TRUST_ENV = "RTDETR_TRUST_CHECKPOINTS"


class UnsafeCheckpointError(ValueError):
    """The checkpoint needs a Python global outside the allow-list (it could run code)."""


class InertRecord:
    """A pickled object of an allow-listed foreign class, kept as data.

    ``args`` are the constructor arguments the pickle gave and ``state`` what it restored; no
    code of the original class runs, and nothing here reads either.
    """

    args: tuple[Any, ...]
    state: Any

    def __new__(cls, *args: Any, **kwargs: Any) -> InertRecord:
        inst = object.__new__(cls)
        inst.args = args
        inst.state = None
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Construction is fully done by ``__new__``."""

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__} (inert)>"


class DictStandIn:
    """Stands in for dict subclasses (``defaultdict``, ``AttributeDict``): builds a plain dict.

    Works for both ways a pickle builds them: ``REDUCE`` calls the class, ``NEWOBJ`` calls
    ``__new__``; either way the result is an empty ``dict`` the pickle then fills.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> dict[Any, Any]:  # type: ignore[misc]
        return {}


_OMEGACONF = (
    "omegaconf.dictconfig.DictConfig",
    "omegaconf.listconfig.ListConfig",
    "omegaconf.base.ContainerMetadata",
    "omegaconf.base.Metadata",
    "omegaconf.nodes.AnyNode",
    "omegaconf.nodes.StringNode",
    "omegaconf.nodes.IntegerNode",
    "omegaconf.nodes.FloatNode",
    "omegaconf.nodes.BooleanNode",
    "omegaconf.nodes.BytesNode",
    "omegaconf.nodes.PathNode",
)
_DICT_LIKE = (
    "collections.defaultdict",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
)


def _inert_class(full_name: str) -> type[InertRecord]:
    module, _, name = full_name.rpartition(".")
    cls = type(name, (InertRecord,), {"__module__": f"inert:{module}"})
    return cls


def _numpy_globals() -> list[tuple[Any, str]]:
    """numpy's pickle helpers under both module names (numpy 1.x ``core``, 2.x ``_core``)."""
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    out: list[tuple[Any, str]] = []
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out.append((multiarray.scalar, f"{module}.scalar"))
        out.append((multiarray._reconstruct, f"{module}._reconstruct"))
    out += [(np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    kinds = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    for kind in (*kinds, "float16", "float32", "float64", "complex64", "complex128"):
        cls = type(np.dtype(kind))  # numpy >= 1.25 builds dtypes as per-kind classes
        if cls is not np.dtype:
            out.append((cls, f"{cls.__module__}.{cls.__qualname__}"))
    return out


def _build_allow_list() -> list[Any]:
    out: list[Any] = [(_inert_class(n), n) for n in _OMEGACONF]
    out += [(DictStandIn, n) for n in _DICT_LIKE]
    out.append((typing.Any, "typing.Any"))
    for t in (dict, list, tuple, str, int, float, bool):
        out.append((t, f"builtins.{t.__name__}"))
    for cls in (pathlib.PosixPath, pathlib.PurePosixPath, pathlib.PureWindowsPath):
        for module in ("pathlib", "pathlib._local"):
            out.append((cls, f"{module}.{cls.__name__}"))
    out += _numpy_globals()
    return out


#: What a checkpoint may reference beyond torch's own weights-only set, as (object, name) pairs.
ALLOWED_GLOBALS: list[Any] = _build_allow_list()


def allowed_names() -> list[str]:
    return sorted(name for _, name in ALLOWED_GLOBALS)


def trusted() -> bool:
    """Whether the operator of this process opted into full unpickling (``TRUST_ENV=1``)."""
    return os.environ.get(TRUST_ENV, "") == "1"


_GLOBAL_IN_MESSAGE = re.compile(
    r"GLOBAL ([\w.]+)|unrecognized function ([^\s]+)|got <class '([^']+)'"
)


def _unsafe_globals(path: Path, error: Exception) -> list[str]:
    """The globals the file wants beyond the allow-list (static scan, else torch's message)."""
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        if found:
            return sorted(found)
    except Exception:  # legacy (non-zip) files cannot be scanned: fall back to the message
        pass
    m = _GLOBAL_IN_MESSAGE.search(str(error))
    return [next(g for g in m.groups() if g)] if m else []


def safe_torch_load(path: str | Path) -> Any:
    """``torch.load(path, weights_only=True)`` onto the CPU with :data:`ALLOWED_GLOBALS`.

    Raises:
        UnsafeCheckpointError: the file references a global outside the allow-list (and
            :data:`TRUST_ENV` is not ``1``); the message names the file and the global.
        pickle.UnpicklingError, RuntimeError, OSError, ...: the file is not a checkpoint.
    """
    p = Path(path)
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        wanted = _unsafe_globals(p, e)
        if not wanted:
            raise  # nothing outside the allow-list: the file is damaged or not a checkpoint
        if trusted():
            log.warning(
                "%s=1: fully unpickling %s, which wants %s (this can run code from the file)",
                TRUST_ENV, p, ", ".join(wanted) or "a global outside the allow-list",
            )  # fmt: skip
            return torch.load(p, map_location="cpu", weights_only=False)
        what = ", ".join(wanted[:3]) + (f" and {len(wanted) - 3} more" if len(wanted) > 3 else "")
        raise UnsafeCheckpointError(
            f"{p}: refused to load: the file wants the Python global {what or '(unknown)'}, "
            "which is not plain checkpoint data and could run code; save only its weights "
            f"(a state_dict), or set {TRUST_ENV}=1 if you trust the file and where it came from"
        ) from None
