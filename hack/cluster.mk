# Local Kubernetes cluster (see docs/local-cluster.md). Included by the main Makefile.
#
# Standard library Python only, so these targets work before the project venv exists.
# Binaries are built once into $(XDG_CACHE_HOME or ~/.cache)/rtdetr-operator and reused.
# `make cluster-up` adds a real node (kubelet, containerd) beside kwok's simulated GPU nodes;
# REAL_NODE=0 starts the simulated nodes only (no root needed).

CLUSTER_PYTHON ?= python3
CLUSTER_STATE ?= .cluster
CLUSTER_SCRIPT := hack/localcluster.py
REAL_NODE ?= 1
CLUSTER_UP_FLAGS := $(if $(filter 0,$(REAL_NODE)),--no-real-node,)

.PHONY: cluster-deps cluster-build cluster-up cluster-down cluster-status

# Debian's containerd, runc, CNI plugins, nftables and mmdebstrap, when missing.
cluster-deps:
	@bash hack/node/install-packages.sh

cluster-build:
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) build

cluster-up: $(if $(filter 0,$(REAL_NODE)),,cluster-deps)
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) up --state-dir $(CLUSTER_STATE) $(CLUSTER_UP_FLAGS)

cluster-down:
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) down --state-dir $(CLUSTER_STATE)

cluster-status:
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) status --state-dir $(CLUSTER_STATE)
