"""End-to-end support for RTDETRTraining: the CRD, the operator as a real process, test CRs.

The operator runs as the installed ``rtdetr-operator`` console script in its own process, so a
test can SIGKILL it mid-run and start a fresh one, exactly as a crashed pod would be replaced.
Each test gets its own namespace and its own namespace-scoped operator, so tests never see each
other's objects.

kwok plays the kubelet: pod annotations ``kwok.rtdetr.dev/*`` decide how long a task "runs",
whether it fails and what its container's termination message is (docs/local-cluster.md). The
test CRs put them on the pods through the API's own ``podMetadata`` fields, the same way a user
adds annotations, and the termination messages are real TaskSummary JSON.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from rtdetr_spec.reporting import TaskSummary
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "training.yaml"
CRDS = REPO / "crds"
OPERATOR = REPO / ".venv" / "bin" / "rtdetr-operator"
KWOK = "kwok.rtdetr.dev"

TRAIN_SUMMARY = TaskSummary(
    task="train",
    status="SUCCESS",
    epoch=30,
    num_epochs=30,
    artifacts={"checkpoint": "/results/train/model_epoch_029.pth"},
)
EVAL_SUMMARY = TaskSummary(
    task="evaluate",
    status="SUCCESS",
    metrics={
        "mAP": 0.612,
        "mAP50": 0.871,
        "per_class_AP50": {
            "person": 0.949,
            "agility_digit": 0.950,
            "gr1_t2": 0.888,
            "nova_carter": 0.970,
            "transporter": 0.950,
            "forklift": 0.723,
            "pallet": 0.866,
        },
    },
)
EXPORT_SUMMARY = TaskSummary(
    task="export",
    status="SUCCESS",
    artifacts={
        "onnx": "/results/export/model.onnx",
        "onnx_fp16": "/results/export/model.fp16.onnx",
        "nvdsinfer_config": "/results/export/nvdsinfer_config.yaml",
        "labels": "/results/export/labels.txt",
        "manifest": "/results/export/model.manifest.json",
    },
)


class OperatorProcess:
    """``rtdetr-operator`` serving one namespace, started, killed and restarted by tests."""

    def __init__(self, env: dict[str, str], namespaces: list[str], log: Path, **flags: Any):
        self.env, self.namespaces, self.log_path = env, namespaces, log
        self.flags = {"stuck-grace": 5, "workers": 4, "log-format": "plain", **flags}
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = self.metrics_port = 0

    def start(self) -> None:
        self.start_with([])

    def start_with(self, extra: list[str]) -> None:
        """Start with ``extra`` arguments besides the flags (switches such as --leader-elect)."""
        self.port, self.metrics_port = free_port(), free_port()
        argv = [str(OPERATOR), f"--liveness=http://127.0.0.1:{self.port}/healthz"]
        argv.append(f"--metrics-port={self.metrics_port}")
        argv += [f"--namespace={ns}" for ns in self.namespaces]
        argv += [f"--{k}={v}" for k, v in self.flags.items()] + extra
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"operator exited {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"operator not healthy after 60s:\n{self.log()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, like a node or container crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def memory_kib(self) -> tuple[int, int]:
        """(current RSS, peak RSS) of the operator process in KiB."""
        assert self.proc is not None
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.split()[0] if value.split() else "0"
        return int(fields["VmRSS"]), int(fields["VmHWM"])

    def log(self, lines: int = 80) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])


def example_objects() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]


def example_training(
    name: str = "warehouse-r50",
    *,
    train_after: str = "6s",
    summaries: bool = True,
    **spec: Any,
) -> dict[str, Any]:
    """The example's RTDETRTraining with kwok behaviour on its pods (see module docstring)."""
    (cr,) = [copy.deepcopy(d) for d in example_objects() if d["kind"] == "RTDETRTraining"]
    cr["metadata"]["name"] = name
    s = cr["spec"]
    train_ann = {f"{KWOK}/complete-after": train_after}
    eval_ann: dict[str, str] = {}
    export_ann: dict[str, str] = {}
    if summaries:
        train_ann[f"{KWOK}/termination-message"] = TRAIN_SUMMARY.to_message()
        eval_ann[f"{KWOK}/termination-message"] = EVAL_SUMMARY.to_message()
        export_ann[f"{KWOK}/termination-message"] = EXPORT_SUMMARY.to_message()
    s["training"] = {"podMetadata": {"annotations": train_ann}}
    s["evaluation"] = {"podMetadata": {"annotations": eval_ann}}
    s["export"] = {"podMetadata": {"annotations": export_ann}}
    s.update(spec)
    return cr


def apply_example(cluster: Any, namespace: str, cr: dict[str, Any]) -> None:
    pvcs = [d for d in example_objects() if d["kind"] == "PersistentVolumeClaim"]
    cluster.apply([*pvcs, cr], namespace=namespace)


def training_status(cluster: Any, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "rtdetrtraining", name, "-n", namespace, "-o", "json").stdout
    return dict(json.loads(out).get("status") or {})


def wait_phase(
    cluster: Any,
    namespace: str,
    name: str,
    phase: str,
    op: OperatorProcess,
    timeout: float = 90,
) -> dict[str, Any]:
    """Wait for ``phase``; on timeout the failure shows the status and the operator's log."""
    deadline = time.monotonic() + timeout
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = training_status(cluster, namespace, name)
        if status.get("phase") == phase:
            return status
        time.sleep(0.5)
    raise AssertionError(
        f"{name} did not reach {phase} in {timeout}s; status:\n{json.dumps(status, indent=1)}\n"
        f"operator log:\n{op.log()}"
    )


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def jobs(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.get("jobs", "-n", namespace, "-l", f"rtdetr.dev/training={name}")
    return list(out["items"])


def events(cluster: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.get("events", "-n", namespace, f"--field-selector=involvedObject.name={name}")
    return list(out["items"])


def environ_with(cluster: Any) -> dict[str, str]:
    return dict(os.environ, KUBECONFIG=str(cluster.kubeconfig))
