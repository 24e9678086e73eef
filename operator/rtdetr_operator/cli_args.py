"""``rtdetr-operator``'s command line: every flag, its check and its help, in one place.

:func:`parse_args` also refuses flag combinations that cannot work (a watched namespace that
is denied, lease timings out of order) before anything connects to a cluster.
"""

from __future__ import annotations

import argparse

from rtdetr_operator.deployment import defaults as deployment_defaults
from rtdetr_operator.metrics import port
from rtdetr_operator.scope import (
    DEFAULT_DENIED_NAMESPACES,
    namespace_list,
    positive_int,
    positive_seconds,
)
from rtdetr_spec.cli_help import add_version, finish_parser

DESCRIPTION = (
    "rtdetr-operator: run the RTDETRTraining and RTDETRDeployment operator (current kubeconfig)."
)
EPILOG = """examples:
  rtdetr-operator                                      # all namespaces, current kubeconfig
  rtdetr-operator -n team-a -n team-b --log-format plain
  rtdetr-operator --kubeconfig .cluster/kubeconfig --stuck-grace 10

exit codes: 2 when no usable Kubernetes configuration, API server or CRD is found."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rtdetr-operator", description=DESCRIPTION, epilog=EPILOG)
    add_version(p)
    p.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="namespace to serve (repeatable; default: all namespaces)",
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or in-cluster)")
    p.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint URL ('' disables it)",
    )
    p.add_argument(
        "--metrics-port",
        type=port,
        default=8000,
        help="port of the Prometheus /metrics endpoint on all addresses (0 disables it; "
        "default: %(default)s)",
    )
    p.add_argument(
        "--progress-interval",
        type=positive_seconds,
        default=30.0,
        help="seconds between reads of progress lines from pod logs: a running training's "
        "rank-0 pod, a download's fetch step (per resource; default: %(default)s)",
    )
    p.add_argument(
        "--workers", type=positive_int, default=4, help="reconciles running at once (>= 1)"
    )
    p.add_argument(
        "--stuck-grace",
        type=positive_seconds,
        default=60.0,
        help="seconds a pod may be unschedulable or unable to pull its image before the "
        "RTDETRTraining is marked Stalled",
    )
    p.add_argument(
        "--resync",
        type=positive_seconds,
        default=300.0,
        help="seconds between full re-checks of every known RTDETRTraining",
    )
    p.add_argument(
        "--triton-image",
        default=deployment_defaults.TRITON_IMAGE,
        help="tritonserver image of RTDETRDeployments that name none (default: %(default)s)",
    )
    p.add_argument(
        "--triton-tensorrt-version",
        default=deployment_defaults.TENSORRT_VERSION,
        help="TensorRT version inside --triton-image; engines are built with exactly this "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--build-image",
        help="image of the repository and engine build Jobs when a deployment and its source "
        "training name none (the trainer image of the Triton image's NGC release)",
    )
    p.add_argument(
        "--deny-namespaces",
        type=namespace_list,
        default=list(DEFAULT_DENIED_NAMESPACES),
        help="comma-separated namespaces whose custom resources are never served "
        "(default: %(default)s; '' denies none)",
    )
    p.add_argument(
        "--allow-node-volumes",
        action="store_true",
        help="let CRs use node-level volume sources (hostPath, flexVolume, ...); by default "
        "only claims, pod-scoped sources, CSI and NFS are accepted",
    )
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="run as one of several replicas: reconcile only while holding a Lease",
    )
    p.add_argument(
        "--leader-election-namespace",
        help="namespace of the Lease (default: $POD_NAMESPACE, else the first --namespace, "
        "else default)",
    )
    p.add_argument("--leader-election-lease", default="rtdetr-operator", help="Lease name")
    p.add_argument(
        "--lease-duration",
        type=positive_seconds,
        default=15.0,
        help="seconds a standby waits after the last renewal before taking over",
    )
    p.add_argument(
        "--renew-deadline",
        type=positive_seconds,
        default=10.0,
        help="seconds the leader keeps trying to renew before it stops leading",
    )
    p.add_argument(
        "--retry-period",
        type=positive_seconds,
        default=2.0,
        help="seconds between acquire/renew attempts",
    )
    p.add_argument(
        "--log-format",
        choices=("json", "plain", "full"),
        default="json",
        help="log line format (kopf's)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return finish_parser(p)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    denied = sorted(set(args.namespace) & set(args.deny_namespaces))
    if denied:
        p.error(f"--namespace {', '.join(denied)}: denied by --deny-namespaces")
    if not 0 < args.retry_period < args.renew_deadline < args.lease_duration:
        p.error(
            "--retry-period < --renew-deadline < --lease-duration is required, got "
            f"{args.retry_period} / {args.renew_deadline} / {args.lease_duration}"
        )
    return args
