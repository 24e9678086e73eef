"""Fresh start of every component, in dependency order, with health checks.

Each component is started detached, then probed until healthy; if it exits instead, the error
names the exact command and shows the end of its log. A component that lost a race for its
port (another cluster grabbed it between our check and its bind) is retried on a new port.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    ETCD_VERSION,
    K8S_VERSION,
    KWOK_VERSION,
    build,
    components,
    nodehost,
    nodes,
    procs,
    realnode,
)
from .components import Layout
from .handle import REPO_ROOT, Cluster, ClusterError
from .kube import KubeClient, tls_context, wait_for
from .provisioner import STORAGE_CLASS, ensure_storage_class

STAGES_FILE = REPO_ROOT / "hack" / "cluster" / "kwok-stages.yaml"


def parse_duration_ms(text: str) -> int:
    """Parse a Go-style duration such as 500ms, 3s, 1.5m or 2h into milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|m|h)\s*", text)
    if not match:
        raise ValueError(f"invalid duration {text!r} (examples: 500ms, 3s, 2m)")
    return int(float(match.group(1)) * units[match.group(2)])


def render_stages(dest: Path, job_complete_after: str | None, container_log: Path) -> None:
    """kwok's configuration: the stages, the Job delay, and where simulated logs come from.

    ``container_log`` is created empty when missing, so ``kubectl logs`` on a simulated pod
    answers (with nothing) until something writes CRI-format lines there.
    """
    text = STAGES_FILE.read_text()
    text = re.sub(
        r"logsFile: \S+(\s+# rtdetr:container-log)", rf"logsFile: {container_log}\1", text
    )
    if not container_log.exists():
        procs.write_atomic(container_log, "")
    if job_complete_after is not None:
        ms = parse_duration_ms(job_complete_after)
        text = re.sub(
            r"durationMilliseconds: \d+(\s+# rtdetr:job-complete-delay-ms)",
            rf"durationMilliseconds: {ms}\1",
            text,
        )
    procs.write_atomic(dest, text)


def _http_ok(url: str, ctx: Any = None) -> bool:
    with urllib.request.urlopen(url, context=ctx, timeout=3) as resp:
        return bool(resp.status == 200)


def _spawn_and_wait(
    layout: Layout,
    name: str,
    argv: list[str],
    probe: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None,
) -> procs.ProcRecord | None:
    """Start one component and wait until its probe passes (return None) or it exits."""
    rec = procs.spawn(name, argv, layout.log(name), layout.state, env=env)
    rec.save(layout.run)
    died = False

    def ready() -> bool:
        nonlocal died
        if procs.exited(rec) is not None:
            died = True
            return True
        return probe()

    try:
        wait_for(
            f"{name} to become healthy", ready, timeout, on_timeout=lambda: _describe(argv, rec)
        )
    except TimeoutError as err:
        raise ClusterError(str(err)) from None
    return rec if died else None


def _describe(argv: list[str], rec: procs.ProcRecord) -> str:
    text = f"command: {' '.join(argv)}\n"
    errors = procs.error_lines(rec.log)
    if errors:
        text += f"--- first error lines of {rec.log} ---\n{errors}\n"
    return text + f"--- last lines of {rec.log} ---\n{procs.tail(rec.log)}"


def _launch(
    layout: Layout,
    name: str,
    argv_for: Callable[[], list[str]],
    probe: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None = None,
    port_keys: tuple[str, ...] = (),
    ports: dict[str, int] | None = None,
) -> None:
    """Start one component and wait for its health probe; retry on a lost port race."""
    for attempt in range(3):
        argv = argv_for()
        dead = _spawn_and_wait(layout, name, argv, probe, timeout, env)
        if dead is None:
            return
        lost_race = "address already in use" in procs.tail(dead.log, 80)
        if ports is not None and port_keys and lost_race and attempt < 2:
            ports.update(components.pick_ports(list(port_keys), set(ports.values())))
            continue
        raise ClusterError(f"{name} exited during startup\n{_describe(argv, dead)}")


