# Local Kubernetes control plane (see docs/local-cluster.md). Included by the main Makefile.
#
# Standard library Python only, so these targets work before the project venv exists.
# Binaries are built once into $(XDG_CACHE_HOME or ~/.cache)/rtdetr-operator and reused.

CLUSTER_PYTHON ?= python3
CLUSTER_STATE ?= .cluster
CLUSTER_SCRIPT := hack/localcluster.py

.PHONY: cluster-build cluster-up cluster-down cluster-status

cluster-build:
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) build

cluster-up:
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) up --state-dir $(CLUSTER_STATE)

cluster-down:
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) down --state-dir $(CLUSTER_STATE)

cluster-status:
	$(CLUSTER_PYTHON) $(CLUSTER_SCRIPT) status --state-dir $(CLUSTER_STATE)
