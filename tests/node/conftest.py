"""The ``node`` tier: the product running for real on the local cluster's real node.

``stack`` (session scope) brings up the local cluster with a real node (kubelet, containerd), our
images built without Docker and imported into it, and the operator installed with the Helm chart
(hack/localstack.py), then stops everything and checks that the machine is as it was: no bridge,
no kube-proxy nftables table, no cgroups of the node, the kernel settings restored.

``RTDETR_NODE_STATE_DIR=.cluster`` reuses (and leaves running) the cluster of ``make cluster-up``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.node.support import localstack, nodehost

ENV_STATE = "RTDETR_NODE_STATE_DIR"


def _print(config: pytest.Config, text: str) -> None:
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is None:
        sys.stderr.write(text + "\n")
        return
    with capman.global_and_fixture_disabled():
        sys.stderr.write(text + "\n")


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[localstack.Stack]:
    external = os.environ.get(ENV_STATE)
    state_dir = Path(external).resolve() if external else tmp_path_factory.mktemp("node-cluster")
    sysctls_before = nodehost.read_sysctls()
    failed_before = request.session.testsfailed
    try:
        running = localstack.up(state_dir)
    except BaseException:
        if not external:
            localstack.localcluster.stop(state_dir)
        raise
    try:
        yield running
    finally:
        if request.session.testsfailed > failed_before:
            tails = running.cluster.log_tails()
            _print(request.config, f"\n===== node tier: cluster logs =====\n{tails}")
        if not external:
            localstack.localcluster.stop(state_dir, keep_logs=True)
            left = nodehost.leftovers()
            changed = {
                k: (v, nodehost.read_sysctls().get(k))
                for k, v in sysctls_before.items()
                if nodehost.read_sysctls().get(k) != v
            }
            assert not left, f"cluster down left on the host: {left}"
            assert not changed, f"cluster down did not restore kernel settings: {changed}"
