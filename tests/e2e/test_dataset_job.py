"""The dataset-conversion Job example is accepted by a real API server: its schema, pod failure
policy and security context pass the server's validation (a server-side dry run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .cluster import E2ECluster

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "convert-mtmc-job.yaml"


def test_the_conversion_job_example_is_valid_on_the_server(
    e2e_cluster: E2ECluster, e2e_namespace: str
) -> None:
    ns = ["-n", e2e_namespace]
    out = e2e_cluster.kubectl("apply", *ns, "--dry-run=server", "-o", "yaml", "-f", str(EXAMPLE))
    job = yaml.safe_load(out.stdout)
    spec = job["spec"]["template"]["spec"]
    assert job["kind"] == "Job" and spec["restartPolicy"] == "Never"
    assert job["spec"]["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"] == [2]
    limits = spec["containers"][0]["resources"]["limits"]
    assert "nvidia.com/gpu" not in limits  # conversion needs no GPU


def test_the_conversion_jobs_pod_is_admitted_under_pod_security_restricted(
    e2e_cluster: E2ECluster, e2e_namespace: str
) -> None:
    """Pod Security enforces on pods, not Jobs: a Job whose pods it refuses is accepted and
    then never runs. Its pod template, as a Pod, must pass the namespace's "restricted"."""
    (job,) = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d and d["kind"] == "Job"]
    template = job["spec"]["template"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "conversion-pod", **template.get("metadata", {})},
        "spec": template["spec"],
    }
    out = e2e_cluster.kubectl(
        "apply", "-n", e2e_namespace, "--dry-run=server", "-f", "-",
        input=json.dumps(pod), check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "would violate PodSecurity" not in out.stderr
