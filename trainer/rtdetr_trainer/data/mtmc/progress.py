"""Progress of a scene conversion: a bar on a terminal, periodic lines in a pod log.

Workers report decoded-frame counts; the parent owns the display. Without a TTY (a Kubernetes
Job's log) a carriage-return bar would become one endless line, so it prints one line every
``RTDETR_LOG_EVERY_S`` seconds (default 30) instead, with frames/s and an ETA.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO


class ConvertProgress:
    """``advance(camera, frames)`` as frames are decoded; ``close()`` at the end."""

    def __init__(self, total: int, *, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.total, self.done = total, 0
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.every_s = float(os.environ.get("RTDETR_LOG_EVERY_S", "30"))
        self.start = self.last = time.monotonic()
        self._bar: Any = None
        if self.enabled and self.stream.isatty():
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._bar = tqdm(
                    total=total, desc="frames", unit="fr", file=self.stream, dynamic_ncols=True
                )

    def advance(self, camera: str, frames: int) -> None:
        frames = min(frames, self.total - self.done)
        self.done += frames
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(frames)
            self._bar.set_postfix_str(camera, refresh=False)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            print(
                f"convert: {self.done}/{self.total} frames ({100 * self.done / self.total:.0f}%), "
                f"{rate:.0f} frames/s, ~{eta:.0f}s left (last: {camera})",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
