"""Bring the local cluster up and down, and report on it.

``start`` is idempotent: a healthy cluster in the state directory is reused as is, and any
remains of a previous, broken or stale run (processes from before a reboot, a half-started
cluster, a crashed component) are cleaned up before a fresh start. ``stop`` leaves no process
of the cluster behind and verifies that.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import procs, realnode
from .components import Layout
from .handle import Cluster, ClusterError, find_kubectl
from .startup import start_fresh

__all__ = ["Cluster", "ClusterError", "find_kubectl", "start", "status", "stop"]

# Start order; stop goes in reverse.
ORDER = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "provisioner",
]
RUNTIME_PATHS = [
    "node",
    "run",
    "etcd",
    "pki",
    "kubeconfigs",
    "kwok",
    "volumes",
    "kubeconfig",
    "cluster.json",
]


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _records(layout: Layout) -> dict[str, procs.ProcRecord]:
    found = {}
    for path in sorted(layout.run.glob("*.json")) if layout.run.is_dir() else []:
        rec = procs.ProcRecord.load(path)
        if rec is not None:
            found[rec.name] = rec
    return found


def _load_info(layout: Layout) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = json.loads(layout.info.read_text())
    except (OSError, ValueError):
        return None
    return info


def _as_cluster(layout: Layout, info: dict[str, Any]) -> Cluster:
    return Cluster(
        state_dir=layout.state,
        server=info["server"],
        ports=info["ports"],
        bin_dir=Path(info["bin_dir"]),
        node_names=info.get("nodes", []),
    )


def _expected(info: dict[str, Any]) -> list[str]:
    """Components a cluster started with these settings runs."""
    return ORDER + (realnode.NODE_ORDER if info.get("real_node") else [])


def _healthy(layout: Layout, real_node: bool | None = None) -> Cluster | None:
    """The running cluster in ``layout``, if every component is up (and it has a real node
    exactly when ``real_node`` says so; None: either)."""
    info = _load_info(layout)
    records = _records(layout)
    if info is None or set(records) != set(_expected(info)):
        return None
    if real_node is not None and bool(info.get("real_node")) != real_node:
        return None
    if not all(procs.is_alive(rec) for rec in records.values()):
        return None
    cluster = _as_cluster(layout, info)
    try:
        return cluster if cluster.client().get_text("/readyz") == "ok" else None
    except Exception:  # anything but "ok" means unhealthy
        return None


def start(
    state_dir: Path | str,
    job_complete_after: str | None = None,
    timeout: float = 120,
    owner_pid: int | None = None,
    real_node: bool = False,
) -> Cluster:
    """Return a running cluster for ``state_dir``, reusing a healthy one or starting fresh.

    With ``owner_pid`` the cluster stops itself once that process is gone, so a test session
    that is killed outright (no chance to run its teardown) does not leak a cluster.
    ``real_node`` adds a real kubelet node beside the simulated ones (realnode.py); a running
    cluster is reused only if it has one exactly when asked to.
    """
    layout = Layout(Path(state_dir).resolve())
    with _locked(layout.state):
        existing = _healthy(layout, real_node)
        if existing is not None:
            return existing
        _stop_locked(layout, keep_logs=True)
        try:
            for name in [*RUNTIME_PATHS, "logs"]:
                _remove(layout.state / name)
            return start_fresh(layout, job_complete_after, timeout, owner_pid, real_node)
        except BaseException:
            _stop_locked(layout, keep_logs=True)
            raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _stop_locked(layout: Layout, keep_logs: bool) -> list[str]:
    records = _records(layout)
    stopped = []
    if (layout.state / "node").exists() or any(n in records for n in realnode.NODE_ORDER):
        stopped += realnode.stop(layout, records)
    # The provisioner may itself be the caller (owner watchdog); it must not signal itself.
    ordered = [
        records[n] for n in reversed(ORDER) if n in records and records[n].pid != os.getpid()
    ]
    for rec in ordered:  # one at a time, dependants first, so shutdowns stay clean
        stopped += procs.terminate([rec], grace=10)
    survivors = procs.kill_marked(layout.state)
    left = procs.marked_processes(layout.state)
    if left:
        raise ClusterError(f"processes of {layout.state} survived SIGKILL: {left}")
    for name in RUNTIME_PATHS:
        _remove(layout.state / name)
    if not keep_logs:
        _remove(layout.logs)
    return stopped + [f"pid {pid} (unrecorded)" for pid in survivors]


def stop(state_dir: Path | str, keep_logs: bool = True, purge: bool = False) -> list[str]:
    """Stop every process of the cluster and delete its runtime files; return what ran."""
    layout = Layout(Path(state_dir).resolve())
    if not layout.state.exists():
        return []
    with _locked(layout.state):
        stopped = _stop_locked(layout, keep_logs=keep_logs and not purge)
    if purge:
        shutil.rmtree(layout.state, ignore_errors=True)
    return stopped


def status(state_dir: Path | str) -> dict[str, Any]:
    """Describe the cluster in ``state_dir`` without changing anything."""
    layout = Layout(Path(state_dir).resolve())
    info = _load_info(layout) or {}
    records = _records(layout)
    alive = {name: procs.is_alive(rec) for name, rec in records.items()}
    expected = _expected(info) if info else ORDER
    ready = False
    if info:
        try:
            ready = _as_cluster(layout, info).client().get_text("/readyz") == "ok"
        except Exception:  # unreachable means not ready
            ready = False
    up = ready and set(alive) == set(expected) and all(alive.values())
    return {
        "state_dir": str(layout.state),
        "up": up,
        "apiserver_ready": ready,
        "components": alive,
        "server": info.get("server"),
        "kubeconfig": str(layout.kubeconfig) if layout.kubeconfig.exists() else None,
        "ports": info.get("ports"),
        "nodes": info.get("nodes"),
        "real_node": info.get("real_node"),
        "bin_dir": info.get("bin_dir"),
        "stray_pids": [] if up else procs.marked_processes(layout.state),
    }
