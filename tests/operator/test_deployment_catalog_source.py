"""The operator's GPU catalog follows its ConfigMap: validated at start and on each change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from rtdetr_operator.deployment.catalog_source import CatalogSource
from rtdetr_operator.deployment.plan import Settings
from rtdetr_serving.errors import CatalogError
from tests.operator.deployment_sim import DeploymentSim, deployment

X1 = {
    "name": "X1",
    "display_name": "ACME X1",
    "gpu_product_labels": ["ACME-X1"],
    "compute_capability": "9.0",
    "memory_gib": 80,
    "streams": {"fps30": 50, "fps15": 100},
    "engine": {"opt_batch": 8, "max_batch": 16},
}


def _write(path: Path, gpus: list[dict], *, bump: int) -> None:
    path.write_text(yaml.safe_dump({"gpus": gpus}))
    # The kubelet swaps the ConfigMap's files atomically; a later mtime marks the change.
    os.utime(path, ns=(bump * 10**9, bump * 10**9))


def test_a_new_gpu_type_is_picked_up_and_a_bad_update_keeps_the_last(tmp_path: Path) -> None:
    f = tmp_path / "gpu-catalog.yaml"
    _write(f, [], bump=1)
    src = CatalogSource(paths=[f])
    assert "X1" not in src.load().names()
    _write(f, [X1], bump=2)
    assert src.current().get("X1").streams.fps30 == 50
    _write(f, [{**X1, "compute_capability": "nine"}], bump=3)
    assert src.current().get("X1").compute_capability == "9.0"
    assert src.problem is not None and "'X1'" in src.problem and "compute_capability" in src.problem
    _write(f, [{**X1, "streams": {"fps30": 40, "fps15": 80}}], bump=4)
    assert src.current().get("X1").streams.fps30 == 40 and src.problem is None


def test_an_invalid_catalog_at_start_is_refused(tmp_path: Path, monkeypatch) -> None:
    f = tmp_path / "gpu-catalog.yaml"
    f.write_text("gpus: [{name: Z}]\n")
    monkeypatch.setenv("RTDETR_GPU_CATALOG", str(f))
    with pytest.raises(CatalogError, match="'Z'"):
        CatalogSource.from_env()


def test_unknown_gpu_stalls_with_a_did_you_mean_until_the_catalog_has_it(tmp_path: Path) -> None:
    f = tmp_path / "gpu-catalog.yaml"
    _write(f, [], bump=1)
    src = CatalogSource(paths=[f])
    body = deployment(pools=[{"gpu": "X1", "minReplicas": 1}])
    sim = DeploymentSim(body, settings=Settings(catalog=src.load()))
    sim.step()
    msg = sim.cond("Stalled")["message"]
    assert msg.startswith("spec.pools[0].gpu: unknown GPU 'X1'")
    typo = DeploymentSim(deployment(pools=[{"gpu": "A10GG"}]), settings=sim.settings)
    typo.step()
    assert "unknown GPU 'A10GG'; did you mean A10G" in typo.cond("Stalled")["message"]
    _write(f, [X1], bump=2)
    sim.settings = Settings(catalog=src.current())
    p = sim.step()
    assert sim.cond("Stalled")["status"] == "False" and p.create
