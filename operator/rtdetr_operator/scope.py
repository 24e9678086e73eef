"""Where the operator acts, and the checks on its command line that say so before it starts.

Cluster-wide, the operator sees custom resources in every namespace. The control plane's own
namespaces (:data:`DEFAULT_DENIED_NAMESPACES`, ``--deny-namespaces``) are never acted in: a CR
found there is skipped with one log line, and nothing is created for it. The chart backs this
with a ValidatingAdmissionPolicy that refuses the operator's service account any write there,
so even a faulty operator cannot (charts/rtdetr-operator/templates/admission-policy.yaml).

The number parsers give argparse one line naming the flag for a value that cannot work
(``--workers 0`` would start an operator that never reconciles anything).
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Iterable
from pathlib import Path

import yaml

logger = logging.getLogger("rtdetr_operator")

#: The control plane's namespaces: no RTDETRTraining or RTDETRDeployment is served there.
DEFAULT_DENIED_NAMESPACES: tuple[str, ...] = ("kube-system", "kube-public", "kube-node-lease")


class NamespaceGate:
    """Whether the operator may act in a namespace; logs each refused namespace once."""

    def __init__(self, denied: Iterable[str]) -> None:
        self.denied = frozenset(denied)
        self._told: set[str] = set()

    def allows(self, namespace: str, kind: str, name: str) -> bool:
        if namespace not in self.denied:
            return True
        if namespace not in self._told:
            self._told.add(namespace)
            logger.warning(
                "ignoring %s %s/%s and every other custom resource in namespace %s: it is in "
                "--deny-namespaces",
                kind,
                namespace,
                name,
                namespace,
            )
        return False


def namespace_list(text: str) -> list[str]:
    """``--deny-namespaces a,b``: comma-separated names ('' denies none)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {value}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text}")
    return value


def kubeconfig_problem(path: str) -> str | None:
    """Why ``path`` cannot be a kubeconfig file (None when it reads as one).

    The Kubernetes client reports a missing file as "no configuration found" and a YAML error
    with a traceback; this names the file and the cause in one line first.
    """
    p = Path(path)
    if not p.exists():
        return f"{path}: no such file"
    if not p.is_file():
        return f"{path}: not a file"
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        return f"{path}: cannot read it: {e.strerror or e}"
    except UnicodeDecodeError:
        return f"{path}: not a text file"
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return f"{path}: invalid YAML{where}: {problem}"
    if not isinstance(data, dict):
        return f"{path}: not a kubeconfig (expected a mapping with clusters, users, contexts)"
    return None
