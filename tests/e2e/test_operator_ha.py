"""Two operator processes elect a leader on a Lease; killing the leader mid-rollout hands the
rollout to the standby, which finishes it with no duplicate child and no lost status.

Both processes run the real ``rtdetr-operator --leader-elect`` against the real API server; the
leader is the process whose identity (host/pid) the Lease names. It is SIGKILLed (no release)
while the engines build, so the standby must wait for the lease to expire.
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.deployment_support import (
    KWOK,
    NAME,
    children,
    example_deployment,
    ready,
    source_training,
    status,
    wait_for,
)
from tests.e2e.training_support import OperatorProcess, apply_example

pytestmark = pytest.mark.e2e
pytest_plugins = ["tests.e2e.training_fixtures"]

LEASE = "rtdetr-operator-e2e"
ELECTION = {
    "leader-election-lease": LEASE,
    "lease-duration": 6,
    "renew-deadline": 4,
    "retry-period": 1,
}


def _holder(cluster: Any, ns: str) -> tuple[str, int]:
    lease = cluster.get("lease", LEASE, "-n", ns)
    return lease["spec"].get("holderIdentity") or "", int(lease["spec"].get("leaseTransitions", 0))


def _wait_holder(cluster: Any, ns: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = cluster.kubectl("get", "lease", LEASE, "-n", ns, "--ignore-not-found", "-o", "name")
        if out.stdout.strip():
            holder, _ = _holder(cluster, ns)
            if holder:
                return holder
        time.sleep(0.3)
    raise AssertionError("no leader elected")


def test_killing_the_leader_mid_rollout_completes_it_without_duplicates(
    e2e_cluster, e2e_namespace, rtdetr_crd, tmp_path: Path
) -> None:
    ns = e2e_namespace
    ops = []
    for i in range(2):
        op = OperatorProcess(e2e_cluster.env, [ns], tmp_path / f"operator-{i}.log", **ELECTION)
        op.flags["leader-election-namespace"] = ns
        ops.append(op)
    try:
        for op in ops:
            op.start_with(["--leader-elect"])
        holder = _wait_holder(e2e_cluster, ns, 30)
        host = socket.gethostname()
        by_identity = {f"{host}/{op.proc.pid}": op for op in ops if op.proc}
        leader = by_identity[holder]
        standby = next(op for op in ops if op is not leader)

        apply_example(e2e_cluster, ns, source_training())
        cr = example_deployment("v1", l4_streams=18)
        for pool in cr["spec"]["pools"]:  # engines take a while: the kill lands mid-rollout
            pool["engineBuild"]["podMetadata"]["annotations"][f"{KWOK}/complete-after"] = "8s"
        e2e_cluster.apply(cr, namespace=ns)
        wait_for(
            e2e_cluster,
            ns,
            "BuildingEngines",
            lambda st: st.get("phase") == "BuildingEngines",
            leader,
            timeout=120,
        )
        killed_at = time.monotonic()
        leader.kill()

        new_holder = _wait_holder_other(e2e_cluster, ns, holder, timeout=30)
        took_over = time.monotonic() - killed_at
        assert by_identity[new_holder] is standby
        assert took_over < 6 + 2 * 1 + 3, f"standby took {took_over:.1f}s to take over"
        st = wait_for(e2e_cluster, ns, "Ready after failover", ready, standby, timeout=150)
        assert st["readyPools"] == "2/2" and st["observedGeneration"] == 1
        assert _holder(e2e_cluster, ns)[1] >= 1, "leaseTransitions counts the takeover"

        jobs = Counter(j["metadata"]["name"] for j in children(e2e_cluster, ns, "jobs"))
        assert len([n for n in jobs if "-engine-" in n]) == 2 and all(
            c == 1 for c in jobs.values()
        ), jobs
        uids = {j["metadata"]["uid"] for j in children(e2e_cluster, ns, "jobs")}
        assert len(uids) == len(jobs), "every Job created once"
        deployments = [d["metadata"]["name"] for d in children(e2e_cluster, ns, "deployments")]
        assert sorted(deployments) == [f"{NAME}-h100", f"{NAME}-l4"]
        services = sorted(s["metadata"]["name"] for s in children(e2e_cluster, ns, "services"))
        assert services == [f"{NAME}-endpoint", f"{NAME}-h100", f"{NAME}-l4"]
        # The status the standby wrote is the whole story, engines included.
        assert {e["gpu"] for e in status(e2e_cluster, ns)["engines"]} == {"H100", "L4"}
        assert "became leader" in standby.log(400)
    finally:
        for op in ops:
            op.stop()


def _wait_holder_other(cluster: Any, ns: str, old: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        holder, _ = _holder(cluster, ns)
        if holder and holder != old:
            return holder
        time.sleep(0.2)
    raise AssertionError(f"the lease stayed with {old}")
