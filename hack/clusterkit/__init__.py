"""Local Kubernetes control plane for development and end-to-end tests.

The package is standard-library only on purpose: it has to run before any project virtual
environment exists (``make cluster-up`` on a fresh checkout) and inside test processes whose
dependencies we do not control.
"""

from __future__ import annotations

K8S_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.8"
KWOK_VERSION = "v0.8.0"
#: CoreDNS of the real node (hack/coredns/go.mod requires exactly this release).
COREDNS_VERSION = "v1.15.0"
