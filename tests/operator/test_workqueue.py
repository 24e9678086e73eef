"""The work queue: coalescing, per-key serialisation, delayed requeue, backoff, forget.

Tests wait for the condition they check (:func:`until`), not for a fixed time; only asserting
that something does *not* happen needs a pause, and that pause outlasts the delay in question.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rtdetr_operator.workqueue import WorkQueue


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=5))


async def until(condition: Callable[[], bool]) -> None:
    """Yield to the workers until ``condition`` holds (``run``'s timeout bounds the wait)."""
    while not condition():
        await asyncio.sleep(0.001)


def test_adds_coalesce_while_queued() -> None:
    async def main() -> list[str]:
        q = WorkQueue()
        seen: list[str] = []

        async def work(key):
            seen.append(key)
            return None

        for _ in range(5):
            q.add("a")
        q.add("b")
        q.start(work, 2)
        await until(lambda: len(seen) == 2 and len(q) == 0)
        await asyncio.sleep(0.02)  # nothing else was queued: no third call comes
        await q.stop()
        return seen

    assert sorted(run(main())) == ["a", "b"]


def test_a_key_is_never_processed_twice_at_once_and_dirty_keys_rerun() -> None:
    async def main() -> tuple[int, int]:
        q = WorkQueue()
        running = 0
        peak = 0
        calls = 0

        async def work(key):
            nonlocal running, peak, calls
            calls += 1
            running += 1
            peak = max(peak, running)
            if calls == 1:
                q.add("a")  # an event arrives while "a" is being reconciled
            await asyncio.sleep(0.02)
            running -= 1
            return None

        q.add("a")
        q.start(work, 4)
        await until(lambda: calls == 2 and running == 0)
        await q.stop()
        return peak, calls

    peak, calls = run(main())
    assert peak == 1 and calls == 2


def test_requeue_after_and_backoff_on_errors() -> None:
    async def main() -> list[tuple[str, float]]:
        q = WorkQueue(max_backoff=0.2)
        loop = asyncio.get_running_loop()
        start = loop.time()
        log: list[tuple[str, float]] = []

        async def work(key):
            log.append((key, loop.time() - start))
            if key == "later" and len([k for k, _ in log if k == "later"]) == 1:
                return 0.1
            if key == "broken" and len([k for k, _ in log if k == "broken"]) < 3:
                raise RuntimeError("apiserver hiccup")
            return None

        q.add("later")
        q.add("broken")
        q.start(work, 2)
        await until(lambda: [k for k, _ in log].count("broken") == 3)
        await until(lambda: [k for k, _ in log].count("later") == 2)
        await q.stop()
        return log

    log = run(main())
    later = [t for k, t in log if k == "later"]
    assert len(later) == 2 and later[1] - later[0] >= 0.09
    broken = [t for k, t in log if k == "broken"]
    assert len(broken) == 3  # 2 failures retried with backoff (0.5s then capped 0.2s), then ok


def test_forget_cancels_pending_requeues() -> None:
    async def main() -> int:
        q = WorkQueue()
        calls = 0

        async def work(key):
            nonlocal calls
            calls += 1
            return 0.05

        q.add("gone")
        q.start(work, 1)
        await until(lambda: calls == 1)
        q.forget("gone")
        await asyncio.sleep(0.2)  # four times the requeue delay: no second call
        await q.stop()
        return calls

    assert run(main()) == 1


def test_resync_requeues_known_keys() -> None:
    async def main() -> int:
        q = WorkQueue(resync_period=0.05)
        calls = 0

        async def work(key):
            nonlocal calls
            calls += 1
            return None

        q.add("x")
        q.start(work, 1)
        await until(lambda: calls >= 4)
        await q.stop()
        return calls

    assert run(main()) >= 4
