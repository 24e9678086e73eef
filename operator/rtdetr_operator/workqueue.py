"""A coalescing, delayed, per-key work queue: level-based reconciliation on top of kopf's watches.

kopf delivers events per object; the reconciler wants "look at training X again". Many events
about X (its Jobs, its pods, its own status) collapse into one pending key; a key being worked on
is never worked on twice at once (an event arriving meanwhile marks it dirty, and it runs again
afterwards); a reconcile can ask to be run again after a delay (a grace period ending, a deadline)
without kopf timers, which would put finalizers on every CR and make deletion hang while the
operator is down (kopf #833). Failures retry with exponential backoff. A periodic resync re-queues
every known key so nothing depends on a single event being delivered.

Semantics follow client-go's workqueue (the queue controllers in Go are built on).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

logger = logging.getLogger(__name__)

Key = Hashable
Worker = Callable[[Key], Awaitable[float | None]]


class WorkQueue:
    def __init__(self, *, resync_period: float = 300.0, max_backoff: float = 60.0) -> None:
        self.resync_period = resync_period
        self.max_backoff = max_backoff
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, tuple[float, asyncio.TimerHandle]] = {}
        self._failures: dict[Key, int] = {}
        self._known: set[Key] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._added: dict[Key, float] = {}
        #: Told how many seconds each key waited before a worker took it (metrics.py).
        self.on_wait: Callable[[float], None] | None = None
        #: Told each key that is forgotten (its object was deleted).
        self.on_forget: Callable[[Key], None] | None = None

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def known(self) -> frozenset[Key]:
        return frozenset(self._known)

    def add(self, key: Key) -> None:
        """Reconcile ``key`` soon (once, however often it is added before a worker takes it)."""
        self._known.add(key)
        if key in self._processing:
            self._dirty.add(key)
            return
        if key in self._queued:
            return
        self._queued.add(key)
        self._added[key] = time.monotonic()
        self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        """Reconcile ``key`` after ``delay`` seconds (an earlier pending request wins)."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending is not None:
            if pending[0] <= due:
                return
            pending[1].cancel()
        self._timers[key] = (due, loop.call_later(delay, self._fire, key))

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        if key in self._known:
            self.add(key)

    def forget(self, key: Key) -> None:
        """The object is gone: drop its timers, backoff and resync membership."""
        self._known.discard(key)
        self._failures.pop(key, None)
        pending = self._timers.pop(key, None)
        if pending is not None:
            pending[1].cancel()
        if self.on_forget is not None:
            self.on_forget(key)

    def start(self, worker: Worker, workers: int) -> None:
        for i in range(workers):
            self._tasks.append(asyncio.create_task(self._run(worker), name=f"reconcile-{i}"))
        self._tasks.append(asyncio.create_task(self._resync(), name="resync"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def _run(self, worker: Worker) -> None:
        while True:
            key = await self._queue.get()
            self._queued.discard(key)
            added = self._added.pop(key, None)
            if self.on_wait is not None and added is not None:
                self.on_wait(time.monotonic() - added)
            self._processing.add(key)
            delay: float | None = None
            try:
                delay = await worker(key)
                self._failures.pop(key, None)
            except asyncio.CancelledError:
                raise
            except Exception:
                failures = self._failures.get(key, 0) + 1
                self._failures[key] = failures
                delay = min(0.5 * 2 ** (failures - 1), self.max_backoff)
                logger.exception(
                    "reconciling %s failed (attempt %d); retrying in %.1fs", key, failures, delay
                )
            finally:
                self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif delay is not None and key in self._known:
                self.add_after(key, delay)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_period)
            for key in list(self._known):
                self.add(key)
