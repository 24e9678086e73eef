"""``make demo``: the product on a local cluster whose node runs it for real.

From whatever is cached (nothing, on a fresh machine): the local control plane with kwok's
simulated GPU nodes and one real node, our three images built without Docker and imported into
the node, the operator installed with its Helm chart; then the examples in ``examples/local/``:
a synthetic warehouse dataset Job, an RTDETRTraining (two pods training with gloo, evaluation,
export) and an RTDETRDeployment (Triton on a CPU pool). It prints phases as they change, the
per-class AP50 the evaluation wrote into the training's status, copies the evaluation's pictures
and the TensorBoard files to ``demo-output/evaluation/`` and ``demo-output/tensorboard/``, sends
the held-out test images to the served endpoint and writes them with their detections to
``demo-output/annotated/``.

    .venv/bin/python hack/demo.py [--output demo-output] [--keep]

``--keep`` leaves the cluster up (``export KUBECONFIG=.cluster/kubeconfig``); without it the
cluster goes down at the end and the machine is as it was.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import localstack
from localstack import log

from rtdetr_spec import WAREHOUSE_CLASSES

NAMESPACE = "rtdetr-demo"
NAME = "warehouse-local"
EXAMPLES = localstack.LOCAL_EXAMPLES


def apply(stack: localstack.Stack, file: str) -> None:
    log(f"kubectl apply -f examples/local/{file}")
    print(stack.kubectl("apply", "-f", str(EXAMPLES / file)).rstrip(), flush=True)


def status(stack: localstack.Stack, kind: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = stack.get(kind, name, "-n", NAMESPACE).get("status") or {}
    return out


def watch(stack: localstack.Stack, kind: str, name: str, done: set[str], timeout: float) -> dict:
    """Print the CR's phase, task progress and live training progress (epoch, percent, ETA:
    what ``kubectl get rtt`` shows) whenever they change, until it is in ``done``; while a
    training trains, its rank 0's latest log line every 30 s."""
    last = None
    started = last_line_at = time.monotonic()
    while time.monotonic() - started < timeout:
        st = status(stack, kind, name)
        live = live_progress(st) if st.get("phase") == "Training" else ""
        shown = (st.get("phase"), st.get("progress"), live)
        if shown != last:
            last = shown
            extra = f" ({st['progress']})" if st.get("progress") else ""
            log(f"{kind}/{name}: {st.get('phase', '-')}{extra}{live}")
        if st.get("phase") in done:
            return st
        if st.get("phase") == "Training" and time.monotonic() - last_line_at > 30:
            last_line_at = time.monotonic()
            line = latest_progress(stack, st.get("trainingJob"))
            if line:
                log(f"  rank 0: {line}")
        time.sleep(2)
    raise SystemExit(f"demo: {kind}/{name} did not finish in {timeout:.0f} s")


def live_progress(st: dict[str, Any]) -> str:
    """``status.trainingProgress`` as one line: epoch, percent, ETA, loss, last validation."""
    tp = st.get("trainingProgress") or {}
    if not tp.get("epochs"):
        return ""
    parts = [f"epoch {tp['epochs']}", f"{tp.get('percent', 0)} %"]
    if tp.get("eta"):
        parts.append(f"ETA {tp['eta']}")
    val = tp.get("validation") or {}
    if val.get("mAP50") is not None:
        parts.append(f"val mAP50 {val['mAP50']:.3f}")
    return "  " + ", ".join(parts)


def latest_progress(stack: localstack.Stack, job: str | None) -> str | None:
    """The last epoch/progress line of a training Job's rank 0 (its pod log)."""
    if not job:
        return None
    rank0 = f"job-name={job},batch.kubernetes.io/job-completion-index=0"
    text = stack.kubectl("logs", "-l", rank0, "-n", NAMESPACE, "--tail=40", check=False)
    lines = [
        ln.strip() for ln in text.splitlines() if ln.strip().startswith(("epoch ", "[rank 0]"))
    ]
    return lines[-1] if lines else None


