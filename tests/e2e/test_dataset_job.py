"""The dataset-conversion Job example is accepted by a real API server: its schema, pod failure
policy and security context pass the server's validation (a server-side dry run)."""

from __future__ import annotations

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
