"""Start and stop the real node: containerd, kubelet, kube-proxy and CoreDNS beside kwok's.

Pods on this node run for real (runc containers on a CNI bridge, Services through kube-proxy's
nftables rules, cluster DNS from CoreDNS), so the operator, training and Triton containers of the
project can be tested as they would run on any cluster.

containerd and the kubelet share one private mount namespace, held by a ``sleep`` that
``unshare`` started: every mount they make (image snapshots, pod volumes, network namespaces) is
invisible on the host and disappears with the namespace, and ``/run`` and ``/var/log`` are
replaced inside it so shim sockets and pod logs never touch the host's. kube-proxy and CoreDNS
run on the host's network as ordinary processes. The image store lives in the cache (shared by
every cluster of the machine, one node at a time), so imported images survive ``down``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import build, nodeconfig, nodehost, oci, procs
from .components import Layout, write_kubeconfig
from .handle import ClusterError
from .kube import ApiError, KubeClient, wait_for
from .nodeconfig import NodePaths

#: Node components in start order (``down`` stops them in the order of :func:`stop`).
NODE_ORDER = ["node-ns", "containerd", "kubelet", "kube-proxy", "coredns"]
NODE_PORTS = [
    "kubelet",
    "kubelet_healthz",
    "kube_proxy_healthz",
    "kube_proxy_metrics",
    "coredns",
    "coredns_health",
    "coredns_ready",
]
K8S_NAMESPACE = "k8s.io"  # containerd namespace of the CRI plugin


def image_store() -> Path:
    return build.cache_root() / "node" / "containerd"


def node_paths(layout: Layout) -> NodePaths:
    return NodePaths(root=layout.state / "node", image_store=image_store())


def node_name() -> str:
    """The machine's host name as a node name (lower case, as the kubelet itself does)."""
    return os.uname().nodename.split(".")[0].lower()


