"""Test objects: RTDETRTraining bodies and the Jobs/Pods the Job controller would make.

Pods are shaped like the API server returns them (owner references to the Job's uid, the
completion-index annotation, container statuses), so the planner reads them the same way it
reads a real cluster's.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from rtdetr_operator.jobs import ANNOTATION_COMPLETION_INDEX, CONTAINER

ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD_SPEC = ROOT / "examples" / "specs" / "rtdetr_r50_warehouse.yaml"
T0 = datetime(2026, 6, 2, 12, 0, 0, tzinfo=UTC)


def experiment(nodes: int = 2, gpus: int = 8) -> dict[str, Any]:
    """The model card's R50 experiment with its ``??`` data paths pointed at /data."""
    exp = yaml.safe_load(MODEL_CARD_SPEC.read_text())
    exp["dataset"]["train_data_sources"] = [
        {"image_dir": "/data/train/images", "json_file": "/data/train/annotations.json"}
    ]
    exp["dataset"]["val_data_sources"] = {
        "image_dir": "/data/val/images",
        "json_file": "/data/val/annotations.json",
    }
    exp["train"]["num_nodes"] = nodes
    exp["train"]["num_gpus"] = gpus
    return exp


def training(
    name: str = "wh", *, generation: int = 1, status: dict | None = None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "rtdetr.dev/v1alpha1",
        "kind": "RTDETRTraining",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": {
            "experiment": experiment(),
            "image": "registry.local/rtdetr-trainer:1.0",
            "gpuProduct": "NVIDIA-H100-80GB-HBM3",
            "storage": {
                "data": {"claimName": "warehouse-data"},
                "results": {"claimName": "rtdetr-results"},
            },
        },
    }
    body["spec"].update(spec)
    if status is not None:
        body["status"] = copy.deepcopy(status)
    return body


def job_from(manifest: dict[str, Any], *, uid: str | None = None) -> dict[str, Any]:
    """A created Job as the API server returns it (uid, status)."""
    job = copy.deepcopy(manifest)
    job["metadata"]["uid"] = uid or f"job-{manifest['metadata']['name']}"
    job["metadata"]["creationTimestamp"] = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    job["status"] = {}
    return job


def finish_job(job: dict[str, Any], ok: bool) -> dict[str, Any]:
    job = copy.deepcopy(job)
    kind = "Complete" if ok else "Failed"
    job["status"]["conditions"] = [{"type": kind, "status": "True", "reason": "X", "message": ""}]
    return job


def pod(
    job: dict[str, Any],
    index: int,
    phase: str = "Running",
    *,
    exit_code: int | None = None,
    message: str | None = None,
    unschedulable_since: datetime | None = None,
    waiting: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    name = f"{job['metadata']['name']}-{index}-abcde"
    meta: dict[str, Any] = {
        "name": name,
        "namespace": job["metadata"]["namespace"],
        "labels": dict(job["spec"]["template"]["metadata"]["labels"]),
        "annotations": {ANNOTATION_COMPLETION_INDEX: str(index)},
        "ownerReferences": [
            {"kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
        ],
        "creationTimestamp": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if deleting:
        meta["deletionTimestamp"] = T0.strftime("%Y-%m-%dT%H:%M:%SZ")
    status: dict[str, Any] = {"phase": phase}
    state: dict[str, Any] = {"running": {}}
    if phase in ("Succeeded", "Failed"):
        code = exit_code if exit_code is not None else (0 if phase == "Succeeded" else 1)
        term: dict[str, Any] = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        if message is not None:
            term["message"] = message
        state = {"terminated": term}
    elif waiting:
        state = {"waiting": {"reason": waiting, "message": f"{waiting}: registry says no"}}
    elif phase == "Pending":
        state = {"waiting": {"reason": "ContainerCreating"}}
    status["containerStatuses"] = [{"name": CONTAINER, "state": state}]
    if unschedulable_since is not None:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/6 nodes are available: 6 node(s) didn't match Pod's node "
                "affinity/selector.",
                "lastTransitionTime": unschedulable_since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        ]
        status.pop("containerStatuses")
    return {"metadata": meta, "status": status}


def summary(task: str, **fields: Any) -> str:
    return json.dumps({"task": task, "status": "SUCCESS", **fields})


def later(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)
