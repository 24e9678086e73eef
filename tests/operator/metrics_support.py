"""Reading the operator's /metrics and the Grafana dashboard's queries (unit and e2e tests)."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

DASHBOARD = (
    Path(__file__).resolve().parents[2] / "charts/rtdetr-operator/dashboards/rtdetr-operator.json"
)
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def family(sample_name: str) -> str:
    """The metric family a sample name belongs to (``x_bucket`` -> ``x``)."""
    for suffix in _SUFFIXES:
        if sample_name.endswith(suffix):
            return sample_name[: -len(suffix)]
    return sample_name


def dashboard_metrics(path: Path = DASHBOARD) -> set[str]:
    """Every ``rtdetr_*`` metric family the dashboard's panels and variables query."""
    dash = json.loads(path.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [json.dumps(v.get("query")) for v in dash["templating"]["list"]]
    return {family(m) for e in exprs for m in re.findall(r"\brtdetr_[a-z0-9_]+", e)}


def scrape(url: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """``{family: [(sample name, labels, value)]}`` from a Prometheus text endpoint."""
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    return {
        f.name: [(s.name, s.labels, s.value) for s in f.samples]
        for f in text_string_to_metric_families(text)
    }
