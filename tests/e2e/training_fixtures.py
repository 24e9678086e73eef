"""Fixtures of the RTDETRTraining e2e tests: the CRD and a namespace-scoped operator process.

Loaded with ``pytest_plugins = ["tests.e2e.training_fixtures"]`` by the test modules (the
cluster fixtures themselves come from tests/e2e/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.training_support import CRDS, OperatorProcess


@pytest.fixture(scope="session")
def rtdetr_crd(e2e_cluster: Any) -> None:
    """The generated CRDs, installed once per session (server-side apply: they are large)."""
    e2e_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for crd in ("rtdetrtrainings.rtdetr.dev", "rtdetrdeployments.rtdetr.dev"):
        e2e_cluster.wait_established(crd)


@pytest.fixture
def operator(
    e2e_cluster: Any, e2e_namespace: str, rtdetr_crd: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    proc = OperatorProcess(e2e_cluster.env, [e2e_namespace], tmp_path / "operator.log")
    proc.start()
    yield proc
    proc.stop()
