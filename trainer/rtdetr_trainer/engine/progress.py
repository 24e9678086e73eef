"""Training progress for people: a tqdm bar on a terminal, plain periodic lines in a pod log.

Pod logs are not terminals; a carriage-return progress bar there becomes one giant line. So
without a TTY we print one line every ``RTDETR_LOG_EVERY_S`` seconds (default 30) or at the end
of an epoch. Only global rank 0 reports. Machine-readable metrics go to ``metrics.jsonl``.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO


def _fmt_seconds(s: float) -> str:
    s = int(max(s, 0))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """One epoch's progress: ``update(**values)`` per step, ``close()`` at the end."""

    def __init__(
        self,
        *,
        epoch: int,
        num_epochs: int,
        total: int,
        enabled: bool = True,
        stream: TextIO | None = None,
        tty: bool | None = None,
    ) -> None:
        self.epoch, self.num_epochs, self.total = epoch, num_epochs, total
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.tty = self.tty and os.environ.get("RTDETR_NO_PROGRESS", "") in ("", "0")  # lines
        self.every_s = float(os.environ.get("RTDETR_LOG_EVERY_S", "30"))
        self.start = self.last = time.monotonic()
        self.count = 0
        self.values: dict[str, Any] = {}
        self._bar: Any = None
        if self.enabled and self.tty:
            try:
                from tqdm import tqdm
            except ImportError:  # tqdm is optional; fall back to lines
                self.tty = False
            else:
                self._bar = tqdm(
                    total=total,
                    desc=f"epoch {epoch + 1}/{num_epochs}",
                    file=self.stream,
                    dynamic_ncols=True,
                    leave=True,
                )

    def update(self, **values: Any) -> None:
        self.count += 1
        self.values = values
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix({k: _short(v) for k, v in values.items()}, refresh=False)
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s and self.count < self.total:
            self.last = now
            self._line()

    def _line(self, final: bool = False) -> None:
        elapsed = time.monotonic() - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else 0.0
        parts = [
            f"epoch {self.epoch + 1}/{self.num_epochs}",
            f"step {self.count}/{self.total}",
            *(f"{k} {_short(v)}" for k, v in self.values.items()),
            f"{rate:.2f} it/s",
            f"took {_fmt_seconds(elapsed)}" if final else f"eta {_fmt_seconds(eta)}",
        ]
        print("  ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        else:
            self._line(final=True)


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2e}" if (abs(v) < 1e-3 and v != 0) else f"{v:.4f}"
    return str(v)
