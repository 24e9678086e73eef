"""Leader election on a ``coordination.k8s.io/v1`` Lease, so two operator replicas never both
reconcile.

kopf's peering pauses handlers but is not leader election (its ``standalone`` mode is used), so
the operator elects a leader itself, with client-go's algorithm:

* a candidate *acquires* the Lease when it is free (no holder) or expired, writing its identity,
  ``acquireTime``/``renewTime`` and ``leaseDurationSeconds`` with an update guarded by
  ``resourceVersion`` (two candidates cannot both win: one gets 409 Conflict);
* "expired" is judged on this process's own monotonic clock: the time since it last saw the
  record *change*, against the record's lease duration, so clocks skewed between nodes do not
  matter (``renewTime`` is written for people, never compared);
* the leader *renews* every ``retry_period``; if it could not renew for ``renew_deadline``
  (< lease duration) it stops leading before anyone else can take over;
* on a clean shutdown it *releases* the Lease (holder cleared), so the standby takes over at its
  next retry instead of after a full lease duration.

Only the work-queue workers wait for leadership: the standby keeps kopf's watches and its queues
filled, so it starts from a warm cache. Reconcilers are level-based and child names deterministic,
so work the old leader left half done is simply redone (a create answered AlreadyExists is done).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

logger = logging.getLogger(__name__)

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


class LeaseApi(Protocol):
    def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )


def _now_micro() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def desired_spec(
    current: dict[str, Any] | None, cfg: ElectionConfig, *, expired: bool
) -> dict[str, Any] | None:
    """The Lease spec to write to hold the lease, or None when another holder's is valid.

    ``current``: the Lease's spec as read (None: no Lease yet). Pure but for the timestamps.
    """
    spec = dict(current or {})
    holder = spec.get("holderIdentity") or ""
    if holder and holder != cfg.identity and not expired:
        return None
    now = _now_micro()
    out = {
        "holderIdentity": cfg.identity,
        "leaseDurationSeconds": max(1, round(cfg.lease_duration)),
        "renewTime": now,
        "acquireTime": spec.get("acquireTime") if holder == cfg.identity else now,
        "leaseTransitions": int(spec.get("leaseTransitions") or 0)
        + (1 if holder and holder != cfg.identity else 0),
    }
    return out


@dataclass
class LeaseElector:
    """Acquire, renew and release one Lease (see the module doc)."""

    api: LeaseApi
    cfg: ElectionConfig
    clock: Callable[[], float] = time.monotonic
    leading: asyncio.Event = field(default_factory=asyncio.Event)
    _observed: tuple[str, str] | None = None  # (holder, renewTime) last seen
    _observed_at: float = 0.0
    _observed_duration: float = 0.0

    @property
    def _path(self) -> str:
        return LEASES.format(ns=self.cfg.namespace)

    def _observe(self, spec: dict[str, Any]) -> None:
        record = (spec.get("holderIdentity") or "", spec.get("renewTime") or "")
        if record != self._observed:
            self._observed, self._observed_at = record, self.clock()
            self._observed_duration = float(spec.get("leaseDurationSeconds") or 0)

    def _expired(self) -> bool:
        return self.clock() - self._observed_at > self._observed_duration

    def try_acquire_or_renew(self) -> bool:
        """One attempt (blocking I/O): True when this process holds the lease afterwards."""
        from rtdetr_operator.kube import ApiError

        try:
            lease = self.api._request("GET", f"{self._path}/{self.cfg.name}")
        except ApiError as e:
            if not e.not_found:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
                "spec": desired_spec(None, self.cfg, expired=True),
            }
            try:
                self.api._request("POST", self._path, body=body)
            except ApiError as e2:
                if e2.conflict:  # another candidate created it first
                    return False
                raise
            self._observe(body["spec"])
            return True
        spec = lease.get("spec") or {}
        self._observe(spec)
        want = desired_spec(spec, self.cfg, expired=self._expired())
        if want is None:
            return False
        lease["spec"] = want
        try:
            self.api._request("PUT", f"{self._path}/{self.cfg.name}", body=lease)
        except ApiError as e:
            if e.conflict:
                return False
            raise
        self._observe(want)
        return True

    def release(self) -> None:
        """Give the lease up (clean shutdown) so a standby need not wait for it to expire."""
        from rtdetr_operator.kube import ApiError

        try:
            lease = self.api._request("GET", f"{self._path}/{self.cfg.name}")
            if (lease.get("spec") or {}).get("holderIdentity") != self.cfg.identity:
                return
            lease["spec"] = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": _now_micro(),
            }
            self.api._request("PUT", f"{self._path}/{self.cfg.name}", body=lease)
            logger.info("released leader lease %s/%s", self.cfg.namespace, self.cfg.name)
        except (ApiError, OSError) as e:
            logger.warning("could not release leader lease: %s", e)

    async def _attempt(self) -> bool:
        try:
            return await asyncio.to_thread(self.try_acquire_or_renew)
        except Exception as e:  # an unreachable API server is one failed attempt, not a crash
            logger.warning("leader election: %s", e)
            return False

    async def run(self, on_lost: Callable[[], None]) -> None:
        """Acquire (retrying), then renew until a renewal deadline is missed: ``on_lost()``."""
        while not await self._attempt():
            await asyncio.sleep(self.cfg.retry_period)
        logger.info(
            "became leader (lease %s/%s, identity %s)",
            self.cfg.namespace,
            self.cfg.name,
            self.cfg.identity,
        )
        self.leading.set()
        last_renew = self.clock()
        while True:
            await asyncio.sleep(self.cfg.retry_period)
            if await self._attempt():
                last_renew = self.clock()
            elif self.clock() - last_renew > self.cfg.renew_deadline:
                self.leading.clear()
                logger.error("lost the leader lease: stopping so the new leader alone reconciles")
                on_lost()
                return
