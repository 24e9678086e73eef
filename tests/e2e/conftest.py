"""Make the local-cluster fixtures available to every e2e test module."""

from .cluster import E2ECluster, e2e_cluster, e2e_namespace, e2e_plain_namespace

__all__ = ["E2ECluster", "e2e_cluster", "e2e_namespace", "e2e_plain_namespace"]
