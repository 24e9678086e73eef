#!/usr/bin/env python3
"""Local Kubernetes cluster for development and end-to-end tests.

Real kube-apiserver, kube-controller-manager and kube-scheduler (v1.36.3) with an embedded
etcd, plus kwok simulating GPU nodes and pod lifecycles, all on loopback ports chosen per
cluster. Standard library only, so it runs before any virtual environment exists.

Command line:
    localcluster.py build                      build or reuse the cached binaries
    localcluster.py up     [--state-dir DIR]   start (or reuse) a cluster, print KUBECONFIG
    localcluster.py down   [--state-dir DIR]   stop everything and remove runtime files
    localcluster.py status [--state-dir DIR]   report whether the cluster is up

Python API (used by the e2e fixtures):
    from localcluster import start, stop, status, Cluster
    cluster = start(state_dir)   # -> Cluster(kubeconfig, server, ports, kubectl(), client())
    stop(state_dir)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clusterkit import build
from clusterkit.cluster import Cluster, ClusterError, find_kubectl, start, status, stop

__all__ = ["Cluster", "ClusterError", "ensure_binaries", "find_kubectl", "start", "status", "stop"]

DEFAULT_STATE = Path(__file__).resolve().parent.parent / ".cluster"


def ensure_binaries() -> Path:
    """Build (once) or locate the cached control-plane binaries; return their directory."""
    return build.ensure_binaries()


def _cmd_build(_args: argparse.Namespace) -> int:
    bin_dir = ensure_binaries()
    print(bin_dir)
    manifest = build.manifest(bin_dir)
    for name, version in dict(manifest.get("versions", {})).items():  # type: ignore[call-overload]
        print(f"  {name}: {version}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    cluster = start(
        args.state_dir,
        job_complete_after=args.job_complete_after,
        timeout=args.timeout,
        real_node=not args.no_real_node,
    )
    print(f"cluster up: {cluster.server}")
    print(f"  nodes: {', '.join(cluster.node_names)}")
    print(f"  logs:  {cluster.state_dir / 'logs'}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    stopped = stop(args.state_dir, keep_logs=not args.purge, purge=args.purge)
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    report = status(args.state_dir)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{'up' if report['up'] else 'down'}: {report['state_dir']}")
        if report["server"]:
            print(f"  server: {report['server']}  apiserver ready: {report['apiserver_ready']}")
        for name, alive in report["components"].items():
            print(f"  {name}: {'running' if alive else 'not running'}")
        if report["stray_pids"]:
            print(f"  stray processes: {report['stray_pids']} (run down to stop them)")
    return 0 if report["up"] else 1


def _cmd_provisioner(args: argparse.Namespace) -> int:
    from clusterkit import cluster, provisioner

    state_dir = Path(args.state_dir).resolve()
    if provisioner.main(state_dir, args.owner):  # its owner is gone: nobody else will stop it
        provisioner.log("stopping the cluster")
        cluster.stop(state_dir, keep_logs=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument(
            "--state-dir",
            type=Path,
            default=DEFAULT_STATE,
            help=f"cluster state directory (default {DEFAULT_STATE})",
        )
        return p

    sub.add_parser("build", help="build or reuse the cached binaries").set_defaults(func=_cmd_build)
    up = add("up", "start a cluster, or reuse the healthy one in --state-dir")
    up.add_argument(
        "--job-complete-after",
        metavar="DURATION",
        default=None,
        help="how long Job pods run before succeeding (default 3s)",
    )
    up.add_argument("--timeout", type=float, default=120, help="per-step readiness timeout")
    up.add_argument(
        "--no-real-node",
        action="store_true",
        help="only kwok's simulated nodes (no kubelet/containerd; needs no root)",
    )
    up.set_defaults(func=_cmd_up)
    down = add("down", "stop the cluster and remove its runtime files (logs are kept)")
    down.add_argument("--purge", action="store_true", help="also delete logs and the state dir")
    down.set_defaults(func=_cmd_down)
    st = add("status", "exit 0 if the cluster is up, 1 otherwise")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_cmd_status)
    prov = add("provisioner", "internal: the volume provisioner process started by up")
    prov.add_argument("--owner", default=None, help="pid:start_ticks; stop the cluster when gone")
    prov.set_defaults(func=_cmd_provisioner)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ClusterError, build.BuildError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into head and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
