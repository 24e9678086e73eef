"""Lease election: who may hold the lease, expiry on the local clock, renew deadline, release.

The store below keeps a Lease the way the API server does for these calls (create once,
updates guarded by resourceVersion, 404/409); the real API server is the e2e test's
(tests/e2e/test_operator_ha.py).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from rtdetr_operator.kube import ApiError
from rtdetr_operator.leader import ElectionConfig, LeaseElector, desired_spec

PATH = "/apis/coordination.k8s.io/v1/namespaces/ops/leases"


class LeaseStore:
    def __init__(self) -> None:
        self.obj: dict[str, Any] | None = None
        self.version = 0
        self.down = False
        #: The next update finds the object changed by someone else first.
        self.race = False

    def _request(self, method: str, path: str, *, query=None, body=None) -> dict[str, Any]:
        if self.down:
            raise OSError("connection refused")
        if method == "GET":
            if self.obj is None:
                raise ApiError(404, "not found")
            return copy.deepcopy(self.obj)
        if method == "POST":
            if self.obj is not None:
                raise ApiError(409, "already exists")
        elif method == "PUT":
            assert self.obj is not None
            if self.race:
                self.race = False
                self.version += 1
                self.obj["metadata"]["resourceVersion"] = str(self.version)
            if body["metadata"].get("resourceVersion") != self.obj["metadata"]["resourceVersion"]:
                raise ApiError(409, "conflict")
        self.version += 1
        self.obj = copy.deepcopy(body)
        self.obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.obj)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _elector(store: LeaseStore, clock: Clock, who: str) -> LeaseElector:
    cfg = ElectionConfig("ops", "rtdetr-operator", who, 15, 10, 2)
    return LeaseElector(store, cfg, clock=clock)


def test_config_orders_its_periods() -> None:
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        ElectionConfig("ops", "x", "me", lease_duration=10, renew_deadline=10, retry_period=2)


def test_another_holders_valid_lease_is_left_alone() -> None:
    cfg = ElectionConfig("ops", "x", "b")
    held = {"holderIdentity": "a", "leaseTransitions": 3, "acquireTime": "t0"}
    assert desired_spec(held, cfg, expired=False) is None
    taken = desired_spec(held, cfg, expired=True)
    assert taken is not None and taken["holderIdentity"] == "b"
    assert taken["leaseTransitions"] == 4 and taken["acquireTime"] != "t0"
    free = desired_spec({"holderIdentity": "", "leaseTransitions": 3}, cfg, expired=False)
    assert free is not None and free["holderIdentity"] == "b"
    mine = desired_spec({"holderIdentity": "b", "acquireTime": "t0"}, cfg, expired=False)
    assert mine is not None and mine["acquireTime"] == "t0" and mine["leaseTransitions"] == 0


def test_standby_takes_over_only_after_the_lease_duration_on_its_own_clock() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    clock.t += 14
    assert not b.try_acquire_or_renew(), "14 s since b saw the record: not expired"
    assert a.try_acquire_or_renew(), "a renews"
    clock.t += 14
    assert not b.try_acquire_or_renew(), "a renewal restarts b's count"
    clock.t += 16  # a was killed: nobody renews
    assert b.try_acquire_or_renew()
    spec = store.obj["spec"]  # type: ignore[index]
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew(), "the old leader cannot renew b's lease"


def test_a_write_on_a_stale_version_loses_the_race() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    assert a.try_acquire_or_renew()
    a.release()
    store.race = True  # another candidate writes between b's read and b's update
    assert not b.try_acquire_or_renew()
    assert b.try_acquire_or_renew(), "next attempt, on the current version, wins the free lease"
    assert store.obj["spec"]["holderIdentity"] == "b"  # type: ignore[index]


def test_release_only_clears_ones_own_lease() -> None:
    store, clock = LeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    assert a.try_acquire_or_renew()
    b.release()
    assert store.obj["spec"]["holderIdentity"] == "a"  # type: ignore[index]
    a.release()
    assert store.obj["spec"]["holderIdentity"] == ""  # type: ignore[index]


def test_a_leader_that_cannot_renew_stops_after_the_renew_deadline() -> None:
    store, clock = LeaseStore(), Clock()
    cfg = ElectionConfig("ops", "rtdetr-operator", "a", 0.5, 0.2, 0.05)
    a = LeaseElector(store, cfg, clock=clock)
    lost: list[bool] = []

    async def scenario() -> None:
        task = asyncio.create_task(a.run(on_lost=lambda: lost.append(True)))
        await asyncio.wait_for(a.leading.wait(), 5)
        store.down = True
        while not lost:
            clock.t += 0.05
            await asyncio.sleep(0.06)
        await asyncio.wait_for(task, 5)

    asyncio.run(scenario())
    assert lost == [True] and not a.leading.is_set()
