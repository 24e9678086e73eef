"""Command lines, ports and credentials for each control-plane component.

Everything listens on loopback only, on ports chosen per cluster so several clusters (one per
worktree or test session) can run side by side on one machine.
"""

from __future__ import annotations

import base64
import random
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import procs
from .procs import write_atomic

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
POD_CIDR = "10.244.0.0/16"
ISSUER = "https://kubernetes.default.svc.cluster.local"
# Ports are drawn below Linux's default ephemeral range (32768-60999) so that outgoing client
# connections, which take ephemeral ports, cannot grab a port between our check and the
# component's bind.
PORT_RANGE = (20000, 32000)
PORT_NAMES = ["etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler", "kwok"]


@dataclass
class Layout:
    """Paths inside one cluster's state directory."""

    state: Path

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def etcd_data(self) -> Path:
        return self.state / "etcd"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def kubeconfigs(self) -> Path:
        return self.state / "kubeconfigs"

    @property
    def kwok(self) -> Path:
        return self.state / "kwok"

    @property
    def kwok_container_log(self) -> Path:
        """The log every simulated container serves (CRI format; empty until written)."""
        return self.kwok / "container.log"

    @property
    def volumes(self) -> Path:
        return self.state / "volumes"

    @property
    def info(self) -> Path:
        return self.state / "cluster.json"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_ports(names: list[str], avoid: set[int] | None = None) -> dict[str, int]:
    """Choose distinct free loopback ports for ``names``."""
    rng = random.SystemRandom()
    taken = set(avoid or ())
    ports: dict[str, int] = {}
    for name in names:
        for _ in range(500):
            port = rng.randint(*PORT_RANGE)
            if port not in taken and port_is_free(port):
                taken.add(port)
                ports[name] = port
                break
        else:
            raise RuntimeError(f"no free loopback port found for {name}")
    return ports


def generate_pki(bin_dir: Path, layout: Layout, node: tuple[str, str] | None = None) -> None:
    """Run the Go PKI helper; it keeps existing files, so this is safe to repeat.

    ``node`` (name, IP) adds a real node's identities and the node IP to the API server's
    certificate, which pods reach it at.
    """
    argv = [str(bin_dir / "pki"), f"--dir={layout.pki}", f"--service-ip={SERVICE_IP}"]
    if node is not None:
        name, ip = node
        argv += [f"--extra-sans={ip}", f"--node-name={name}", f"--node-ip={ip}"]
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"PKI generation failed: {' '.join(argv)}\n{result.stderr}")


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, server: str, pki: Path, user: str, cluster_name: str) -> None:
    """Write a self-contained kubeconfig (certificates embedded) for one client identity."""
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: {cluster_name}
  cluster:
    server: {server}
    certificate-authority-data: {_b64(pki / "ca.crt")}
users:
- name: {cluster_name}-{user}
  user:
    client-certificate-data: {_b64(pki / f"{user}.crt")}
    client-key-data: {_b64(pki / f"{user}.key")}
contexts:
- name: {cluster_name}
  context:
    cluster: {cluster_name}
    user: {cluster_name}-{user}
    namespace: default
