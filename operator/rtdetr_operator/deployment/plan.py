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

Each stage is a plain function of a :class:`~rtdetr_operator.deployment.rollout.Rollout`
(the typed state of one pass). The I/O half (:mod:`rtdetr_operator.deployment.reconcile`)
writes the status first, then deletes, creates and replaces, like the training's reconciler.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.conditions import timestamp
from rtdetr_operator.deployment import manifests
from rtdetr_operator.deployment.build_results import engine_verdict, repository_verdict
from rtdetr_operator.deployment.measured import engine_measurements, gap_message
from rtdetr_operator.deployment.names import component_of
from rtdetr_operator.deployment.plan_endpoint import sync_endpoint
from rtdetr_operator.deployment.plan_pools import (
    collect_jobs,
    finish,
    promote,
    prune_engines,
    sync_pools,
)
from rtdetr_operator.deployment.resolve import (
    InvalidDeploymentError,
    ResolvedPool,
    resolve,
)
from rtdetr_operator.deployment.rollout import Rollout, Settings, World
from rtdetr_operator.deployment.source import (
    Source,
    SourceNotReadyError,
    node_volume_problem,
    repository_key,
    resolve_source,
)
from rtdetr_operator.jobs import JobView, job_view
from rtdetr_operator.planning import Plan
from rtdetr_operator.pod_logs import running_fetch_step
from rtdetr_spec.sources.report import FetchProgress

__all__ = ["Settings", "World", "plan"]


def plan(world: World, settings: Settings) -> Plan:
    state = Rollout(world, settings)
    try:
        state.resolved = resolve(
            state.world.deployment,
            state.settings.catalog,
            state.settings.defaults,
            allow_node_volumes=state.settings.allow_node_volumes,
            measurements=engine_measurements(state.old),
        )
    except InvalidDeploymentError as e:
        state.problems.append(("InvalidSpec", "; ".join(e.problems)))
        return finish(state)
    source = _source(state)
    image = _build_image(state, source)
    if source is not None and image is not None:
        _sync_repository(state, source, image)
        _sync_engines(state, source, image)
    prune_engines(state)
    sync_pools(state, source)
    sync_endpoint(state)
    promote(state)
    collect_jobs(state)
    return finish(state)


def _source(state: Rollout) -> Source | None:
    assert state.resolved is not None
    try:
        source = resolve_source(state.resolved, state.world.training)
    except SourceNotReadyError as e:
        if e.stalled:
            state.problems.append((e.reason, e.message))
        else:
            state.progress.append(("Pending", e.message))
        return None
    refused = node_volume_problem(state.resolved, source, state.settings.allow_node_volumes)
    if refused:
        state.problems.append(("InvalidSpec", refused))
        return None
    return source