def ctr(paths: NodePaths, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = ["ctr", f"--address={paths.containerd_socket}", f"--namespace={K8S_NAMESPACE}", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def claim_machine(layout: Layout) -> None:
    """One real node per machine: refuse while another cluster's node still runs."""
    owner = nodehost.owner_file()
    with contextlib.suppress(OSError, ValueError):
        other = Path(json.loads(owner.read_text())["state_dir"])
        if other != layout.state:
            rec = procs.ProcRecord.load(other / "run" / "containerd.json")
            if rec is not None and procs.is_alive(rec):
                raise ClusterError(
                    f"the real node of the cluster in {other} runs on this machine (one per "
                    f"machine): stop it first (localcluster.py down --state-dir {other})"
                )
    owner.parent.mkdir(parents=True, exist_ok=True)
    procs.write_atomic(owner, json.dumps({"state_dir": str(layout.state)}))


def release_machine(layout: Layout) -> None:
    """Forget the claim of :func:`claim_machine` if it is this cluster's (down leaves no file)."""
    owner = nodehost.owner_file()
    with contextlib.suppress(OSError, ValueError, KeyError):
        if Path(json.loads(owner.read_text())["state_dir"]) == layout.state:
            owner.unlink()


def write_configs(
    layout: Layout, paths: NodePaths, ip: str, name: str, server: str, ports: dict[str, int]
) -> None:
    for d in (
        paths.root,
        paths.cni_conf_dir,
        paths.cni_ipam_dir,
        paths.var_log,
        paths.kubelet_root,
    ):
        d.mkdir(parents=True, exist_ok=True)
    paths.image_store.mkdir(parents=True, exist_ok=True)
    kubeconfigs = layout.kubeconfigs
    for user in ("kubelet-client", "kube-proxy", "coredns"):
        write_kubeconfig(
            kubeconfigs / f"{user}.kubeconfig", server, layout.pki, user, "rtdetr-local"
        )
    procs.write_atomic(paths.containerd_config, nodeconfig.containerd_toml(paths))
    conflist = json.dumps(nodeconfig.cni_conflist(paths), indent=2)
    procs.write_atomic(paths.cni_conf_dir / "10-rtdetr.conflist", conflist)
    procs.write_atomic(
        paths.kubelet_config, nodeconfig.kubelet_config(paths, layout.pki, ip, ports)
    )
    procs.write_atomic(
        paths.kube_proxy_config,
        nodeconfig.kube_proxy_config(kubeconfigs / "kube-proxy.kubeconfig", name, ports),
    )
    procs.write_atomic(
        paths.corefile, nodeconfig.corefile(kubeconfigs / "coredns.kubeconfig", ip, ports)
    )


def holder_argv(paths: NodePaths) -> list[str]:
    """The process that owns the node's mount namespace (fresh /run, /var/log of our own).

    The kubelet's root directory is made an rshared mount point here, before the kubelet runs.
    Otherwise the kubelet bind-mounts it onto itself at startup while another of its goroutines
    renames the pod-resources socket inside it; when the mount lands mid-rename, the rename fails
    with "invalid cross-device link" and the kubelet exits (seen once in a test run).
    """
    root = shlex.quote(str(paths.kubelet_root))
    script = (
        "mount -t tmpfs -o mode=0755,size=256m rtdetr-node-run /run && "
        f"mount --bind {shlex.quote(str(paths.var_log))} /var/log && "
        f"mount --bind {root} {root} && mount --make-rshared {root} && exec sleep infinity"
    )
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", script]


def in_namespace(holder_pid: int, argv: list[str]) -> list[str]:
    return ["nsenter", f"--mount=/proc/{holder_pid}/ns/mnt", "--", *argv]


def namespace_ready(pid: int) -> bool:
    try:
        own = Path("/proc/self/ns/mnt").readlink()
        theirs = Path(f"/proc/{pid}/ns/mnt").readlink()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    return theirs != own and comm == "sleep"


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def ensure_pause_image(paths: NodePaths, bin_dir: Path) -> None:
    """Import the sandbox image unless containerd already has exactly this one."""
    archive = oci.image_archive(
        nodeconfig.PAUSE_IMAGE,
        [oci.FileEntry("/pause", (bin_dir / "pause").read_bytes())],
        ["/pause"],
    )
    digest = oci.manifest_digest(archive)
    listed = ctr(paths, "images", "ls").stdout
    if any(nodeconfig.PAUSE_IMAGE in line and digest in line for line in listed.splitlines()):
        return
    target = paths.root / "pause.oci.tar"
    oci.write_archive(target, archive)
    result = ctr(paths, "images", "import", str(target))
    target.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ClusterError(f"importing the sandbox image failed: {result.stderr.strip()}")


def remove_containers(paths: NodePaths) -> int:
    """Kill and delete every CRI container and sandbox (a previous run's, or this one's)."""
    tasks = ctr(paths, "tasks", "ls", "-q")
    for task in tasks.stdout.split():
        ctr(paths, "tasks", "kill", "--signal", "SIGKILL", task, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        running = ctr(paths, "tasks", "ls", "-q").stdout.split()
        for task in running:
            ctr(paths, "tasks", "delete", "--force", task, timeout=30)
        if not running:
            break
        time.sleep(0.2)
    containers = ctr(paths, "containers", "ls", "-q").stdout.split()
    for container in containers:
        ctr(paths, "containers", "delete", container, timeout=60)
    return len(containers)


def cluster_objects(ip: str, ports: dict[str, int]) -> list[tuple[str, dict[str, Any]]]:
    """RBAC for CoreDNS, and the cluster DNS Service pointing at the CoreDNS process."""
    dns_ports = [
        {"name": "dns", "port": 53, "protocol": "UDP"},
        {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
    ]
    labels = {"k8s-app": "kube-dns", "app.kubernetes.io/managed-by": "rtdetr-localcluster"}
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    return [
        (
            f"{rbac}/clusterroles",
            {
                "metadata": {"name": "rtdetr-local:coredns"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["services", "pods", "namespaces"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["discovery.k8s.io"],
                        "resources": ["endpointslices"],
                        "verbs": ["list", "watch"],
                    },
                ],
            },
        ),
        (
            f"{rbac}/clusterrolebindings",
            {
                "metadata": {"name": "rtdetr-local:coredns"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "rtdetr-local:coredns",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": "system:coredns",
                    }
                ],
            },
        ),
        (
            # The API server's own client (logs, exec, port-forward) through the kubelet's
            # webhook authorization, as kubeadm binds it.
            f"{rbac}/clusterrolebindings",
            {
                "metadata": {"name": "rtdetr-local:apiserver-kubelet-client"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:kubelet-api-admin",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": "kube-apiserver-kubelet-client",
                    }
                ],
            },
        ),
        (
            "/api/v1/namespaces/kube-system/services",
            {
                "metadata": {"name": "kube-dns", "labels": labels},
                "spec": {
                    "clusterIP": nodeconfig.DNS_SERVICE_IP,
                    "ports": [{**p, "targetPort": ports["coredns"]} for p in dns_ports],
                },
            },
        ),
        (
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
            {
                "metadata": {
                    "name": "kube-dns-node",
                    "labels": {**labels, "kubernetes.io/service-name": "kube-dns"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}],
                "ports": [
                    {"name": p["name"], "port": ports["coredns"], "protocol": p["protocol"]}
                    for p in dns_ports
                ],
            },
        ),
    ]


def create_cluster_objects(client: KubeClient, ip: str, ports: dict[str, int]) -> None:
    for path, body in cluster_objects(ip, ports):
        try:
            client.create(path, body)
        except ApiError as err:
            raise ClusterError(f"creating {path}/{body['metadata']['name']}: {err}") from None


def node_ready(client: KubeClient, name: str) -> bool:
    try:
        node = client.get(f"/api/v1/nodes/{name}")
    except ApiError:
        return False
    conditions = node.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


#: startup's ``_launch(layout, name, argv_for, probe, timeout)``: spawn, probe, retry on port races.
Launch = Callable[..., None]


def start(
    layout: Layout,
    bin_dir: Path,
    ports: dict[str, int],
    ip: str,
    server: str,
    client: KubeClient,
    launch: Launch,
    timeout: float,
) -> str:
    """Start the node's processes in order, each probed healthy; return the node's name."""
    paths = node_paths(layout)
    name = node_name()
    nodehost.check_host(nodeconfig.CNI_BIN_DIR)
    claim_machine(layout)
    write_configs(layout, paths, ip, name, server, ports)
    nodehost.save_sysctls(paths.sysctls)
    nodehost.write_sysctl("net/ipv4/ip_forward", "1")  # pods reach Services and the host

    holder: list[int] = []

    def spawn_holder() -> list[str]:
        return holder_argv(paths)

    launch(layout, "node-ns", spawn_holder, lambda: _holder_ready(layout, holder), 30)
    pid = holder[0]
    launch(
        layout,
        "containerd",
        lambda: in_namespace(pid, nodeconfig.containerd_argv(paths)),
        lambda: ctr(paths, "version", timeout=10).returncode == 0,
        60,
    )
    ensure_pause_image(paths, bin_dir)
    remove_containers(paths)  # sandboxes of an earlier cluster that died without down
    create_cluster_objects(client, ip, ports)
    launch(
        layout,
        "coredns",
        lambda: nodeconfig.coredns_argv(bin_dir, paths),
        lambda: http_ok(f"http://127.0.0.1:{ports['coredns_ready']}/ready"),
        timeout,
    )
    kubeconfig = layout.kubeconfigs / "kubelet-client.kubeconfig"
    nodehost.create_cgroup_root()
    launch(
        layout,
        "kubelet",
        lambda: in_namespace(pid, nodeconfig.kubelet_argv(bin_dir, paths, kubeconfig, name, ip)),
        lambda: http_ok(f"http://127.0.0.1:{ports['kubelet_healthz']}/healthz"),
        timeout,
    )
    # kube-proxy takes the node's IPs from its Node object: start it once the kubelet made one.
    wait_for(
        f"the kubelet to register node {name}",
        lambda: client.exists(f"/api/v1/nodes/{name}"),
        timeout,
        on_timeout=lambda: procs.tail(layout.log("kubelet")),
    )
    launch(
        layout,
        "kube-proxy",
        lambda: nodeconfig.kube_proxy_argv(bin_dir, paths),
        lambda: http_ok(f"http://127.0.0.1:{ports['kube_proxy_healthz']}/livez"),
        timeout,
    )
    wait_for(
        f"the real node {name} to become Ready",
        lambda: node_ready(client, name),
        timeout,
        on_timeout=lambda: procs.tail(layout.log("kubelet")),
    )
    return name


def _holder_ready(layout: Layout, holder: list[int]) -> bool:
    rec = procs.ProcRecord.load(layout.run / "node-ns.json")
    if rec is None or not namespace_ready(rec.pid):
        return False
    holder[:] = [rec.pid]
    return True


def kill_shims(layout: Layout) -> list[int]:
    """containerd's shims outlive it by design; they inherited the cluster's marker."""
    shims = []
    for pid in procs.marked_processes(layout.state):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith("containerd-shim"):
                os.kill(pid, 9)
                shims.append(pid)
    return shims


def stop(layout: Layout, records: dict[str, procs.ProcRecord]) -> list[str]:
    """Stop the node and undo what it did to the host; safe to call when nothing runs."""
    paths = node_paths(layout)
    stopped: list[str] = []

    def term(name: str) -> None:
        rec = records.get(name)
        if rec is not None:
            stopped.extend(procs.terminate([rec], grace=15))

    term("kubelet")  # first, or it recreates the containers removed next
    containerd = records.get("containerd")
    if containerd is not None and procs.is_alive(containerd):
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            remove_containers(paths)
    for name in ("kube-proxy", "coredns", "containerd", "node-ns"):
        term(name)
    kill_shims(layout)
    nodehost.kill_cgroup_tree()
    nodehost.delete_kube_proxy_tables()
    nodehost.delete_bridge()
    nodehost.restore_sysctls(paths.sysctls)
    release_machine(layout)
    return stopped
