"""Configuration of the real node: containerd, CNI, kubelet, kube-proxy and CoreDNS (pure).

Every path a component would by default take from the host (``/var/lib/containerd``,
``/etc/cni/net.d``, ``/var/lib/cni``, ``/var/lib/kubelet``, ``/opt/containerd``) is pointed into
the cluster's state directory or the image cache, so the node leaves nothing behind on the host.
What cannot be configured (shim sockets under ``/run/containerd``, pod logs under
``/var/log/pods``) is hidden by the private mount namespace the node runs in (``realnode.py``).

Settings that this kind of machine requires, each of which fails without it:

* kubelet ``failCgroupV1: false``: the hosts have a hybrid cgroup v1 layout, which kubelet 1.36
  refuses by default;
* containerd ``restrict_oom_score_adj``: the VM lacks CAP_SYS_RESOURCE, so runc cannot lower the
  sandbox's oom_score_adj and every sandbox would fail to start;
* kubelet ``imageGCHighThresholdPercent: 100``: images are imported, never pulled, so the kubelet
  must never garbage-collect them;
* kubelet ``makeIPTablesUtilChains: false``: nothing of the node needs the kubelet's iptables
  chains, and without them the host's netfilter ruleset holds only kube-proxy's own table;
* the node is tainted ``rtdetr.dev/real-node=true:NoSchedule`` so that the simulated-cluster tests,
  whose pods are scripted by kwok, never land on it; only pods that tolerate the taint run here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Label and taint of the real node: examples and tests select and tolerate exactly this.
REAL_NODE_LABEL = "rtdetr.dev/real-node"
POD_SUBNET = "10.244.200.0/24"  # inside the cluster CIDR, apart from the kwok nodes' /24s
CLUSTER_CIDR = "10.244.0.0/16"
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
BRIDGE = "rtdetr0"
CNI_NETWORK = "rtdetr"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
CGROUP_ROOT = "rtdetr"
PAUSE_IMAGE = "localhost/rtdetr-pause:1"


@dataclass(frozen=True)
class NodePaths:
    """Where one cluster's node keeps its files (``<state>/node``) and its image store."""

    root: Path
    image_store: Path

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet.yaml"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    @property
    def var_log(self) -> Path:
        """Mounted over /var/log inside the node's mount namespace (pod logs)."""
        return self.root / "var-log"

    @property
    def sysctls(self) -> Path:
        """The host's kernel settings before the node changed them."""
        return self.root / "sysctls.json"


def containerd_toml(paths: NodePaths) -> str:
    """containerd 1.6 configuration (version 2 schema) for one CRI node."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{paths.image_store}"
state = "{paths.containerd_state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{paths.containerd_socket}"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{paths.root / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  max_container_log_line_size = 16384

  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false

  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{paths.cni_conf_dir}"
    max_conf_num = 1
"""


def cni_conflist(paths: NodePaths) -> dict[str, Any]:
    """One bridge network for every pod of the node; the host is the pods' gateway.

    No masquerading and no portmap: nothing outside the machine is reachable anyway, and both
    would add netfilter rules of their own. hairpinMode lets a pod reach itself through a
    Service, which kube-proxy's rules need.
    """
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": POD_SUBNET}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.cni_ipam_dir),
                },
            }
        ],
    }


def kubelet_config(paths: NodePaths, pki: Path, node_ip: str, ports: dict[str, int]) -> str:
    """KubeletConfiguration (JSON, which the kubelet reads as YAML)."""
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "address": node_ip,
        "port": ports["kubelet"],
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": ports["kubelet_healthz"],
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [DNS_SERVICE_IP],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": "/etc/resolv.conf",
        "failSwapOn": False,
        # The kubelet's iptables chains (a hint chain, a canary, KUBE-FIREWALL's localnet rule)
        # serve kube-proxy's iptables mode; nftables kube-proxy needs none of them, and the
        # host's ruleset stays as it was.
        "makeIPTablesUtilChains": False,
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
        },
        "serializeImagePulls": False,
        "maxPods": 110,
        "enforceNodeAllocatable": ["pods"],
        "syncFrequency": "10s",
        "fileCheckFrequency": "20s",
        "nodeStatusReportFrequency": "10s",
        "shutdownGracePeriod": "0s",
        "logging": {"verbosity": 1},
    }
    return json.dumps(config, indent=2) + "\n"


def kubelet_argv(
    bin_dir: Path, paths: NodePaths, kubeconfig: Path, node_name: str, node_ip: str
) -> list[str]:
    return [
        str(bin_dir / "kubelet"),
        f"--config={paths.kubelet_config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={paths.kubelet_root}",
        f"--hostname-override={node_name}",
        f"--node-ip={node_ip}",
        f"--node-labels={REAL_NODE_LABEL}=true",
        f"--register-with-taints={REAL_NODE_LABEL}=true:NoSchedule",
    ]


def kube_proxy_config(kubeconfig: Path, node_name: str, ports: dict[str, int]) -> str:
    """KubeProxyConfiguration: nftables mode (the kernel has no IPVS), hands off conntrack.

    Zero conntrack settings mean "leave the kernel's as they are": the node must not change
    host settings it cannot restore.
    """
    config = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": node_name,
        "clusterCIDR": CLUSTER_CIDR,
        "nodePortAddresses": ["primary"],
        "healthzBindAddress": f"127.0.0.1:{ports['kube_proxy_healthz']}",
        "metricsBindAddress": f"127.0.0.1:{ports['kube_proxy_metrics']}",
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "logging": {"verbosity": 1},
    }
    return json.dumps(config, indent=2) + "\n"


def kube_proxy_argv(bin_dir: Path, paths: NodePaths) -> list[str]:
    return [str(bin_dir / "kube-proxy"), f"--config={paths.kube_proxy_config}"]


def corefile(kubeconfig: Path, node_ip: str, ports: dict[str, int]) -> str:
    """Cluster DNS: Services, headless Services' per-pod names (torchrun's MASTER_ADDR)."""
    return f""".:{ports["coredns"]} {{
    bind {node_ip}
    errors
    health 127.0.0.1:{ports["coredns_health"]}
    ready 127.0.0.1:{ports["coredns_ready"]}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} rtdetr-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    forward . /etc/resolv.conf
    cache 5
    loop
    loadbalance
}}
"""


def coredns_argv(bin_dir: Path, paths: NodePaths) -> list[str]:
    return [str(bin_dir / "coredns"), "-conf", str(paths.corefile)]


def containerd_argv(paths: NodePaths) -> list[str]:
    return ["containerd", f"--config={paths.containerd_config}"]
