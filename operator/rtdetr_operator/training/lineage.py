"""``spec.resumeFrom`` / ``spec.initFrom``: which checkpoint of another run a training starts from.

A new RTDETRTraining never finds an earlier object's checkpoints by itself (its results folder is
``<name>-<uid prefix>``, see :func:`rtdetr_operator.training.resolve.results_folder`); continuing
from another run is written in the spec and resolved here, once, into a record in
``status.startedFrom``. Later reconciles read the record, not the world, so deleting the source
run after this one started changes nothing.

* ``resume``: the trainer restores weights, optimizer, EMA, epoch and step from the checkpoint
  while the run's own folder holds none (``RTDETR_RESUME_FROM`` on the training container); a
  restarted group resumes from its own latest instead, so progress is never thrown away.
* ``init``: ``train.pretrained_model_path`` in the resolved experiment: weights only, a new
  schedule from epoch 0.

A source on another volume (another run's results folder, ``pvc://<claim>/<path>``) is mounted
read-only at ``/from`` on the training pods only. Pure functions: the referenced RTDETRTraining
comes in as a dict (or None when it does not exist).
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from typing import TYPE_CHECKING, Any

import yaml

from rtdetr_operator.api.training import RunReference
from rtdetr_operator.api.training_status import TERMINAL_PHASES
from rtdetr_operator.training.experiment_source import pinned_configmap, record_source
from rtdetr_operator.training.resolve import (
    LATEST_CHECKPOINT,
    InvalidTrainingError,
    Lineage,
    ResolvedTraining,
    resolve,
)
from rtdetr_spec import ExperimentSpec, apply_override

if TYPE_CHECKING:
    from rtdetr_operator.training.world import World

#: Where a source on another volume is mounted (read-only) in training pods.
FROM_MOUNT = "/from"
#: The trainer resumes from this file while its own results folder holds no checkpoint.
RESUME_ENV = "RTDETR_RESUME_FROM"
_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class SourceNotReadyError(Exception):
    """The source cannot be resolved yet (not found, not finished): Stalled, retried."""


def reference(r: ResolvedTraining) -> tuple[str, str, RunReference] | None:
    """``(mode, field, reference)`` of the spec, or None when the run starts on its own."""
    if r.spec.resume_from is not None:
        return "resume", "spec.resumeFrom", r.spec.resume_from
    if r.spec.init_from is not None:
        return "init", "spec.initFrom", r.spec.init_from
    return None


def spec_problems(r: ResolvedTraining) -> list[str]:
    """What is wrong with the reference on its own (permanent: the spec is immutable)."""
    ref = reference(r)
    if ref is None:
        return []
    mode, field, value = ref
    out: list[str] = []
    own = "resume_training_checkpoint_path" if mode == "resume" else "pretrained_model_path"
    if getattr(r.experiment.train, own):
        out.append(f"{field}: spec.experiment.train.{own} is set too; keep only one of them")
    if value.training is not None and value.training == r.name:
        out.append(f"{field}.training: a run cannot start from itself")
    if value.checkpoint is not None:
        try:
            _checkpoint(r, value.checkpoint)
        except ValueError as e:
            out.append(f"{field}.checkpoint: {e}")
    return out


def resolve_all(
    world: World, status: dict[str, Any], allow_node_volumes: bool
) -> tuple[ResolvedTraining, str | None]:
    """The world's training resolved: its experiment (inline, or the ConfigMap text the run is
    pinned to) and where it starts from; records status.experimentSource / startedFrom and
    returns a warning when the referenced ConfigMap changed after the run started.

    Raises:
        InvalidTrainingError: fixable (reason SourceNotReady) while the source run is missing
            or unfinished; permanent for a reference that can never work.
    """
    configmap, drift = pinned_configmap(status, world.experiment_configmap, world.configmap)
    r = resolve(
        world.training, allow_node_volumes=allow_node_volumes, experiment_configmap=configmap
    )
    warning = record_source(status, r.experiment_source, world.experiment_configmap, drift)
    if status.get("phase") in TERMINAL_PHASES:
        return r, warning  # a finished run never waits for its source again
    problems = spec_problems(r)
    if problems:
        raise InvalidTrainingError(problems)
    try:
        found = resolve_lineage(r, status.get("startedFrom"), world.source)
    except SourceNotReadyError as e:
        raise InvalidTrainingError([str(e)], fixable=True, reason="SourceNotReady") from None
    if found is not None:
        status["startedFrom"] = found.record()
    return with_lineage(r, found), warning


def resolve_lineage(
    r: ResolvedTraining, recorded: dict[str, Any] | None, source: dict[str, Any] | None
) -> Lineage | None:
    """The start of ``r``: the status record if there is one, else resolved from ``source``.

    Raises:
        SourceNotReadyError: the named RTDETRTraining does not exist or has not finished yet.
    """
    ref = reference(r)
    if ref is None:
        return None
    if recorded:
        return Lineage.from_record(recorded)
    mode, field, value = ref
    if value.checkpoint is not None:
        path, volume = _checkpoint(r, value.checkpoint)
        return Lineage(mode, value.checkpoint, path, volume)
    return _from_training(r, mode, field, str(value.training), source)


def _checkpoint(r: ResolvedTraining, text: str) -> tuple[str, dict[str, Any] | None]:
    """``(path in the pod, volume to mount at /from or None)`` of a checkpoint reference."""
    if text.startswith("pvc://"):
        claim, _, rest = text[len("pvc://") :].partition("/")
        if not _CLAIM.match(claim) or not rest:
            raise ValueError(f"{text!r} is not pvc://<claim>/<path to the checkpoint>")
        rel = posixpath.normpath(rest)
        if rel.startswith(".."):
            raise ValueError(f"{text!r} leaves the claim")
        volume = {"persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        return f"{FROM_MOUNT}/{rel}", volume
    path = posixpath.normpath(text)
    storage = r.spec.storage
    mounts = [("results", storage.results.mount_path)]
    if storage.data is not None:
        mounts.insert(0, ("data", storage.data.mount_path))
    for _, mount in mounts:
        if path.startswith(mount.rstrip("/") + "/"):
            return path, None
    under = " or ".join(f"spec.storage.{which}.mountPath ({mount})" for which, mount in mounts)
    raise ValueError(
        f"{text!r} is not under {under}; use pvc://<claim>/<path> for a file on another claim"
    )


def _from_training(
    r: ResolvedTraining, mode: str, field: str, name: str, source: dict[str, Any] | None
) -> Lineage:
    where = f"{field}.training: RTDETRTraining {name}"
    if source is None:
        raise SourceNotReadyError(f"{where} does not exist in namespace {r.namespace}")
    status = source.get("status") or {}
    phase = status.get("phase") or "Pending"
    volume_rec = status.get("resultsVolume")
    if phase not in (*TERMINAL_PHASES, "Suspended") or not volume_rec:
        why = f"{where} is {phase}; waiting until it has finished or is suspended"
        raise SourceNotReadyError(why)
    results = ((source.get("spec") or {}).get("storage") or {}).get("results") or {}
    if results.get("claimName"):
        volume: dict[str, Any] = {
            "persistentVolumeClaim": {"claimName": results["claimName"], "readOnly": True}
        }
    else:
        volume = dict(results.get("volume") or {})
    mount = str(volume_rec.get("mountPath") or "/results").rstrip("/")
    trained = (status.get("artifacts") or {}).get("checkpoint")
    experiment = (source.get("spec") or {}).get("experiment") or {}
    results_dir = str(experiment.get("results_dir") or "").rstrip("/")
    if trained and "/train/" in trained:  # <results_dir>/train/<file>, whatever the spec's form
        results_dir = trained.rsplit("/train/", 1)[0]
    if not results_dir.startswith(mount):
        results_dir = mount
    wanted = f"{results_dir}/train/{LATEST_CHECKPOINT}"
    if mode == "init" and trained:
        wanted = trained
    if not (wanted == mount or wanted.startswith(mount + "/")):
        why = f"{where}: checkpoint {wanted} is not on its results volume ({mount})"
        raise SourceNotReadyError(why)
    volume["subPath"] = volume_rec.get("subPath") or ""
    path = FROM_MOUNT + wanted[len(mount) :]
    return Lineage(mode, f"training/{name}", path, volume)


def pod_volume(lineage: Lineage | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(volumes, mounts)`` the training pod adds for ``lineage`` (none for a local file)."""
    if lineage is None or lineage.volume is None:
        return [], []
    source = dict(lineage.volume)
    sub_path = source.pop("subPath", "")
    mount: dict[str, Any] = {"name": "from", "mountPath": FROM_MOUNT, "readOnly": True}
    if sub_path:
        mount["subPath"] = sub_path
    return [{"name": "from", **source}], [mount]


def resume_env(lineage: Lineage | None) -> list[dict[str, Any]]:
    """The training container's ``RTDETR_RESUME_FROM`` (resume mode only)."""
    if lineage is None or lineage.mode != "resume":
        return []
    return [{"name": RESUME_ENV, "value": lineage.checkpoint}]


def with_lineage(r: ResolvedTraining, lineage: Lineage | None) -> ResolvedTraining:
    """``r`` starting from ``lineage``: init mode sets train.pretrained_model_path."""
    if lineage is None:
        return r
    if lineage.mode != "init":
        return dataclasses.replace(r, lineage=lineage)
    raw = yaml.safe_load(r.experiment_yaml)
    apply_override(raw, "train.pretrained_model_path", lineage.checkpoint)
    return dataclasses.replace(
        r,
        lineage=lineage,
        experiment=ExperimentSpec.model_validate(raw),
        experiment_yaml=yaml.safe_dump(raw, sort_keys=False),
    )
