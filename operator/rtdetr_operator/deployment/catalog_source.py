"""The operator's GPU catalog, re-read when its files change (the chart's ConfigMap).

The catalog is the built-in file merged with ``$RTDETR_GPU_CATALOG`` (the chart mounts its
``gpuCatalog`` values there as a ConfigMap). It is validated at startup: an invalid catalog
stops the operator with one line naming the file and entry. The kubelet refreshes a mounted
ConfigMap in place, so each reconcile asks :meth:`CatalogSource.current`, which re-reads the
files when their modification time or size changed and validates them again. An invalid
update keeps the last valid catalog (a typo in the values must not turn every deployment
Stalled) and is logged once per content; the next valid update takes effect.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtdetr_serving.catalog import GpuCatalog, catalog_paths_from_env, load_catalog
from rtdetr_serving.errors import CatalogError

log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int], ...]


def _stamp(paths: Sequence[Path]) -> Stamp:
    out = []
    for p in paths:
        try:
            st = Path(p).stat()
            out.append((str(p), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(p), -1, -1))
    return tuple(out)


@dataclass
class CatalogSource:
    """The current valid catalog from ``paths`` (merged over the built-in one)."""

    paths: list[Path]
    loader: Callable[[list[Path]], GpuCatalog] = field(
        default=lambda paths: load_catalog(paths, use_env=False)
    )
    _catalog: GpuCatalog | None = None
    _stamp: Stamp = ()
    _rejected: Stamp | None = None
    #: The last invalid update's message (None while the files are valid).
    problem: str | None = None

    @classmethod
    def from_env(cls) -> CatalogSource:
        """Files of ``$RTDETR_GPU_CATALOG``; loads and validates now (raises CatalogError)."""
        src = cls(paths=catalog_paths_from_env())
        src.load()
        return src

    def load(self) -> GpuCatalog:
        """Read and validate the files now; raises :class:`CatalogError` if invalid."""
        stamp = _stamp(self.paths)
        self._catalog = self.loader(list(self.paths))
        self._stamp, self._rejected, self.problem = stamp, None, None
        return self._catalog

    def current(self) -> GpuCatalog:
        """The catalog, re-read if a file changed since the last read; last valid on error."""
        stamp = _stamp(self.paths)
        if self._catalog is not None and stamp in (self._stamp, self._rejected):
            return self._catalog
        try:
            catalog = self.loader(list(self.paths))
        except CatalogError as e:
            if self._catalog is None:
                raise
            self._rejected, self.problem = stamp, str(e)
            log.error("GPU catalog update rejected, keeping the previous one: %s", e)
            return self._catalog
        if self._catalog is not None:
            log.info("GPU catalog reloaded: %d GPU types", len(catalog.gpus))
        self._catalog, self._stamp, self._rejected, self.problem = catalog, stamp, None, None
        return catalog