def _build_image(state: Rollout, source: Source | None) -> str | None:
    assert state.resolved is not None
    d = state.settings.defaults
    image = state.resolved.spec.build.image or (source.image if source else None) or d.build_image
    gpu_pools = state.resolved.gpu_pools
    state.status["triton"] = {
        "image": state.resolved.triton_image,
        # Only GPU pools serve engines; a CPU-only deployment has no TensorRT to report.
        "tensorrtVersion": state.resolved.tensorrt_version if gpu_pools else None,
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
        state.problems.append(
            (
                "NoBuildImage",
                f"spec.build.image: no image to prepare the model with; set it to an image "
                f"with {need}",
            )
        )
    return image


# ---------------------------------------------------------------- 1. read the source
def _sync_repository(state: Rollout, source: Source, image: str) -> None:
    r = state.resolved
    assert r is not None
    key = repository_key(source, r)
    rec = state.status.get("source")
    if not rec or rec.get("fingerprint") != key:
        building = [
            n for n, j in state.jobs.items() if component_of(j) == "engine" and state.active(j)
        ]
        if rec and building:
            state.progress.append(
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
        state.status["source"] = rec
    if rec.get("state") == "Succeeded":
        return
    job = state.jobs.get(rec["job"])
    if job is None:
        if rec["job"] in state.foreign_jobs:
            state.wait("Preparing", f"Job {rec['job']} of an earlier deployment is going")
            return
        if rec.get("state") == "Failed":
            state.event("Normal", "Retrying", f"repository Job {rec['job']} was deleted")
        state.changes.create.append(manifests.repository_job(r, source, key, image))
        rec.update(state="Pending", message=None)
        state.event("Normal", "JobCreated", f"reading {source.description} (Job {rec['job']})")
        state.progress.append(("Preparing", f"reading {source.description} (Job {rec['job']})"))
        return
    view = job_view(job, state.world.pods)
    shown = {key: rec.pop(key) for key in FETCH_FIELDS if key in rec}  # only while it runs
    if view.deleting:
        state.wait("Preparing", f"Job {view.name} is being deleted")
    elif view.succeeded:
        _repository_done(state, rec, view)
    elif view.failed:
        state.job_failed(rec, view, "RepositoryFailed", "reading the model source failed")
    else:
        rec["state"] = "Running" if view.running else "Pending"
        reading = f"reading {source.description} (Job {view.name})"
        if running_fetch_step(state.world.pods, view.name) is not None:
            reading += _fetching(rec, state.world.fetch_progress, shown)
            if state.settings.progress_interval > 0:  # no pod event while it downloads
                state.requeue(state.settings.progress_interval)
        state.progress.append(("Preparing", reading))
        state.check_stuck_job(view)


#: ``status.source`` fields of a download in progress.
FETCH_FIELDS = ("fetching", "transferred", "size", "percent")


def _fetching(rec: dict[str, Any], progress: FetchProgress | None, shown: dict[str, Any]) -> str:
    """Record the fetch step's progress in ``rec`` (``shown``: what the last read gave, kept
    when this reconcile read nothing); the words the Reconciling message adds."""
    rec["fetching"] = True
    if progress is None:
        rec.update(shown)
    else:
        rec["transferred"] = progress.done
        if progress.total is not None:
            rec.update(size=progress.total, percent=progress.percent)
    if "percent" in rec:
        return f": downloading the model, {rec['percent']} %"
    if "transferred" in rec:
        return f": downloading the model, {rec['transferred']} bytes so far"
    return ": downloading the model"


def _repository_done(state: Rollout, rec: dict[str, Any], view: JobView) -> None:
    r = state.resolved
    assert r is not None
    verdict = repository_verdict(view, r.gpus)
    s = verdict.summary
    if not verdict.ok or s is None:
        rec.update(state="Failed", message=verdict.problem)
        state.event("Warning", verdict.reason, str(verdict.problem))
        return
    revision = {
        "revision": s.revision,
        "onnxSha256": s.onnx_sha256,
        "source": rec["description"],
        "repository": s.artifacts["repository"],
        "onnx": s.artifacts["onnx"],
        "gpus": sorted(s.gpus),
        "preparedTime": timestamp(state.now),
    }
    rec.update(state="Succeeded", revision=s.revision, message=s.message)
    model, target = state.status.get("model"), state.status.get("target")
    if model and model.get("revision") == s.revision:
        state.status["model"] = revision
        if target:
            state.event("Normal", "RolloutCancelled", f"back to revision {s.revision}")
        state.status.pop("target", None)
        state.event(
            "Normal",
            "ModelUnchanged",
            f"{rec['description']} is the served revision {s.revision}; nothing to roll out",
        )
    else:
        state.status["target"] = revision
        state.event(
            "Normal",
            "NewModel",
            f"{rec['description']} is revision {s.revision} (sha256 {s.onnx_sha256[:16]}...);"
            + (" building its engines" if r.gpu_pools else " rolling it out (CPU only)"),
        )


def _sync_engines(state: Rollout, source: Source, image: str) -> None:
    r = state.resolved
    assert r is not None
    rev = state.status.get("target") or state.status.get("model")
    src = state.status.get("source") or {}
    if rev is None:
        return
    prepared = src.get("state") == "Succeeded" and src.get("revision") == rev["revision"]
    for pool in r.gpu_pools:
        gpu = pool.name
        e = state.engine_record(rev["revision"], gpu)
        if e["state"] == "Succeeded" or gpu not in rev.get("gpus", []) or not prepared:
            continue
        name = r.names.engine_job(gpu, rev["revision"])
        e["job"] = name
        job = state.jobs.get(name)
        if job is None:
            if name in state.foreign_jobs:
                state.wait("BuildingEngines", f"Job {name} of an earlier deployment is going")
                continue
            if e["state"] == "Failed":
                state.event("Normal", "Retrying", f"engine Job {name} was deleted")
            model_dir = f"{rev['repository']}/{r.spec.model_name}"
            state.changes.create.append(
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
            state.event("Normal", "JobCreated", f"building the {gpu} engine (Job {name})")
            continue
        view = job_view(job, state.world.pods)
        if view.deleting:
            continue
        if view.succeeded:
            _engine_done(state, e, view, pool, rev)
        elif view.failed:
            state.job_failed(e, view, "EngineBuildFailed", f"the {gpu} engine build failed")
        else:
            e["state"] = "Running" if view.running else "Pending"
            state.check_stuck_job(view)
    waiting = [
        e["gpu"]
        for e in state.status.get("engines", [])
        if e["revision"] == rev["revision"] and e["state"] in ("Pending", "Running")
    ]
    if waiting:
        state.progress.append(
            ("BuildingEngines", f"building engines of {rev['revision']}: {', '.join(waiting)}")
        )


def _engine_done(
    state: Rollout, e: dict[str, Any], view: JobView, pool: ResolvedPool, rev: dict[str, Any]
) -> None:
    r = state.resolved
    gpu = pool.gpu
    assert r is not None and gpu is not None
    verdict = engine_verdict(view, pool, rev["onnxSha256"])
    s = verdict.summary
    facts = s.engine if s else None
    if not verdict.ok or s is None or facts is None:
        e.update(state="Failed", message=verdict.problem, reason=verdict.reason)
        state.event("Warning", verdict.reason, str(verdict.problem))
        return
    e.update(
        state="Succeeded",
        tensorrtVersion=facts.tensorrt_version,
        computeCapability=facts.compute_capability,
        gpuDeviceName=facts.gpu_device_name,
        plan=s.artifacts.get("plan"),
        planSha256=facts.plan_sha256,
        buildSeconds=facts.build_seconds,
        completionTime=timestamp(state.now),
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
            state.event("Warning", "CapacityGap", gap)
    how = "reused" if s.reused else "built"
    state.event(
        "Normal",
        "EngineBuilt",
        f"{how} the {gpu.name} engine of {rev['revision']}: TensorRT "
        f"{facts.tensorrt_version}, compute capability {facts.compute_capability}, plan "
        f"sha256 {facts.plan_sha256[:16]}...",
    )
