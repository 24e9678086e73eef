"""Write every manifest ``make lint`` checks with checkov into one folder.

    python hack/lint_manifests.py OUTDIR

* ``chart-cluster-wide.yaml``, ``chart-namespaced.yaml``, ``chart-metrics.yaml``: the chart
  rendered with its default values, with ``watchNamespaces`` set and with the ServiceMonitor and
  dashboard on (Helm's Go SDK, offline, as tests/deploy renders it);
* ``children/``: every kind of object the operator creates
  (``python -m rtdetr_operator.codegen.manifest_samples``).

* ``deploy/``, ``examples/``: copies of the plain manifests and the examples (the dataset
  conversion Job; checkov skips the custom resources) — one folder, one checkov run.

Needs the project venv.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import helm_python as helm

from rtdetr_operator.codegen.manifest_samples import write

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "charts" / "rtdetr-operator"
VALUES = {
    "chart-cluster-wide": {},
    "chart-namespaced": {"watchNamespaces": ["team-a", "team-b"]},
    "chart-metrics": {
        "metrics": {"serviceMonitor": {"enabled": True}, "dashboard": {"enabled": True}}
    },
}


def render(values: dict) -> str:
    out = helm.Chart.load(CHART).render(values, name="rtdetr", namespace="rtdetr-system")
    return "\n---\n".join(text for path, text in sorted(out.items()) if path.endswith(".yaml"))


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python hack/lint_manifests.py OUTDIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    for stem, values in VALUES.items():
        (out / f"{stem}.yaml").write_text(render(values))
    write(out / "children")
    for folder in ("deploy", "examples"):
        shutil.copytree(ROOT / folder, out / folder, dirs_exist_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
