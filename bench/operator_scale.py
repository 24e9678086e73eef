"""Benchmark: N RTDETRTrainings applied at once; time until all Succeeded, operator memory/CPU.

    .venv/bin/python bench/operator_scale.py                       # starts a local cluster
    .venv/bin/python bench/operator_scale.py --kubeconfig .cluster/kubeconfig --count 50

Each training is the example experiment shrunk to 1 node x 1 GPU (the local cluster has 40
simulated GPUs, so 50 runs go through in waves), with kwok completing training pods after 2s and
evaluation/export pods after kwok's default, and real TaskSummary termination messages. The
operator is the installed ``rtdetr-operator`` in its own process, serving one namespace; its RSS
and CPU time are read from /proc while the runs converge.

Prints one JSON object (and a Markdown table row for docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
KUBECTL = REPO / ".venv" / "bin" / "kubectl"
OPERATOR = REPO / ".venv" / "bin" / "rtdetr-operator"
KWOK = "kwok.rtdetr.dev"
SUMMARIES = {
    "training": {
        "task": "train",
        "status": "SUCCESS",
        "epoch": 1,
        "num_epochs": 1,
        "artifacts": {"checkpoint": "/results/train/model_epoch_000.pth"},
    },
    "evaluation": {"task": "evaluate", "status": "SUCCESS", "metrics": {"mAP50": 0.8}},
    "export": {
        "task": "export",
        "status": "SUCCESS",
        "artifacts": {"onnx": "/results/export/m.onnx"},
    },
}


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        [str(KUBECTL), f"--kubeconfig={kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode:
        raise SystemExit(f"kubectl {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def trainings(count: int) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((REPO / "examples" / "training.yaml").read_text()) if d]
    (base,) = [d for d in docs if d["kind"] == "RTDETRTraining"]
    out = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    for i in range(count):
        cr = json.loads(json.dumps(base))
        cr["metadata"]["name"] = f"bench-{i:03d}"
        spec = cr["spec"]
        spec.pop("gpuProduct")
        spec["resources"] = {"cpu": "1", "memory": "2Gi"}
        spec["experiment"]["train"].update(num_nodes=1, num_gpus=1)
        for section, summary in SUMMARIES.items():
            ann = {f"{KWOK}/termination-message": json.dumps(summary)}
            if section == "training":
                ann[f"{KWOK}/complete-after"] = "2s"
            spec[section] = {"podMetadata": {"annotations": ann}}
        out.append(cr)
    return out


def proc_stats(pid: int) -> tuple[int, int, float]:
    """(RSS KiB, peak RSS KiB, CPU seconds) of a process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0]), cpu


def start_operator(kubeconfig: Path, namespace: str, log: Path) -> subprocess.Popen[bytes]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, KUBECONFIG=str(kubeconfig))
    with open(log, "wb") as f:
        proc = subprocess.Popen(
            [
                str(OPERATOR),
                f"--namespace={namespace}",
                f"--liveness=http://127.0.0.1:{port}/healthz",
                "--log-format=plain",
            ],
            env=env,
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"operator did not become healthy; log: {log}")


def run(kubeconfig: Path, count: int, timeout: float) -> dict[str, Any]:
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl(kubeconfig, "create", "namespace", ns)
    for _ in range(100):  # pods are refused until the default ServiceAccount exists
        if (
            subprocess.run(
                [str(KUBECTL), f"--kubeconfig={kubeconfig}", "get", "sa", "default", "-n", ns],
                capture_output=True,
            ).returncode
            == 0
        ):
            break
        time.sleep(0.2)
    log = Path(tempfile.mkdtemp()) / "operator.log"
    proc = start_operator(kubeconfig, ns, log)
    try:
        time.sleep(2)
        idle_rss, _, idle_cpu = proc_stats(proc.pid)
        manifest = {"apiVersion": "v1", "kind": "List", "items": trainings(count)}
        t0 = time.monotonic()
        kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", stdin=json.dumps(manifest))
        applied = time.monotonic() - t0
        done_at: dict[str, float] = {}
        peak = idle_rss
        while len(done_at) < count and time.monotonic() - t0 < timeout:
            items = json.loads(kubectl(kubeconfig, "get", "rtt", "-n", ns, "-o", "json"))["items"]
            now = time.monotonic() - t0
            for item in items:
                phase = (item.get("status") or {}).get("phase")
                if phase == "Failed":
                    raise SystemExit(f"{item['metadata']['name']} failed; log: {log}")
                if phase == "Succeeded":
                    done_at.setdefault(item["metadata"]["name"], now)
            peak = max(peak, proc_stats(proc.pid)[0])
            time.sleep(0.5)
        rss, hwm, cpu = proc_stats(proc.pid)
        jobs = json.loads(kubectl(kubeconfig, "get", "jobs", "-n", ns, "-o", "json"))["items"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        kubectl(kubeconfig, "delete", "namespace", ns, "--wait=false")
    times = sorted(done_at.values())
    return {
        "count": count,
        "succeeded": len(done_at),
        "jobs": len(jobs),
        "apply_s": round(applied, 2),
        "all_succeeded_s": round(times[-1], 1) if len(times) == count else None,
        "p50_succeeded_s": round(statistics.median(times), 1) if times else None,
        "operator_rss_idle_mib": round(idle_rss / 1024, 1),
        "operator_rss_peak_mib": round(max(peak, hwm) / 1024, 1),
        "operator_rss_end_mib": round(rss / 1024, 1),
        "operator_cpu_s": round(cpu - idle_cpu, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        "log": str(log),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--kubeconfig", type=Path, help="use this cluster instead of starting one")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    if args.kubeconfig:
        result = run(args.kubeconfig.resolve(), args.count, args.timeout)
    else:
        sys.path.insert(0, str(REPO / "hack"))
        import localcluster

        state = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
        cluster = localcluster.start(state)
        try:
            result = run(cluster.kubeconfig, args.count, args.timeout)
        finally:
            localcluster.stop(state)
    print(json.dumps(result, indent=2))
    print(
        f"| {result['count']} | {result['all_succeeded_s']} s | {result['p50_succeeded_s']} s | "
        f"{result['operator_rss_idle_mib']} MiB | {result['operator_rss_peak_mib']} MiB | "
        f"{result['operator_cpu_s']} s | {result['jobs']} |"
    )
    return 0 if result["succeeded"] == args.count else 1


if __name__ == "__main__":
    sys.exit(main())
