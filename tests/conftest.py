"""Per-tier test timeouts: a hung unit test fails in minutes, a cold real-node run gets its hour.

Each test gets the timeout of the slowest tier it is marked with (pytest-timeout's marker); a
test that sets its own ``@pytest.mark.timeout`` keeps it. Unmarked tests are unit tests.
"""

from __future__ import annotations

import pytest

#: Seconds per tier marker; the node tier may build images and start a real node cold.
TIER_TIMEOUTS: dict[str, int] = {
    "slow": 900,
    "triton": 300,
    "gpu": 900,
    "e2e": 900,
    "node": 1800,
}
#: Seconds for an unmarked (unit) test: seconds each normally, minutes on a loaded machine.
UNIT_TIMEOUT = 300


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is not None:
            continue
        tiers = {m.name for m in item.iter_markers()} & TIER_TIMEOUTS.keys()
        seconds = max((TIER_TIMEOUTS[t] for t in tiers), default=UNIT_TIMEOUT)
        item.add_marker(pytest.mark.timeout(seconds))