def wait_job(stack: localstack.Stack, name: str, timeout: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        st = stack.get("job", name, "-n", NAMESPACE).get("status", {})
        if st.get("succeeded"):
            log(f"job/{name} complete in {time.monotonic() - started:.0f} s")
            return
        if st.get("failed"):
            logs = stack.kubectl("logs", f"job/{name}", "-n", NAMESPACE, check=False)
            raise SystemExit(f"demo: job/{name} failed:\n{logs}")
        time.sleep(2)
    raise SystemExit(f"demo: job/{name} did not complete in {timeout:.0f} s")


def show_nodes_and_pods(stack: localstack.Stack) -> None:
    log("kubectl get nodes (the real node beside kwok's simulated GPU nodes)")
    print(stack.kubectl("get", "nodes", "-o", "wide").rstrip(), flush=True)
    print(stack.kubectl("get", "pods", "-n", NAMESPACE, "-o", "wide").rstrip(), flush=True)


def print_ap50(st: dict[str, Any]) -> None:
    metrics = st.get("metrics") or {}
    print(f"\nper-class AP50 (status.metrics of rtdetrtraining/{NAME}):")
    per_class = metrics.get("perClassAP50") or {}
    order = [c for c in WAREHOUSE_CLASSES if c in per_class]
    for cls, ap in ((c, per_class[c]) for c in order + sorted(set(per_class) - set(order))):
        print(f"  {cls:<14} {'-' if ap is None else f'{ap:.3f}'}")
    print(f"  {'mAP50':<14} {metrics.get('mAP50', 0):.3f}   mAP {metrics.get('mAP', 0):.3f}\n")


def held_out_images(stack: localstack.Stack) -> list[Path]:
    """The test split's images, read from the dataset volume on this machine (the node)."""
    pvc = stack.get("pvc", "warehouse-data", "-n", NAMESPACE)
    pv = stack.get("pv", pvc["spec"]["volumeName"])
    root = Path(pv["spec"]["hostPath"]["path"]) / "warehouse"
    test = json.loads((root / "annotations" / "test.json").read_text())
    return [root / "images" / im["file_name"] for im in test["images"]]


def collect_results(stack: localstack.Stack, st: dict[str, Any], output: Path) -> list[str]:
    """The evaluation's pictures (PR curves, confusion matrix, annotated images, their JSON) and
    the training's TensorBoard files, copied from the results volume (a hostPath on this
    machine, like the dataset) into ``output``; what is missing is said, not fatal."""
    vol = st.get("resultsVolume") or {}
    try:
        pvc = stack.get("pvc", vol.get("claimName") or "rtdetr-results", "-n", NAMESPACE)
        pv = stack.get("pv", pvc["spec"]["volumeName"])
        run = Path(pv["spec"]["hostPath"]["path"]) / (vol.get("subPath") or "")
    except (KeyError, RuntimeError) as e:
        log(f"results volume not readable here ({e}); pictures stay on the volume")
        return []
    copied: list[str] = []
    evaluate = run / "evaluate"
    for f in sorted(evaluate.glob("*.png")) + sorted(evaluate.glob("*.json")):
        dest = output / "evaluation" / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest)
        copied.append(f"evaluation/{f.name}")
    tensorboard = run / "train" / "tensorboard"
    if tensorboard.is_dir():
        shutil.copytree(tensorboard, output / "tensorboard", dirs_exist_ok=True)
        copied.append("tensorboard/")
    if copied:
        log(f"evaluation pictures and TensorBoard files in {output}: {', '.join(copied)}")
    else:
        log(f"no evaluation pictures or TensorBoard files under {run}")
    return copied


def serve(stack: localstack.Stack, output: Path) -> dict[str, Any]:
    from rtdetr_serving.annotate import annotate_results
    from rtdetr_serving.client import RTDETRClient, results_json

    svc = stack.get("service", f"{NAME}-cpu", "-n", NAMESPACE)
    url = f"{svc['spec']['clusterIP']}:8000"
    images = held_out_images(stack)
    log(f"sending {len(images)} held-out images to Triton at {url} (Service {NAME}-cpu)")
    client = RTDETRClient(url, "http", timeout_s=120)
    started = time.monotonic()
    results = client.detect([str(p) for p in images])
    seconds = time.monotonic() - started
    classes = client.manifest.detectable_classes()
    annotate_results(results, output / "annotated", classes)
    (output / "detections.json").write_text(results_json(results, url=url, model="rtdetr"))
    found = sum(len(r.detections) for r in results)
    log(f"{found} detections on {len(results)} images in {seconds:.1f} s; "
        f"annotated images in {output / 'annotated'}")  # fmt: skip
    return {"images": len(results), "detections": found, "seconds": round(seconds, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--output", type=Path, default=localstack.REPO / "demo-output")
    p.add_argument("--state-dir", type=Path, default=localstack.REPO / ".cluster")
    p.add_argument("--keep", action="store_true", help="leave the cluster running")
    args = p.parse_args(argv)
    output = args.output.resolve()
    output.mkdir(parents=True, exist_ok=True)
    # The cluster-free demo (make demo-local) shares the folder and its marker.
    (output / ".rtdetr-demo").write_text("written by make demo / make demo-local\n")
    started = time.monotonic()
    stack = localstack.up(args.state_dir.resolve())
    ok = False
    try:
        setup_s = time.monotonic() - started
        apply(stack, "namespace.yaml")
        localstack.ensure_namespace(stack, NAMESPACE, localstack.RESTRICTED)
        apply(stack, "dataset.yaml")
        wait_job(stack, "warehouse-data", 600)
        apply(stack, "training.yaml")
        watch(stack, "rtdetrtraining", NAME, {"Training", "Evaluating", "Exporting", "Failed"}, 600)
        show_nodes_and_pods(stack)
        trained = watch(stack, "rtdetrtraining", NAME, {"Succeeded", "Failed"}, 3600)
        if trained["phase"] != "Succeeded":
            raise SystemExit(f"demo: the training failed: {json.dumps(trained['conditions'])}")
        print_ap50(trained)
        pictures = collect_results(stack, trained, output)
        apply(stack, "deployment.yaml")
        served = watch(stack, "rtdetrdeployment", NAME, {"Ready"}, 1200)
        log(f"serving revision {served['model']['revision']}")
        requests = serve(stack, output)
        summary = {
            "metrics": trained.get("metrics"),
            "artifacts": trained.get("artifacts"),
            "revision": served["model"]["revision"],
            "requests": requests,
            "pictures": pictures,
            "seconds": {"setup": round(setup_s, 1), "total": round(time.monotonic() - started)},
        }
        (output / "cluster_demo_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        log(f"demo finished in {time.monotonic() - started:.0f} s (setup {setup_s:.0f} s)")
        ok = True
    finally:
        if args.keep:
            log(f"cluster left running: export KUBECONFIG={stack.kubeconfig}")
        else:
            if not ok:
                print(stack.cluster.log_tails(20), file=sys.stderr)
            log("cluster down")
            localstack.localcluster.stop(args.state_dir.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
