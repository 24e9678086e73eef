"""The ``-e SPEC.yaml key=value ...`` arguments every spec-driven command shares, and loading them.

Kept apart from :mod:`rtdetr_trainer.cli` so the dataset tools (``rtdetr dataset validate``) take
the same arguments without importing the task dispatcher.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rtdetr_spec import ExperimentSpec, load_experiment
from rtdetr_spec.redact import redact_value


def add_spec_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        "--experiment_spec_file",
        "--experiment-spec",
        dest="spec",
        required=True,
        metavar="SPEC.yaml",
        help="experiment spec (TAO format); -e=FILE also works",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="spec overrides, e.g. dataset.train_data_sources.image_dir=/data/train",
    )


def load_spec(path: str, overrides: Sequence[str], task: str) -> ExperimentSpec:
    path = path[1:] if path.startswith("=") else path  # `-e=spec.yaml`
    spec = load_experiment(path, list(overrides))
    spec.check_required(task)
    for key in spec.optional_missing(task):
        default = redact_value(key, spec.get(key))
        print(f"warning: {key} is ?? (not set); using the default: {default!r}", file=sys.stderr)
    return spec