current-context: {cluster_name}
preferences: {{}}
"""
    write_atomic(path, text, mode=0o600)


def etcd_argv(bin_dir: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    return [
        str(bin_dir / "etcd"),
        "--name=rtdetr-local",
        f"--data-dir={layout.etcd_data}",
        f"--client-url=http://127.0.0.1:{ports['etcd_client']}",
        f"--peer-url=http://127.0.0.1:{ports['etcd_peer']}",
        # The cluster is disposable; skipping fsync keeps etcd fast on slow virtual disks.
        "--unsafe-no-fsync",
        "--log-level=warn",
    ]


def apiserver_argv(
    bin_dir: Path, layout: Layout, ports: dict[str, int], node_ip: str | None = None
) -> list[str]:
    """kube-apiserver's flags; with a real node (``node_ip``) it is reachable from pods.

    Pods reach the API through the ``kubernetes`` Service, whose endpoint the lease reconciler
    publishes from ``--advertise-address``; an endpoint on loopback is invalid, so without a
    real node (no pod could use it anyway) the API server stays on loopback and publishes none.
    """
    pki = layout.pki
    if node_ip is None:
        network = [
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            "--endpoint-reconciler-type=none",
        ]
    else:
        network = [
            "--bind-address=0.0.0.0",
            f"--advertise-address={node_ip}",
            "--endpoint-reconciler-type=lease",
        ]
    return [
        str(bin_dir / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
        *network,
        f"--secure-port={ports['apiserver']}",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction,ExtendedResourceToleration",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--service-account-issuer={ISSUER}",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        f"--proxy-client-cert-file={pki / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={pki / 'front-proxy-client.key'}",
        "--allow-privileged=true",
        # Logs and exec dial a node's first address of these types. kwok's nodes carry an
        # InternalDNS address (localhost): their "kubelet" is kwok's server on loopback, while
        # their InternalIPs stay distinct, as pods and tests expect. The real node has no
        # InternalDNS address, so its InternalIP is dialled (its name need not resolve).
        "--kubelet-preferred-address-types=InternalDNS,InternalIP,Hostname,ExternalIP",
        "--profiling=false",
        "--v=1",
    ]


def controller_manager_argv(bin_dir: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    pki, kc = layout.pki, layout.kubeconfigs / "kube-controller-manager.kubeconfig"
    return [
        str(bin_dir / "kube-controller-manager"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['controller_manager']}",
        f"--tls-cert-file={pki / 'kube-controller-manager-serving.crt'}",
        f"--tls-private-key-file={pki / 'kube-controller-manager-serving.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        # Every default controller: job, deployment, replicaset, garbage collector, PV binder
        # and expander, endpoints and endpoint slices, HPA, disruption, service account
        # tokens, namespace, TTL-after-finished, node lifecycle, ... plus token cleaner.
        "--controllers=*,tokencleaner",
        "--use-service-account-credentials=true",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        f"--cluster-cidr={POD_CIDR}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def scheduler_argv(bin_dir: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    pki, kc = layout.pki, layout.kubeconfigs / "kube-scheduler.kubeconfig"
    return [
        str(bin_dir / "kube-scheduler"),
        f"--kubeconfig={kc}",
        f"--authentication-kubeconfig={kc}",
        f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1",
        f"--secure-port={ports['scheduler']}",
        f"--tls-cert-file={pki / 'kube-scheduler-serving.crt'}",
        f"--tls-private-key-file={pki / 'kube-scheduler-serving.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--requestheader-client-ca-file={pki / 'front-proxy-ca.crt'}",
        "--leader-elect=false",
        "--profiling=false",
        "--v=1",
    ]


def kwok_argv(bin_dir: Path, layout: Layout, ports: dict[str, int]) -> list[str]:
    return [
        str(bin_dir / "kwok"),
        f"--config={layout.kwok / 'stages.yaml'}",
        f"--kubeconfig={layout.kubeconfigs / 'kwok.kubeconfig'}",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--server-address=127.0.0.1:{ports['kwok']}",
        # Written into the simulated nodes' daemonEndpoints: the API server sends a simulated
        # pod's log requests to this port (TLS with kwok's own certificate, which the API
        # server, without --kubelet-certificate-authority, does not verify).
        f"--node-port={ports['kwok']}",
        f"--cidr={POD_CIDR}",
        "--node-ip=10.0.0.1",
        "--node-lease-duration-seconds=40",
    ]


def provisioner_argv(layout: Layout, owner_pid: int | None = None) -> list[str]:
    script = Path(__file__).resolve().parent.parent / "localcluster.py"
    argv = [sys.executable, str(script), "provisioner", f"--state-dir={layout.state}"]
    if owner_pid is not None:
        argv.append(f"--owner={owner_pid}:{procs.start_ticks(owner_pid)}")
    return argv
