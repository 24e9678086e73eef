"""The RTDETRDeployment state machine: observed world in, desired changes out. Pure.

The model moves through three stages, each gated by the one before, and the old model serves
until the new one is ready everywhere:

1. **Read the source** (repository Job). Whenever the source's identity or the set of GPU types
   changes, a Job reads the ONNX, checks it against its manifest and writes
   ``/models/<revision>/`` (revision = first 12 hex digits of the ONNX's sha256). The same
   sha256 as the served model means nothing to roll out; another one becomes ``status.target``.
2. **Build engines** (one Job per GPU type, pinned to that GPU). Each must report the pool's
   Triton image's TensorRT version, the GPU type's compute capability and the target's ONNX
   sha256; anything else is a failed build. A failed build stalls the rollout; pools keep
   serving ``status.model``. CPU pools build nothing: the repository is all they need.
3. **Roll out**: only when every GPU pool's engine for the target exists (and the repository
   has the CPU configs, for a CPU pool) are the pools' Deployments switched to the target
   revision (a rolling update: the old pods and their plans keep serving until new pods are
   ready). When every pool is rolled out the target becomes ``status.model``.

The I/O half (:mod:`rtdetr_operator.deployment.reconcile`) writes the status first, then
deletes, creates and replaces, like the training's reconciler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rtdetr_operator.children import owned_by, split_owned
from rtdetr_operator.conditions import timestamp
from rtdetr_operator.deployment import manifests
from rtdetr_operator.deployment.build_results import engine_verdict, repository_verdict
from rtdetr_operator.deployment.defaults import OperatorDefaults
from rtdetr_operator.deployment.measured import engine_measurements, gap_message
from rtdetr_operator.deployment.names import component_of
from rtdetr_operator.deployment.observe import failure
from rtdetr_operator.deployment.plan_endpoint import EndpointMixin
from rtdetr_operator.deployment.resolve import (
    InvalidDeploymentError,
    ResolvedDeployment,
    ResolvedPool,
    resolve,
)
from rtdetr_operator.deployment.source import (
    Source,
    SourceNotReadyError,
    node_volume_problem,
    repository_key,
    resolve_source,
)
from rtdetr_operator.jobs import JobView, job_view
from rtdetr_operator.planning import Plan
from rtdetr_serving.catalog import GpuCatalog


@dataclass(frozen=True)
class World:
    """Everything the reconciler read about one RTDETRDeployment, at one instant."""

    deployment: dict[str, Any]
    training: dict[str, Any] | None
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    apps: list[dict[str, Any]]
    services: list[dict[str, Any]]
    autoscalers: list[dict[str, Any]]
    budgets: list[dict[str, Any]]
    now: datetime
    #: HTTPRoutes, GRPCRoutes and Ingresses of the deployment's endpoint (each with its kind).
    routes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    catalog: GpuCatalog
    defaults: OperatorDefaults = field(default_factory=OperatorDefaults)
    #: Seconds a build or Triton pod may be unschedulable (or not pull its image) before Stalled.
    stuck_grace: float = 60.0
    #: Let CRs use node-level volume sources such as hostPath (policy.py; off by default).
    allow_node_volumes: bool = False


def plan(world: World, settings: Settings) -> Plan:
    return _Planner(world, settings).run()


class _Planner(EndpointMixin):
    def __init__(self, world: World, settings: Settings) -> None:
        super().__init__(world.deployment, world.pods, world.now, settings.stuck_grace)
        self.world, self.settings = world, settings
        self.jobs, self.foreign_jobs = split_owned(world.jobs, self.uid)
        self.apps, self.foreign_apps = split_owned(world.apps, self.uid)
        self.services, _ = split_owned(world.services, self.uid)
        self.hpas, _ = split_owned(world.autoscalers, self.uid)
        self.pdbs, _ = split_owned(world.budgets, self.uid)
        self.routes = {
            (o["kind"], o["metadata"]["name"]): o for o in world.routes if owned_by(o, self.uid)
        }
        self.problems: list[tuple[str, str]] = []
        self.progress: list[tuple[str, str]] = []
        self.resolved: ResolvedDeployment | None = None

    # ----------------------------------------------------------------------------- driver
    def run(self) -> Plan:
        try:
            self.resolved = resolve(
                self.world.deployment,
                self.settings.catalog,
                self.settings.defaults,
                allow_node_volumes=self.settings.allow_node_volumes,
                measurements=engine_measurements(self.old),
            )
        except InvalidDeploymentError as e:
            self.problems.append(("InvalidSpec", "; ".join(e.problems)))
            return self._finish()
        source = self._source()
        image = self._build_image(source)
        if source is not None and image is not None:
            self._sync_repository(source, image)
            self._sync_engines(source, image)
        self._prune_engines()
        self._sync_pools(source)
        self._sync_endpoint()
        self._promote()
        self._collect_jobs()
        return self._finish()

    def _source(self) -> Source | None:
        assert self.resolved is not None
        try:
            source = resolve_source(self.resolved, self.world.training)
        except SourceNotReadyError as e:
            if e.stalled:
                self.problems.append((e.reason, e.message))
            else:
                self.progress.append(("Pending", e.message))
            return None
        refused = node_volume_problem(self.resolved, source, self.settings.allow_node_volumes)
        if refused:
            self.problems.append(("InvalidSpec", refused))
            return None
        return source

    def _build_image(self, source: Source | None) -> str | None:
        assert self.resolved is not None
        d = self.settings.defaults
        image = (
            self.resolved.spec.build.image or (source.image if source else None) or d.build_image
        )
        gpu_pools = self.resolved.gpu_pools
        self.status["triton"] = {
            "image": self.resolved.triton_image,
            # Only GPU pools serve engines; a CPU-only deployment has no TensorRT to report.
            "tensorrtVersion": self.resolved.tensorrt_version if gpu_pools else None,
            **({"buildImage": image} if image else {}),
        }
        if image is None and source is not None:
            versions = sorted({p.tensorrt_version or "" for p in gpu_pools})
            need = (
                f"rtdetr-serve and TensorRT {', '.join(versions)} (the trainer image of the "
                "Triton image's NGC release)"
                if gpu_pools
                else "rtdetr-serve (the trainer image)"
            )
            self.problems.append(
                (
                    "NoBuildImage",
                    f"spec.build.image: no image to prepare the model with; set it to an image "
                    f"with {need}",
                )
            )
        return image

    # ---------------------------------------------------------------- 1. read the source
    def _sync_repository(self, source: Source, image: str) -> None:
        r = self.resolved
        assert r is not None
        key = repository_key(source, r)
        rec = self.status.get("source")
        if not rec or rec.get("fingerprint") != key:
            building = [
                n for n, j in self.jobs.items() if component_of(j) == "engine" and self._active(j)
            ]
            if rec and building:
                self.progress.append(
                    (
                        "BuildingEngines",
                        f"the model source changed; waiting for engine build(s) "
                        f"{', '.join(sorted(building))} before reading it again",
                    )
                )
                return
            rec = {
                "fingerprint": key,
                "description": source.description,
                "job": r.names.repository_job(key),
                "state": "Pending",
            }
            self.status["source"] = rec
        if rec.get("state") == "Succeeded":
            return
        job = self.jobs.get(rec["job"])
        if job is None:
            if rec["job"] in self.foreign_jobs:
                self._wait("Preparing", f"Job {rec['job']} of an earlier deployment is going")
                return
            if rec.get("state") == "Failed":
                self._event("Normal", "Retrying", f"repository Job {rec['job']} was deleted")
            self.changes.create.append(manifests.repository_job(r, source, key, image))
            rec.update(state="Pending", message=None)
            self._event("Normal", "JobCreated", f"reading {source.description} (Job {rec['job']})")
            self.progress.append(("Preparing", f"reading {source.description} (Job {rec['job']})"))
            return
        view = job_view(job, self.world.pods)
        if view.deleting:
            self._wait("Preparing", f"Job {view.name} is being deleted")
        elif view.succeeded:
            self._repository_done(rec, view)
        elif view.failed:
            self._job_failed(rec, view, "RepositoryFailed", "reading the model source failed")
        else:
            rec["state"] = "Running" if view.running else "Pending"
            self.progress.append(("Preparing", f"reading {source.description} (Job {view.name})"))
            self._check_stuck_job(view)

    def _repository_done(self, rec: dict[str, Any], view: JobView) -> None:
        r = self.resolved
        assert r is not None
        verdict = repository_verdict(view, r.gpus)
        s = verdict.summary
        if not verdict.ok or s is None:
            rec.update(state="Failed", message=verdict.problem)
            self._event("Warning", verdict.reason, str(verdict.problem))
            return
        revision = {
            "revision": s.revision,
            "onnxSha256": s.onnx_sha256,
            "source": rec["description"],
            "repository": s.artifacts["repository"],
            "onnx": s.artifacts["onnx"],
            "gpus": sorted(s.gpus),
            "preparedTime": timestamp(self.now),
        }
        rec.update(state="Succeeded", revision=s.revision, message=s.message)
        model, target = self.status.get("model"), self.status.get("target")
        if model and model.get("revision") == s.revision:
            self.status["model"] = revision
            if target:
                self._event("Normal", "RolloutCancelled", f"back to revision {s.revision}")
            self.status.pop("target", None)
            self._event(
                "Normal",
                "ModelUnchanged",
                f"{rec['description']} is the served revision {s.revision}; nothing to roll out",
            )
        else:
            self.status["target"] = revision
            self._event(
                "Normal",
                "NewModel",
                f"{rec['description']} is revision {s.revision} (sha256 {s.onnx_sha256[:16]}...);"
                + (" building its engines" if r.gpu_pools else " rolling it out (CPU only)"),
            )

    # ------------------------------------------------------------------ 2. build engines
    def _engine(self, revision: str, gpu: str) -> dict[str, Any]:
        engines = self.status.setdefault("engines", [])
        for e in engines:
            if e.get("revision") == revision and e.get("gpu") == gpu:
                return e  # type: ignore[no-any-return]
        rec = {"revision": revision, "gpu": gpu, "state": "Pending"}
        engines.append(rec)
        return rec

    def _sync_engines(self, source: Source, image: str) -> None:
        r = self.resolved
        assert r is not None
        rev = self.status.get("target") or self.status.get("model")
        src = self.status.get("source") or {}
        if rev is None:
            return
        prepared = src.get("state") == "Succeeded" and src.get("revision") == rev["revision"]
        for pool in r.gpu_pools:
            gpu = pool.name
            e = self._engine(rev["revision"], gpu)
            if e["state"] == "Succeeded" or gpu not in rev.get("gpus", []) or not prepared:
                continue
            name = r.names.engine_job(gpu, rev["revision"])
            e["job"] = name
            job = self.jobs.get(name)
            if job is None:
                if name in self.foreign_jobs:
                    self._wait("BuildingEngines", f"Job {name} of an earlier deployment is going")
                    continue
                if e["state"] == "Failed":
                    self._event("Normal", "Retrying", f"engine Job {name} was deleted")
                model_dir = f"{rev['repository']}/{r.spec.model_name}"
                self.changes.create.append(
                    manifests.engine_job(
                        r,
                        pool,
                        source,
                        revision=rev["revision"],
                        onnx=rev["onnx"],
                        model_dir=model_dir,
                        image=image,
                    )
                )
                e.update(state="Pending", message=None, reason=None)
                self._event("Normal", "JobCreated", f"building the {gpu} engine (Job {name})")
                continue
            view = job_view(job, self.world.pods)
            if view.deleting:
                continue
            if view.succeeded:
                self._engine_done(e, view, pool, rev)
            elif view.failed:
                self._job_failed(e, view, "EngineBuildFailed", f"the {gpu} engine build failed")
            else:
                e["state"] = "Running" if view.running else "Pending"
                self._check_stuck_job(view)
        waiting = [
            e["gpu"]
            for e in self.status.get("engines", [])
            if e["revision"] == rev["revision"] and e["state"] in ("Pending", "Running")
        ]
        if waiting:
            self.progress.append(
                ("BuildingEngines", f"building engines of {rev['revision']}: {', '.join(waiting)}")
            )

    def _engine_done(
        self, e: dict[str, Any], view: JobView, pool: ResolvedPool, rev: dict[str, Any]
    ) -> None:
        r = self.resolved
        gpu = pool.gpu
        assert r is not None and gpu is not None
        verdict = engine_verdict(view, pool, rev["onnxSha256"])
        s = verdict.summary
        facts = s.engine if s else None
        if not verdict.ok or s is None or facts is None:
            e.update(state="Failed", message=verdict.problem, reason=verdict.reason)
            self._event("Warning", verdict.reason, str(verdict.problem))
            return
        e.update(
            state="Succeeded",
            tensorrtVersion=facts.tensorrt_version,
            computeCapability=facts.compute_capability,
            gpuDeviceName=facts.gpu_device_name,
            plan=s.artifacts.get("plan"),
            planSha256=facts.plan_sha256,
            buildSeconds=facts.build_seconds,
            completionTime=timestamp(self.now),
            message=s.message,
        )
        if s.timing is not None:
            best = s.timing.best
            e.update(
                measuredBatch=best.batch,
                measuredMeanMs=best.mean_ms,
                measuredP99Ms=best.p99_ms,
                measuredThroughputIps=best.throughput_ips,
            )
            gap = gap_message(gpu, best.throughput_ips)
            if gap:
                self._event("Warning", "CapacityGap", gap)
        how = "reused" if s.reused else "built"
        self._event(
            "Normal",
            "EngineBuilt",
            f"{how} the {gpu.name} engine of {rev['revision']}: TensorRT "
            f"{facts.tensorrt_version}, compute capability {facts.compute_capability}, plan "
            f"sha256 {facts.plan_sha256[:16]}...",
        )

    def _job_failed(self, rec: dict[str, Any], view: JobView, reason: str, what: str) -> None:
        first = rec.get("state") != "Failed"
        rec.update(state="Failed", message=rec.get("message") if not first else failure(view))
        if "gpu" in rec:
            rec["reason"] = reason
        if first:
            self._event("Warning", reason, f"{what}: {rec['message']}")

    # ------------------------------------------------------------------------ helpers
    def _check_stuck_job(self, view: JobView) -> None:
        stuck = view.stuck()
        if stuck is not None:
            self._stuck(stuck.reason, stuck.message, stuck.since)

    def _stuck(self, reason: str, message: str, since: datetime | None) -> None:
        if self._past_grace(since):
            self.problems.append((reason, message))

    def _wait(self, phase: str, message: str) -> None:
        self.progress.append((phase, message))
        self._requeue(2.0)
