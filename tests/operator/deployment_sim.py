"""Test world for RTDETRDeployment: CR bodies, build summaries, and an API server stand-in.

:class:`DeploymentSim` applies each plan the way reconcile.py does (status, deletes, creates,
replaces) and plays the controllers the planner reacts to: the Job controller (a test finishes a
Job with the termination message its command would write) and the Deployment controller
(:meth:`DeploymentSim.roll_out` brings a Deployment's status up to its template, as kwok's ready
pods would). Summaries come from :mod:`tests.builders` (the real ``ServingTaskSummary``, as the
CLI writes it).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtdetr_operator.conditions import condition
from rtdetr_operator.deployment.plan import Settings, World, plan
from rtdetr_operator.planning import Plan
from rtdetr_serving.catalog import load_catalog
from rtdetr_serving.task_summary import revision_of
from tests.builders import engine_summary
from tests.builders import repository_summary as repo_summary
from tests.operator.factories import T0, finish_job, job_from

CATALOG = load_catalog(use_env=False)
CC = {g.name: g.compute_capability for g in CATALOG.gpus}


def deployment(name: str = "wh", *, generation: int = 1, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "rtdetr.dev/v1alpha1",
        "kind": "RTDETRDeployment",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "uid": f"uid-{name}",
            "generation": generation,
            "resourceVersion": "1",
        },
        "spec": {
            "model": {"training": {"name": "warehouse-r50"}},
            "build": {"image": "registry.local/rtdetr-trainer:1.0"},
            "pools": [
                {"gpu": "H100", "minReplicas": 1, "maxReplicas": 4},
                {"gpu": "L4", "streams": 36, "fps": 30},
            ],
        },
    }
    body["spec"].update(spec)
    return body


def trained(
    name: str = "warehouse-r50",
    *,
    uid: str = "train-uid-1",
    phase: str = "Succeeded",
    artifacts: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An RTDETRTraining as the training reconciler leaves it after export."""
    return {
        "apiVersion": "rtdetr.dev/v1alpha1",
        "kind": "RTDETRTraining",
        "metadata": {"name": name, "namespace": "ml", "uid": uid},
        "spec": {
            "image": "registry.local/rtdetr-trainer:1.0",
            "storage": {"results": {"claimName": "rtdetr-results"}},
        },
        "status": {
            "phase": phase,
            "completionTime": "2026-06-02T11:00:00Z",
            "artifacts": artifacts
            if artifacts is not None
            else {
                "onnx": f"/results/export/{name}.onnx",
                "manifest": f"/results/export/{name}.manifest.json",
            },
            "resultsVolume": {
                "claimName": "rtdetr-results",
                "subPath": name,
                "mountPath": "/results",
            },
        },
    }


