"""Kueue for the e2e tier: its controller built from its Go module and run against the local
control plane, so ``spec.queueName`` is tested with the real admission logic.

``python hack/kueue.py build`` downloads ``sigs.k8s.io/kueue@VERSION`` and builds its
``cmd/kueue`` into ``<cache>/kueue-<version>-<go version>/bin/kueue`` (the cache root of the
local cluster tools, ``~/.cache/rtdetr-operator``; clusterkit/gomodule.py), under a lock; a
finished build is reused
(about 4 minutes on 2 cores with a warm module cache, more the first time).

:func:`install` applies Kueue's CRDs from the same module (``config/components/crd/bases``) with
the conversion-webhook stanza its kustomization adds, so its certificate manager finds every
object it injects its CA into. :func:`start` runs the controller as a process on this machine
with the cluster's admin kubeconfig: ``batch/job`` integration only, no leader election, metrics
off, its webhook server on a loopback port, and its certificate manager on (it fills the webhook
Secret, which :func:`start` copies into the certificate folder as a kubelet would mount it). No
webhook configuration is registered: the operator creates its Jobs suspended and labelled
itself, which is all Kueue's Job reconciler needs, and every client here speaks the storage
version (v1beta2), so the conversion webhook is never called.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HACK_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(HACK_DIR))

from clusterkit.gomodule import GoProgram, free_port  # noqa: E402

MODULE = "sigs.k8s.io/kueue"
VERSION = "v0.17.0"
NAMESPACE = "kueue-system"
WEBHOOK_SERVICE = "kueue-webhook-service"
WEBHOOK_SECRET = "kueue-webhook-server-cert"
#: The CRDs Kueue's kustomization gives a conversion webhook (and its cert manager patches).
CONVERTED = ("localqueues", "clusterqueues", "cohorts", "workloads", "multikueueclusters")


KUEUE = GoProgram("kueue", MODULE, VERSION, "cmd/kueue", "kueue")


def crds(go: str = "go") -> list[dict[str, Any]]:
    """Kueue's CRDs of this version, with the conversion stanza of its kustomization."""
    bases = KUEUE.source() / "config" / "components" / "crd" / "bases"
    out = []
    for path in sorted(bases.glob("kueue.x-k8s.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["names"]["plural"] in CONVERTED:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {
                        "service": {
                            "namespace": NAMESPACE,
                            "name": WEBHOOK_SERVICE,
                            "path": "/convert",
                        }
                    },
                    "conversionReviewVersions": ["v1"],
                },
            }
        out.append(crd)
    return out


def install(kubectl: list[str]) -> None:
    """Kueue's namespace and CRDs (``kubectl`` is the argv prefix with the kubeconfig)."""
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
    # The certificate manager fills this Secret in; it does not create it (Kueue's manifests do).
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": WEBHOOK_SECRET, "namespace": NAMESPACE},
    }
    body = {"apiVersion": "v1", "kind": "List", "items": [namespace, secret, *crds()]}
    subprocess.run(
        [*kubectl, "apply", "--server-side", "--force-conflicts", "-f", "-"],
        input=json.dumps(body),
        text=True,
        check=True,
        capture_output=True,
    )
    names = [crd["metadata"]["name"] for crd in body["items"][2:]]
    deadline = time.monotonic() + 60
    while names and time.monotonic() < deadline:  # not `kubectl wait`: no conditions yet fails
        got = subprocess.run(
            [*kubectl, "get", "crd", names[0], "-o", "jsonpath={.status.conditions}"],
            capture_output=True,
            text=True,
        )
        conditions = json.loads(got.stdout or "[]") if got.returncode == 0 else []
        if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
            names.pop(0)
        else:
            time.sleep(0.5)
    if names:
        raise RuntimeError(f"Kueue's CRD {names[0]} was not Established in 60s")


@dataclass
class Kueue:
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def configuration(folder: Path, health: int, webhook: int) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": NAMESPACE,
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": "0"},
        "webhook": {"host": "127.0.0.1", "port": webhook, "certDir": str(folder / "certs")},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {
            "enable": True,
            "webhookServiceName": WEBHOOK_SERVICE,
            "webhookSecretName": WEBHOOK_SECRET,
        },
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job"]},
    }


def _mount_certificates(kubectl: list[str], certs: Path) -> bool:
    """Write the webhook Secret's files into ``certs`` once Kueue's certificate manager has
    filled it: what the kubelet does for the Secret volume of Kueue's pod (the manager waits
    for the files, it never writes them). True once they are there."""
    if (certs / "tls.crt").is_file():
        return True
    got = subprocess.run(
        [*kubectl, "get", "secret", WEBHOOK_SECRET, "-n", NAMESPACE, "-o", "json"],
        capture_output=True,
        text=True,
    )
    data = (json.loads(got.stdout).get("data") or {}) if got.returncode == 0 else {}
    if not data.get("tls.crt") or not data.get("tls.key"):
        return False
    certs.mkdir(parents=True, exist_ok=True)
    for name, value in data.items():  # tls.key last, then tls.crt: the manager looks for it
        (certs / f".{name}").write_bytes(base64.b64decode(value))
    for name in sorted(data, key=lambda n: n == "tls.crt"):
        (certs / f".{name}").replace(certs / name)
    return True


def start(kubectl: list[str], kubeconfig: Path, folder: Path, timeout: float = 180) -> Kueue:
    """The controller on this machine, ready (its readyz answers) when this returns."""
    binary = KUEUE.ensure()
    folder.mkdir(parents=True, exist_ok=True)
    health = free_port()
    config = folder / "config.yaml"
    config.write_text(yaml.safe_dump(configuration(folder, health, free_port())))
    log = folder / "kueue.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(binary), f"--config={config}", f"--kubeconfig={kubeconfig}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, KUBECONFIG=str(kubeconfig)),
        )
    kueue = Kueue(proc, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kueue exited {proc.returncode}:\n{kueue.tail()}")
        if not _mount_certificates(kubectl, folder / "certs"):
            time.sleep(1)
            continue
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health}/readyz", timeout=2) as r:
                if r.status == 200:
                    return kueue
        except OSError:
            pass
        time.sleep(1)
    kueue.stop()
    raise RuntimeError(f"kueue was not ready in {timeout}s:\n{kueue.tail()}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["build", "path", "crds"])
    args = p.parse_args(argv)
    if args.command == "crds":
        print(yaml.safe_dump_all(crds()))
    else:
        print(KUEUE.ensure() if args.command == "build" else KUEUE.path())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