def start_fresh(
    layout: Layout,
    job_complete_after: str | None,
    timeout: float,
    owner_pid: int | None = None,
    real_node: bool = False,
) -> Cluster:
    """Start every component in an empty state directory and bootstrap the cluster.

    ``real_node`` adds a real kubelet node (realnode.py) beside kwok's simulated ones.
    """
    bin_dir = build.ensure_binaries()
    for d in (layout.run, layout.logs, layout.kubeconfigs, layout.kwok, layout.volumes):
        d.mkdir(parents=True, exist_ok=True)
    node_ip = None
    if real_node:
        try:
            nodehost.check_host(realnode.nodeconfig.CNI_BIN_DIR)
            node_ip = nodehost.node_ip()
        except nodehost.HostError as err:
            raise ClusterError(str(err)) from None
    components.generate_pki(
        bin_dir, layout, (realnode.node_name(), node_ip) if node_ip is not None else None
    )
    names = components.PORT_NAMES + (realnode.NODE_PORTS if real_node else [])
    ports = components.pick_ports(names)
    render_stages(layout.kwok / "stages.yaml", job_complete_after, layout.kwok_container_log)

    def server() -> str:
        return f"https://127.0.0.1:{ports['apiserver']}"

    def info(node_names: list[str]) -> dict[str, Any]:
        return {
            "real_node": {"name": realnode.node_name(), "ip": node_ip} if node_ip else None,
            "server": server(),
            "ports": ports,
            "bin_dir": str(bin_dir),
            "kubernetes": K8S_VERSION,
            "etcd": ETCD_VERSION,
            "kwok": KWOK_VERSION,
            "nodes": node_names,
            "storage_class": STORAGE_CLASS,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    ca = tls_context(layout.pki / "ca.crt", None, None)
    _launch(
        layout,
        "etcd",
        lambda: components.etcd_argv(bin_dir, layout, ports),
        lambda: _http_ok(f"http://127.0.0.1:{ports['etcd_client']}/health"),
        60,
        port_keys=("etcd_client", "etcd_peer"),
        ports=ports,
    )

    def admin() -> KubeClient:
        return KubeClient.from_pki(server(), layout.pki)

    _launch(
        layout,
        "kube-apiserver",
        lambda: components.apiserver_argv(bin_dir, layout, ports, node_ip),
        lambda: admin().get_text("/readyz") == "ok",
        timeout,
        port_keys=("apiserver",),
        ports=ports,
    )
    components.write_kubeconfig(layout.kubeconfig, server(), layout.pki, "admin", "rtdetr-local")
    for user, file in (
        ("kube-controller-manager", "kube-controller-manager"),
        ("kube-scheduler", "kube-scheduler"),
        ("admin", "kwok"),
    ):
        components.write_kubeconfig(
            layout.kubeconfigs / f"{file}.kubeconfig", server(), layout.pki, user, "rtdetr-local"
        )
    procs.write_atomic(layout.info, json.dumps(info([]), indent=2))

    _launch(
        layout,
        "kube-controller-manager",
        lambda: components.controller_manager_argv(bin_dir, layout, ports),
        lambda: _http_ok(f"https://127.0.0.1:{ports['controller_manager']}/healthz", ca),
        timeout,
        port_keys=("controller_manager",),
        ports=ports,
    )
    _launch(
        layout,
        "kube-scheduler",
        lambda: components.scheduler_argv(bin_dir, layout, ports),
        lambda: _http_ok(f"https://127.0.0.1:{ports['scheduler']}/healthz", ca),
        timeout,
        port_keys=("scheduler",),
        ports=ports,
    )
    # kwok would also read ~/.kwok/kwok.yaml; a private HOME keeps personal config out.
    kwok_home = layout.kwok / "home"
    kwok_home.mkdir(exist_ok=True)
    _launch(
        layout,
        "kwok",
        lambda: components.kwok_argv(bin_dir, layout, ports),
        lambda: _http_ok(f"http://127.0.0.1:{ports['kwok']}/healthz"),
        timeout,
        env=dict(os.environ, HOME=str(kwok_home)),
        port_keys=("kwok",),
        ports=ports,
    )
    procs.write_atomic(layout.info, json.dumps(info([]), indent=2))

    client = admin()
    ensure_storage_class(client)
    node_names = nodes.create_nodes(client)
    procs.write_atomic(layout.info, json.dumps(info(node_names), indent=2))
    _launch(
        layout,
        "provisioner",
        lambda: components.provisioner_argv(layout, owner_pid),
        lambda: "started" in procs.tail(layout.log("provisioner"), 5),
        30,
    )

    wait_for(
        "the default ServiceAccount",
        lambda: client.exists("/api/v1/namespaces/default/serviceaccounts/default"),
        timeout,
        on_timeout=lambda: procs.tail(layout.log("kube-controller-manager")),
    )
    wait_for(
        "simulated nodes to become Ready",
        lambda: nodes.nodes_ready(client, node_names),
        timeout,
        on_timeout=lambda: procs.tail(layout.log("kwok")),
    )
    if node_ip is not None:

        def launch(lay: Layout, name: str, argv_for: Any, probe: Any, limit: float) -> None:
            _launch(lay, name, argv_for, probe, limit)

        try:
            real = realnode.start(
                layout, bin_dir, ports, node_ip, server(), client, launch, timeout
            )
        except nodehost.HostError as err:
            raise ClusterError(str(err)) from None
        node_names = [*node_names, real]
        procs.write_atomic(layout.info, json.dumps(info(node_names), indent=2))
    return Cluster(
        state_dir=layout.state,
        server=server(),
        ports=ports,
        bin_dir=bin_dir,
        node_names=node_names,
    )