def _finished_pod(job: dict[str, Any], ok: bool, message: str | None, exit_code: int) -> dict:
    name = f"{job['metadata']['name']}-abcde"
    term: dict[str, Any] = {
        "exitCode": 0 if ok else exit_code,
        "reason": "Completed" if ok else "Error",
    }
    if message is not None:
        term["message"] = message
    return {
        "metadata": {
            "name": name,
            "namespace": job["metadata"]["namespace"],
            "labels": dict(job["spec"]["template"]["metadata"]["labels"]),
            "ownerReferences": [
                {"kind": "Job", "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}
            ],
            "creationTimestamp": T0.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "status": {
            "phase": "Succeeded" if ok else "Failed",
            "containerStatuses": [{"name": "rtdetr", "state": {"terminated": term}}],
        },
    }


@dataclass
class DeploymentSim:
    """An API server stand-in applying RTDETRDeployment plans."""

    obj: dict[str, Any]
    training: dict[str, Any] | None = field(default_factory=trained)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    kinds: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {
            k: {}
            for k in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")
        }
    )
    now: datetime = T0
    settings: Settings = field(default_factory=lambda: Settings(catalog=CATALOG, stuck_grace=30))
    last: Plan | None = None
    counter: int = 0
    events: list[tuple[str, str]] = field(default_factory=list)

    def world(self) -> World:
        return World(
            deployment=copy.deepcopy(self.obj),
            training=copy.deepcopy(self.training),
            jobs=[copy.deepcopy(j) for j in self.jobs.values()],
            pods=[copy.deepcopy(p) for p in self.pods.values()],
            apps=[copy.deepcopy(o) for o in self.kinds["Deployment"].values()],
            services=[copy.deepcopy(o) for o in self.kinds["Service"].values()],
            autoscalers=[copy.deepcopy(o) for o in self.kinds["HorizontalPodAutoscaler"].values()],
            budgets=[copy.deepcopy(o) for o in self.kinds["PodDisruptionBudget"].values()],
            now=self.now,
        )

    def step(self) -> Plan:
        p = plan(self.world(), self.settings)
        self.obj["status"] = copy.deepcopy(p.status)
        for o in p.delete:
            name = o["metadata"]["name"]
            if o["kind"] == "Job":
                self.jobs.pop(name, None)
                for pod_name in [n for n in self.pods if n.startswith(f"{name}-")]:
                    self.pods.pop(pod_name)
            else:
                self.kinds[o["kind"]].pop(name, None)
        for o in p.create:
            name = o["metadata"]["name"]
            if o["kind"] == "Job":
                self.jobs.setdefault(name, job_from(o))
            else:
                self.counter += 1
                live = copy.deepcopy(o)
                live["metadata"].update(
                    uid=f"{o['kind']}-{name}", resourceVersion=str(self.counter)
                )
                live["metadata"]["generation"] = 1
                self.kinds[o["kind"]].setdefault(name, live)
        for o in p.replace:
            live = self.kinds[o["kind"]][o["metadata"]["name"]]
            assert o["metadata"]["resourceVersion"] == live["metadata"]["resourceVersion"]
            new = copy.deepcopy(o)
            self.counter += 1
            new["metadata"].update(
                uid=live["metadata"]["uid"],
                resourceVersion=str(self.counter),
                generation=live["metadata"].get("generation", 1) + 1,
            )
            new["status"] = live.get("status", {})
            self.kinds[o["kind"]][o["metadata"]["name"]] = new
        self.last = p
        self.events += [(e.reason, e.message) for e in p.events]
        return p

    def settle(self, steps: int = 4) -> Plan:
        p = self.step()
        for _ in range(steps - 1):
            p = self.step()
        return p

    # -- controllers ------------------------------------------------------------------------
    def finish(self, name: str, message: str | None, *, ok: bool = True, exit_code: int = 1):
        job = finish_job(self.jobs[name], ok)
        self.jobs[name] = job
        pod = _finished_pod(job, ok, message, exit_code)
        self.pods[pod["metadata"]["name"]] = pod

    def roll_out(self, name: str | None = None, *, available: int | None = None) -> None:
        """The Deployment controller brought ``name`` (or every Deployment) to its template."""
        for n, d in self.kinds["Deployment"].items():
            if name is not None and n != name:
                continue
            want = d["spec"]["replicas"]
            have = want if available is None else available
            d["status"] = {
                "observedGeneration": d["metadata"]["generation"],
                "replicas": want,
                "updatedReplicas": want,
                "readyReplicas": have,
                "availableReplicas": have,
            }

    def jobs_of(self, component: str) -> list[str]:
        return sorted(
            n
            for n, j in self.jobs.items()
            if j["metadata"]["labels"].get("rtdetr.dev/component") == component
        )

    def revision_of(self, name: str) -> str | None:
        d = self.kinds["Deployment"].get(name)
        if d is None:
            return None
        return d["spec"]["template"]["metadata"]["labels"].get("rtdetr.dev/revision")

    @property
    def status(self) -> dict[str, Any]:
        return self.obj["status"]

    def cond(self, type_: str) -> dict[str, Any]:
        c = condition(self.status, type_)
        assert c is not None, type_
        return c

    def serve(self, onnx_sha: str, gpus: tuple[str, ...] = ("H100", "L4")) -> None:
        """Drive a whole rollout of ``onnx_sha``: repository, engines, Deployments."""
        self.step()
        (repo,) = [n for n in self.jobs_of("repository") if self.jobs[n].get("status") == {}]
        self.finish(repo, repo_summary(onnx_sha, list(gpus)))
        self.step()
        rev = revision_of(onnx_sha)
        for gpu in (g for g in gpus if g != "CPU"):  # a CPU pool has no engine to build
            name = next(
                n for n in self.jobs_of("engine") if n.endswith(rev[:8]) and f"-{gpu.lower()}-" in n
            )
            self.finish(name, engine_summary(onnx_sha, gpu))
        self.step()
        self.roll_out()
        self.settle(2)
