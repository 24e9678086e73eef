"""Write (or check) both CRDs: ``crds/`` and the Helm chart's byte-identical copies.

    python -m rtdetr_operator.codegen.crds            # (re)write the CRDs (and the chart's copies)
    python -m rtdetr_operator.codegen.crds --check    # exit 1 if a file differs from the models

Each kind's schema comes from its own module (:mod:`~rtdetr_operator.codegen.training_crd`,
:mod:`~rtdetr_operator.codegen.deployment_crd`); this one only decides where they go.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

from rtdetr_operator.codegen import training_crd


def default_output() -> Path:
    """``<repo>/crds/`` (this file is ``<repo>/operator/rtdetr_operator/codegen/crds.py``)."""
    return Path(__file__).resolve().parents[3] / "crds" / training_crd.CRD_FILE


def chart_crds_dir() -> Path:
    """The Helm chart's copies of the CRDs (rendered by its crds.yaml template)."""
    return Path(__file__).resolve().parents[3] / "charts" / "rtdetr-operator" / "files" / "crds"


def generated_files(catalog_files: list[Path] | None = None) -> dict[Path, str]:
    """Every file this module owns: both CRDs in crds/ and the chart's byte-identical copies."""
    from rtdetr_operator.codegen import deployment_crd as crdgen_deployment

    texts = {
        training_crd.CRD_FILE: training_crd.render(),
        crdgen_deployment.CRD_FILE: crdgen_deployment.render(catalog_files or []),
    }
    out: dict[Path, str] = {}
    for folder in (default_output().parent, chart_crds_dir()):
        for name, text in texts.items():
            out[folder / name] = text
    return out


def _stale(path: Path, text: str) -> bool:
    current = path.read_text() if path.exists() else ""
    if current == text:
        return False
    diff = difflib.unified_diff(
        current.splitlines(), text.splitlines(), str(path), "generated", lineterm=""
    )
    print("\n".join(list(diff)[:80]), file=sys.stderr)
    print(f"{path} is out of date; run `python -m rtdetr_operator.codegen.crds`", file=sys.stderr)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rtdetr_operator.codegen.crds", description=__doc__
    )
    parser.add_argument(
        "--output", type=Path, help="write only the RTDETRTraining CRD, to this file"
    )
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    parser.add_argument("--json-schema", action="store_true", help="print the schema as JSON")
    parser.add_argument(
        "--catalog",
        type=Path,
        action="append",
        default=[],
        help="GPU catalog YAML merged over the built-in one (RTDETRDeployment's GPU enum)",
    )
    args = parser.parse_args(argv)
    if args.json_schema:
        print(json.dumps(training_crd.openapi_schema(), indent=2))
        return 0
    files = {args.output: training_crd.render()} if args.output else generated_files(args.catalog)
    if args.check:
        stale = [path for path, text in files.items() if _stale(path, text)]
        return 1 if stale else 0
    from rtdetr_spec.artifacts import atomic_write_text

    for path, text in files.items():
        atomic_write_text(path, text)
        print(f"wrote {path} ({len(text.encode())} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
