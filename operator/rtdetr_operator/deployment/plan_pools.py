"""Stage 3 of the RTDETRDeployment state machine: pools, promotion, cleanup and the status.

Plain functions of a :class:`~rtdetr_operator.deployment.rollout.Rollout` (pure, like every stage).
Each pool serves the target revision only once *every* pool has what it needs for it (its
engine for a GPU pool; the repository's CPU configs for a CPU pool), so all pools switch model
together and clients see one model; else the served revision, else nothing yet. A CPU pool has
no capacity figure: its status has no streams fields, and the deployment's ``capacityStreams``
sums the GPU pools (absent when there are none).
A child is replaced when its ``rtdetr.dev/spec-hash`` differs from the builder's; a Deployment
keeps its live replica count when an autoscaler owns it.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.conditions import Health
from rtdetr_operator.deployment import pool_manifests
from rtdetr_operator.deployment.conditions import deployment_conditions
from rtdetr_operator.deployment.measured import catalog_fields, engine_measurements, measured_fields
from rtdetr_operator.deployment.names import ANNOTATION_SPEC_HASH, LABEL_COMPONENT, LABEL_POOL
from rtdetr_operator.deployment.observe import RolloutView, rollout_view, stuck_pod
from rtdetr_operator.deployment.resolve import ResolvedPool
from rtdetr_operator.deployment.rollout import Rollout
from rtdetr_operator.deployment.source import Source
from rtdetr_operator.planning import Plan

#: When several things are in progress, the status names the earliest stage.
PHASE_ORDER = ("Pending", "Preparing", "BuildingEngines", "RollingOut")


def _hash(obj: dict[str, Any] | None) -> str | None:
    if obj is None:
        return None
    return (obj["metadata"].get("annotations") or {}).get(ANNOTATION_SPEC_HASH)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["metadata"].get("labels") or {}


def sync_pools(state: Rollout, source: Source | None) -> None:
    r = state.resolved
    if r is None:
        return
    model = state.status.get("model")
    target_ready = state.target_ready()
    old_pools = {p.get("gpu"): p for p in state.old.get("pools") or []}
    statuses = []
    for pool in r.pools:
        gpu = pool.name
        live = state.apps.get(r.names.pool(gpu))
        revision = None
        if target_ready:
            revision = state.status["target"]["revision"]
        elif model and state.has(model, pool):
            revision = model["revision"]
        if revision is not None and source is not None:
            _ensure_pool(state, pool, source, revision, live)
        view = rollout_view(live) if live is not None else None
        if view is not None and view.stuck_message:
            state.problems.append(
                ("RolloutStuck", f"pool {gpu} (Deployment {view.name}): {view.stuck_message}")
            )
        _check_pods(state, pool)
        statuses.append(_pool_status(state, pool, view, old_pools.get(gpu)))
    _remove_pools(state, {p.name.lower() for p in r.pools})
    state.status["pools"] = statuses


def _ensure_pool(
    state: Rollout, pool: ResolvedPool, source: Source, revision: str, live: dict[str, Any] | None
) -> None:
    r = state.resolved
    assert r is not None
    name = r.names.pool(pool.name)
    scaled = r.spec.autoscaling.enabled
    want = pool_manifests.triton_deployment(r, pool, source, revision, replicas=pool.min_replicas)
    if live is None and name in state.foreign_apps:
        state.wait("RollingOut", f"Deployment {name} exists and is not this deployment's")
        return
    stale = live is not None and (
        _hash(live) != _hash(want)
        or (not scaled and (live.get("spec") or {}).get("replicas") != pool.min_replicas)
    )
    if live is None:
        state.changes.create.append(want)
    elif stale:
        want["metadata"]["resourceVersion"] = live["metadata"].get("resourceVersion")
        if scaled:
            live_replicas = (live.get("spec") or {}).get("replicas")
            want["spec"]["replicas"] = live_replicas or want["spec"]["replicas"]
        state.changes.replace.append(want)
        old_rev = rollout_view(live).revision
        if old_rev and old_rev != revision:
            state.event(
                "Normal",
                "RollingOut",
                f"pool {pool.name}: rolling Deployment {name} from {old_rev} to {revision}",
            )
    state.converge(pool_manifests.service(r, pool), state.services.get(name))
    state.converge(pool_manifests.disruption_budget(r, pool), state.pdbs.get(name))
    if scaled:
        state.converge(pool_manifests.autoscaler(r, pool), state.hpas.get(name))
    elif name in state.hpas:
        state.changes.delete.append(state.hpas[name])


def _check_pods(state: Rollout, pool: ResolvedPool) -> None:
    r = state.resolved
    assert r is not None
    for pod in state.world.pods:
        lab = _labels(pod)
        if lab.get(LABEL_COMPONENT) != "triton" or lab.get(LABEL_POOL) != pool.name.lower():
            continue
        stuck = stuck_pod(pod)
        if stuck is not None:
            state.stuck(stuck.reason, f"pool {pool.name}: {stuck.message}", stuck.since)


def _pool_status(
    state: Rollout, pool: ResolvedPool, view: RolloutView | None, old: dict[str, Any] | None
) -> dict[str, Any]:
    r = state.resolved
    assert r is not None
    revision = (old or {}).get("revision")
    if view is not None and view.rolled_out:
        revision = view.revision
    ready = view.ready if view else 0
    per_replica = pool.streams_per_replica
    out: dict[str, Any] = {
        "gpu": pool.name,
        "deployment": r.names.pool(pool.name),
        "backend": pool.backend,
        "image": pool.image,
        "replicas": view.replicas if view else 0,
        "readyReplicas": ready,
        "updatedReplicas": view.updated if view else 0,
        "desiredReplicas": view.desired if view else 0,
        "minReplicas": pool.min_replicas,
        "maxReplicas": pool.max_replicas,
        # None for a CPU pool: no figure exists, and 0 would claim one.
        "fps": pool.fps,
        "streamsPerReplica": per_replica,
        "capacityStreams": per_replica * ready if per_replica is not None else None,
        "capacitySource": pool.capacity_source,
        "endpoints": pool_manifests.endpoints(r, pool) if view else None,
    }
    if revision:
        out["revision"] = revision
    if pool.target_streams is not None:
        out["targetStreams"] = pool.target_streams
    out.update(catalog_fields(pool.gpu))
    out.update(measured_fields(engine_measurements(state.status).get(pool.name)))
    return {k: v for k, v in out.items() if v is not None}


def _remove_pools(state: Rollout, keep: set[str]) -> None:
    for objs in (state.apps, state.services, state.hpas, state.pdbs):
        for obj in objs.values():
            lab = _labels(obj)
            if lab.get(LABEL_COMPONENT) != "triton" or lab.get(LABEL_POOL) in keep:
                continue
            if obj["metadata"].get("deletionTimestamp") or obj in state.changes.delete:
                continue
            state.changes.delete.append(obj)
            if obj.get("kind", "Deployment") == "Deployment" and objs is state.apps:
                state.event("Normal", "PoolRemoved", f"deleting pool {lab.get(LABEL_POOL)}")


# ------------------------------------------------------------------------ promote
def promote(state: Rollout) -> None:
    r, target = state.resolved, state.status.get("target")
    if r is None or not target or not state.target_ready():
        return
    rev = target["revision"]
    pending = []
    for pool in r.pools:
        live = state.apps.get(r.names.pool(pool.name))
        view = rollout_view(live) if live is not None else None
        if view is None or view.revision != rev or not view.rolled_out:
            have = f"{view.updated}/{view.desired} updated" if view else "not created"
            pending.append(f"{pool.name} ({have})")
    if pending:
        state.progress.append(("RollingOut", f"rolling out {rev}: {', '.join(pending)}"))
        return
    previous = (state.status.get("model") or {}).get("revision")
    state.status["model"] = target
    state.status.pop("target", None)
    # The status that says Ready on ``rev`` lists only its engines, and the Jobs of the old
    # ones are collected in this same pass, not one reconcile later.
    state.status["engines"] = [e for e in state.status.get("engines") or [] if e["revision"] == rev]
    state.event(
        "Normal",
        "RolloutComplete",
        f"every pool serves {rev}" + (f" (was {previous})" if previous else ""),
    )


# ------------------------------------------------------------ cleanup and status
def prune_engines(state: Rollout) -> None:
    """Forget engines of revisions and GPU types no longer wanted; failures are problems."""
    keep = {(state.status.get(k) or {}).get("revision") for k in ("model", "target")} - {None}
    gpus = {p.name for p in state.resolved.gpu_pools} if state.resolved else set()
    engines = [
        e for e in state.status.get("engines", []) if e["revision"] in keep and e["gpu"] in gpus
    ]
    state.status["engines"] = engines
    for e in engines:
        if e["state"] == "Failed":
            state.problems.append(
                (
                    e.get("reason") or "EngineBuildFailed",
                    f"the {e['gpu']} engine of {e['revision']} failed: {e.get('message')}",
                )
            )
    src = state.status.get("source") or {}
    if src.get("state") == "Failed":
        state.problems.append(("RepositoryFailed", f"reading the model failed: {src['message']}"))


def collect_jobs(state: Rollout) -> None:
    """Delete Jobs nothing in the status refers to (superseded sources and revisions)."""
    referenced = {(state.status.get("source") or {}).get("job")}
    referenced |= {e.get("job") for e in state.status.get("engines") or []}
    for name, job in state.jobs.items():
        if name not in referenced and not job["metadata"].get("deletionTimestamp"):
            state.changes.delete.append(job)


def _ready(state: Rollout) -> tuple[bool, str]:
    r, model = state.resolved, state.status.get("model")
    if r is None or not model or state.status.get("target"):
        return False, "no model is served yet"
    waiting = []
    for pool in r.pools:
        live = state.apps.get(r.names.pool(pool.name))
        view = rollout_view(live) if live is not None else None
        if view is None or view.revision != model["revision"] or not view.rolled_out:
            waiting.append(f"{pool.name} rolling out")
        elif view.available < pool.min_replicas:
            waiting.append(f"{pool.name} {view.available}/{pool.min_replicas} available")
    if waiting:
        return False, f"serving {model['revision']}; waiting for pools: {', '.join(waiting)}"
    capacity = _capacity(state.status.get("pools") or [])
    cpu = [p.name for p in r.pools if p.is_cpu]
    said = f"{capacity} camera streams of capacity" if capacity is not None else ""
    if cpu:
        said += (", plus " if said else "") + "CPU (no capacity figure)"
    return True, f"serving {model['revision']} on {len(r.pools)} pool(s), {said}"


def finish(state: Rollout) -> Plan:
    st = state.status
    ready = False
    if state.problems:
        reason = state.problems[0][0]
        message = "; ".join(dict.fromkeys(m for _, m in state.problems))
        if st.get("model"):
            message += f" (still serving {st['model']['revision']})"
        health, phase = Health(reason, message, stalled=True), "Stalled"
    else:
        ready, message = _ready(state)
        if ready:
            health, phase = Health("Ready", message), "Ready"
        elif state.progress:
            phase = min(state.progress, key=lambda p: PHASE_ORDER.index(p[0]))[0]
            text = "; ".join(dict.fromkeys(m for _, m in state.progress))
            health = Health(phase, text)
        else:
            health, phase = Health("RollingOut", message), "RollingOut"
    st["phase"] = phase
    st["observedGeneration"] = state.generation
    st["conditions"] = deployment_conditions(
        st.get("conditions") or [],
        ready=ready,
        health=health,
        now=state.now,
        generation=state.generation,
    )
    pools = st.get("pools") or []
    model = (st.get("model") or {}).get("revision")
    ready_pools = sum(1 for p in pools if model and p.get("revision") == model)
    st["readyPools"] = (
        f"{ready_pools}/{len(state.resolved.pools) if state.resolved else len(pools)}"
    )
    st["replicas"] = (
        f"{sum(p.get('readyReplicas', 0) for p in pools)}/"
        f"{sum(p.get('desiredReplicas', 0) for p in pools)}"
    )
    st["capacityStreams"] = _capacity(pools)
    if not st.get("target"):
        st.pop("target", None)
    if state.old.get("phase") != phase:
        kind = "Warning" if phase == "Stalled" else "Normal"
        state.event(kind, phase, health.message)
    state.changes.status = _compact(st)
    return state.changes


def _capacity(pools: list[dict[str, Any]]) -> int | None:
    """Streams over the pools with a capacity figure; None when none has one."""
    figures = [p["capacityStreams"] for p in pools if p.get("capacityStreams") is not None]
    return sum(figures) if figures else None


def _compact(value: Any) -> Any:
    """The status without null fields (unset reads the same, and compares equal next time)."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value
