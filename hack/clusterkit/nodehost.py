"""What the real node changes on the host, and how ``down`` puts each thing back.

A kubelet, containerd and kube-proxy are not tenants that clean up after themselves: the kubelet
tunes kernel settings and creates cgroups, kube-proxy writes nftables tables, the CNI bridge
plugin creates a bridge, and container processes outlive a killed containerd. ``down`` must leave
the machine as ``up`` found it, so everything here is either recorded before it changes
(sysctls) or found by a name that only the node uses (the bridge, the cgroup root, kube-proxy's
tables), then removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from . import build
from .nodeconfig import BRIDGE, CGROUP_ROOT

#: Kernel settings the node sets (ip_forward) or that the kubelet and kube-proxy may tune.
SYSCTLS = [
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
]
#: nftables tables kube-proxy creates in nftables mode.
KUBE_PROXY_TABLES = [("ip", "kube-proxy"), ("ip6", "kube-proxy")]
#: Debian packages the node runs on; ``hack/node/install-packages.sh`` installs them.
REQUIRED_COMMANDS = {
    "containerd": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "nft": "nftables",
    "ip": "iproute2",
    "unshare": "util-linux",
    "nsenter": "util-linux",
    "mount": "mount",
}
CNI_PLUGINS = ["bridge", "host-local", "loopback"]


class HostError(RuntimeError):
    """The host cannot run the real node; the message says what to install or change."""


def check_host(cni_bin_dir: str) -> None:
    """Refuse early, naming the fix, rather than fail halfway through a start."""
    if os.geteuid() != 0:
        raise HostError(
            "a real node needs root (containerd, mount namespaces, a bridge); run as root or "
            "start the cluster without it (localcluster.py up --no-real-node)"
        )
    missing = sorted({pkg for cmd, pkg in REQUIRED_COMMANDS.items() if not shutil.which(cmd)})
    missing += sorted(
        {"containernetworking-plugins" for p in CNI_PLUGINS if not Path(cni_bin_dir, p).exists()}
    )
    if missing:
        raise HostError(
            f"missing Debian packages for the real node: {' '.join(missing)} "
            "(hack/node/install-packages.sh installs them)"
        )


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name


def read_sysctls() -> dict[str, str]:
    """Current values of :data:`SYSCTLS` that exist on this kernel."""
    out = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            out[name] = _sysctl_path(name).read_text().strip()
    return out


def write_sysctl(name: str, value: str) -> None:
    _sysctl_path(name).write_text(value + "\n")


def save_sysctls(path: Path) -> dict[str, str]:
    """Record the host's values once: a restart after a crash must not record the node's own."""
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        return saved
    values = read_sysctls()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(values, indent=2) + "\n")
    tmp.replace(path)
    return values


def restore_sysctls(path: Path) -> list[str]:
    """Write back every recorded value that differs now; return the names restored."""
    try:
        saved: dict[str, str] = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    restored = []
    current = read_sysctls()
    for name, value in saved.items():
        if current.get(name) != value:
            with contextlib.suppress(OSError):
                write_sysctl(name, value)
                restored.append(name)
    return restored


def node_ip() -> str:
    """The address pods and the API server reach the node at: RTDETR_NODE_IP, else the IPv4
    address of the interface holding the default route (what the kubelet itself would pick)."""
    override = os.environ.get("RTDETR_NODE_IP")
    if override:
        return override
    routes = subprocess.run(
        ["ip", "-4", "-o", "route", "show", "default"], capture_output=True, text=True
    ).stdout.split()
    if "dev" in routes:
        dev = routes[routes.index("dev") + 1]
        addrs = subprocess.run(
            ["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True
        ).stdout.split()
        if "inet" in addrs:
            return addrs[addrs.index("inet") + 1].split("/")[0]
    raise HostError(
        "no IPv4 default route to take the node's address from; set RTDETR_NODE_IP to an "
        "address of this machine that is not on loopback"
    )


def delete_bridge() -> bool:
    if not Path("/sys/class/net", BRIDGE).exists():
        return False
    subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)
    return True


def delete_kube_proxy_tables() -> list[str]:
    """Remove kube-proxy's nftables tables (``kube-proxy --cleanup`` needs a config to run)."""
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    removed = []
    for family, name in KUBE_PROXY_TABLES:
        if f"table {family} {name}" in listed:
            subprocess.run(["nft", "delete", "table", family, name], capture_output=True)
            removed.append(f"{family} {name}")
    return removed


def create_cgroup_root() -> None:
    """The kubelet's ``cgroupRoot`` must exist in every v1 hierarchy before it starts.

    A new cpuset cgroup starts with no CPUs and no memory nodes, so it inherits the root's.
    """
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if not hierarchy.is_dir() or hierarchy.is_symlink():
            continue
        top = hierarchy / CGROUP_ROOT
        top.mkdir(exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            if (top / name).exists() and not (top / name).read_text().strip():
                (top / name).write_text((hierarchy / name).read_text())


def _cgroup_dirs() -> list[Path]:
    """Every directory of the node's cgroup tree, in every mounted v1 hierarchy, deepest first."""
    found: list[Path] = []
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / CGROUP_ROOT
        if top.is_dir():
            found += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _cgroup_pids(dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        with contextlib.suppress(OSError):
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return pids


def kill_cgroup_tree(timeout: float = 10) -> list[int]:
    """SIGKILL every process left in the node's cgroups (containers outlive their runtime),
    then remove the cgroups; returns the pids killed."""
    dirs = _cgroup_dirs()
    killed = sorted(_cgroup_pids(dirs))
    deadline = time.monotonic() + timeout
    while True:
        left = _cgroup_pids(dirs)
        if not left or time.monotonic() > deadline:
            break
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for d in _cgroup_dirs():
        with contextlib.suppress(OSError):
            d.rmdir()
    return killed


def owner_file() -> Path:
    """Which cluster's node runs on this machine. Machine-wide (the bridge, the cgroup root and
    kube-proxy's tables are the machine's, whatever cache a cluster uses), in /run, so a reboot
    forgets it as it forgets the node."""
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / "rtdetr-operator-node.json"
    return build.cache_root() / "node" / "owner.json"


def leftovers() -> list[str]:
    """What of the node is still on the host (empty when ``down`` cleaned up completely)."""
    out = []
    if Path("/sys/class/net", BRIDGE).exists():
        out.append(f"network interface {BRIDGE}")
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    out += [f"nftables table {f} {n}" for f, n in KUBE_PROXY_TABLES if f"table {f} {n}" in tables]
    out += [f"cgroup {d}" for d in _cgroup_dirs()]
    if owner_file().exists():
        out.append(f"owner record {owner_file()}")
    return out
