"""Validate a custom resource and resolve its experiment into what the pods will run.

The API server already refused what CEL can express; this re-checks those rules (a CRD may be
older than the operator) and adds what only ``rtdetr_spec`` can judge (model validators, keys a
task needs, unknown keys the API server pruned). Problems come back as one line per field,
``spec.experiment.model: hidden_dim 256 is not divisible by nheads 7``, and the CR goes Stalled
with exactly that text.

Resolution fills what TAO leaves to the person at the terminal, and only where the experiment
left it unset or ``??``: ``results_dir`` (the results mount), ``train.gpu_ids`` (the pod's GPUs
0..n-1), evaluation data (the validation set when no test set is named), checkpoints (the run's
latest checkpoint) and the ONNX file name. Explicit values always win.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from rtdetr_operator.api.training import FORBIDDEN_ENV, RESERVED_ENV, RTDETRTrainingSpec
from rtdetr_operator.fetch_steps import Fetch
from rtdetr_operator.planning import InvalidSpecError, field_problems
from rtdetr_operator.policy import pod_metadata_problems, volume_problems
from rtdetr_operator.training.experiment_source import load as load_experiment
from rtdetr_operator.training.names import Names
from rtdetr_operator.training.sources import local_data_paths, plan_sources
from rtdetr_spec import ExperimentSpec, MissingValueError, SpecError, apply_override, is_missing
from rtdetr_spec.loading import format_validation_error

#: TAO keeps a pointer to the newest checkpoint here; a restarted group resumes from it.
LATEST_CHECKPOINT = "rtdetr_model_latest.pth"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


class InvalidTrainingError(InvalidSpecError):
    """An RTDETRTraining that cannot run.

    ``fixable``: the problems may go away without a spec change (the experiment's ConfigMap
    can be created or edited, the source run can finish), so the run waits Stalled (with
    ``reason``) instead of failing.
    """

    def __init__(
        self, problems: list[str], *, fixable: bool = False, reason: str = "InvalidExperiment"
    ) -> None:
        super().__init__(problems)
        self.fixable = fixable
        self.reason = reason


@dataclass(frozen=True)
class Lineage:
    """A resolved start: what status.startedFrom records and what the pods need."""

    mode: str
    source: str
    checkpoint: str
    volume: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "source": self.source}
        out["checkpoint"] = self.checkpoint
        if self.volume is not None:
            out["volume"] = self.volume
        return out

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Lineage:
        return cls(rec["mode"], rec["source"], rec["checkpoint"], rec.get("volume"))


@dataclass(frozen=True)
class ResolvedTraining:
    """A validated CR with everything the manifest builders need, already decided."""

    name: str
    namespace: str
    uid: str
    spec: RTDETRTrainingSpec
    experiment: ExperimentSpec
    experiment_yaml: str
    names: Names
    nodes: int
    #: Training processes per node (TAO's train.num_gpus): GPUs, or gloo processes on CPU.
    processes_per_node: int
    #: GPUs each training pod requests: processes_per_node, or 0 for a CPU run.
    gpus_per_node: int
    results_dir: str
    results_sub_path: str
    #: Keys of the experiment its author set (so task overrides never replace them).
    user_set: frozenset[str]
    #: The checkpoint of another run this one starts from (spec.resumeFrom / spec.initFrom).
    lineage: Lineage | None = None
    #: Source URIs fetched by the training pods' init containers (training/sources.py).
    fetches: tuple[Fetch, ...] = ()
    #: status.experimentSource (spec.experimentRef) and the referenced text; None inline.
    experiment_source: dict[str, str] | None = None
    experiment_text: str | None = None

    @property
    def tasks(self) -> tuple[str, ...]:
        out = ["train"]
        if self.spec.evaluation.enabled:
            out.append("evaluate")
        if self.spec.export.enabled:
            out.append("export")
        return tuple(out)

    @property
    def on_cpu(self) -> bool:
        """``spec.resources.gpus: 0``: no task requests a GPU."""
        return self.spec.resources.gpus == 0

    @property
    def evaluate_gpus(self) -> int:
        return 0 if self.on_cpu else self.experiment.evaluate.num_gpus

    @property
    def export_gpus(self) -> int:
        return 0 if self.on_cpu or self.experiment.export.on_cpu else 1


def _unset(value: Any) -> bool:
    return value is None or value == "" or is_missing(value)


def _get(raw: dict[str, Any], dotted: str) -> Any:
    node: Any = raw
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[int(part)] if part.isdigit() and int(part) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
    return node


def cross_field_problems(spec: RTDETRTrainingSpec, name: str) -> list[str]:
    """The CRD's CEL rules, re-checked (same wording as rules.py)."""
    out: list[str] = []
    train = spec.experiment.train
    if spec.resources.gpus not in (None, 0, train.num_gpus):
        out.append(
            f"spec.resources.gpus: {spec.resources.gpus} must equal "
            f"spec.experiment.train.num_gpus ({train.num_gpus}), or 0 to run on CPU"
        )
    if spec.experiment.evaluate.num_nodes != 1:
        out.append("spec.experiment.evaluate.num_nodes must be 1: evaluation runs on one node")
    product = spec.node_selector.get("nvidia.com/gpu.product")
    if spec.gpu_product and product and product != spec.gpu_product:
        out.append("spec.nodeSelector['nvidia.com/gpu.product'] contradicts spec.gpuProduct")
    if spec.evaluation.min_map50 is not None and not spec.evaluation.enabled:
        out.append("spec.evaluation.minMAP50 needs spec.evaluation.enabled: true")
    reserved = sorted({e.name for e in spec.env} & set(RESERVED_ENV))
    if reserved:
        out.append(f"spec.env: {', '.join(reserved)} are set by the operator (launch contract)")
    forbidden = sorted({e.name for e in spec.env} & set(FORBIDDEN_ENV))
    if forbidden:
        out.append(
            f"spec.env: {', '.join(forbidden)} is refused: task pods never unpickle checkpoints "
            "fully (a checkpoint on a shared volume could run code)"
        )
    for which, store in (("data", spec.storage.data), ("results", spec.storage.results)):
        if store is not None and (store.claim_name is None) == (store.volume is None):
            out.append(f"spec.storage.{which}: set exactly one of claimName or volume")
    results = spec.storage.results
    if results.volume is not None and results.volume.empty_dir is not None:
        out.append("spec.storage.results.volume: emptyDir does not survive pod restarts")
    if spec.resume_from is not None and spec.init_from is not None:
        out.append("spec.initFrom: set at most one of spec.resumeFrom and spec.initFrom")
    for field, ref in (("resumeFrom", spec.resume_from), ("initFrom", spec.init_from)):
        if ref is not None and (ref.training is None) == (ref.checkpoint is None):
            out.append(f"spec.{field}: set exactly one of training or checkpoint")
    if len(name) > 40 or not _DNS_LABEL.match(name):
        out.append(f"metadata.name: {name!r} must be at most 40 characters of [a-z0-9-]")
    return out


def _pruned_keys(training: dict[str, Any]) -> list[str]:
    """Experiment keys the API server dropped as unknown (seen in kubectl's last-applied copy).

    Without this a typo such as ``lr_backbon`` applied with ``--validate=false`` would vanish
    and the run would silently use TAO's default, the failure mode we exist to prevent.
    """
    text = (training["metadata"].get("annotations") or {}).get(LAST_APPLIED)
    if not text:
        return []
    try:
        applied = json.loads(text)["spec"]["experiment"]
        ExperimentSpec.model_validate(applied)
    except (ValueError, KeyError, TypeError) as e:
        if not isinstance(e, ValidationError):
            return []
        lines = format_validation_error(e, ExperimentSpec)
        return [f"spec.experiment.{line}" for line in lines if "unknown key" in line]
    return []


def security_problems(
    spec: RTDETRTrainingSpec, raw_spec: dict[str, Any], *, allow_node_volumes: bool
) -> list[str]:
    """What the CR asks of the node that the operator refuses (see policy.py)."""
    out = pod_metadata_problems(raw_spec)
    for which, store in (("data", spec.storage.data), ("results", spec.storage.results)):
        if store is None:
            continue
        source = store.volume.model_dump(by_alias=True, exclude_none=True) if store.volume else {}
        out += volume_problems(
            f"spec.storage.{which}.volume", source, allow_node_volumes=allow_node_volumes
        )
    return out


def resolve(
    training: dict[str, Any],
    *,
    allow_node_volumes: bool = False,
    experiment_configmap: dict[str, Any] | None = None,
) -> ResolvedTraining:
    """Validate ``training`` (a CR body) and resolve its experiment.

    ``allow_node_volumes`` lifts the refusal of node-level volume sources (policy.py).
    ``experiment_configmap`` is the ConfigMap spec.experimentRef names (None: absent or unused).

    Raises:
        InvalidTrainingError: naming every field that makes the CR unrunnable.
    """
    meta = training["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    raw_spec = training.get("spec") or {}
    loaded = load_experiment(copy.deepcopy(raw_spec), experiment_configmap)
    raw, where = loaded.raw, loaded.prefix
    try:
        # The experiment is validated on its own below, with TAO-style messages.
        spec = RTDETRTrainingSpec.model_validate({**raw_spec, "experiment": {}})
    except ValidationError as e:
        raise InvalidTrainingError(field_problems(e)) from None
    problems = list(loaded.problems)
    if problems and (loaded.fixable or not raw):
        raise InvalidTrainingError(problems, fixable=loaded.fixable)
    problems += _pruned_keys(training)
    fetches, source_problems = plan_sources(raw, spec.sources, where)
    problems += source_problems
    if spec.storage.data is None:
        problems += [
            f"spec.storage.data: required, since {where}{key} is a path ({value!r}), not a "
            "source URI"
            for key, value in local_data_paths(raw)
        ]
    problems += security_problems(spec, raw_spec, allow_node_volumes=allow_node_volumes)
    user_set = frozenset(k for k in _KEYS if not _unset(_get(raw, k)))
    results = spec.storage.results
    results_dir = raw.get("results_dir")
    if _unset(results_dir):
        results_dir = results.mount_path
    elif results_dir != results.mount_path and not str(results_dir).startswith(
        results.mount_path.rstrip("/") + "/"
    ):
        problems.append(
            f"{where}results_dir: {results_dir!r} is not under "
            f"spec.storage.results.mountPath ({results.mount_path}), so results would not "
            "survive pod restarts"
        )
    results_dir = str(results_dir).rstrip("/") or "/"
    try:
        _fill(raw, spec, name, results_dir)
        experiment = ExperimentSpec.model_validate(raw)
        spec = spec.model_copy(update={"experiment": experiment})
        problems += cross_field_problems(spec, name)
        for task in ("train", *(t for t in ("evaluate", "export") if _enabled(spec, t))):
            experiment.check_required(task)
    except ValidationError as e:
        lines = format_validation_error(e, ExperimentSpec)
        problems += [f"{where}{line}" for line in lines]
    except MissingValueError as e:
        problems += [f"{where}{line}" for line in e.problems]
    except SpecError as e:
        problems += [f"{where.rstrip('.: ')}: {line}" for line in e.problems]
    if problems:
        raise InvalidTrainingError(problems, fixable=loaded.fixable)
    return ResolvedTraining(
        name=name,
        namespace=namespace,
        uid=meta.get("uid", ""),
        spec=spec,
        experiment=experiment,
        experiment_yaml=yaml.safe_dump(raw, sort_keys=False),
        names=Names(name, namespace),
        nodes=experiment.train.num_nodes,
        processes_per_node=experiment.train.num_gpus,
        gpus_per_node=0 if spec.resources.gpus == 0 else experiment.train.num_gpus,
        results_dir=results_dir,
        results_sub_path=results_folder(training) if results.sub_path is None else results.sub_path,
        user_set=user_set,
        fetches=tuple(fetches),
        experiment_source=loaded.source,
        experiment_text=loaded.text,
    )


def results_folder(training: dict[str, Any]) -> str:
    """The default results subPath: ``<name>-<first 8 characters of the uid>``.

    Keyed by the object's identity, so an RTDETRTraining deleted and created again under the
    same name gets an empty folder and trains from scratch instead of resuming the earlier
    object's checkpoints (spec.resumeFrom says so when that is wanted). A run whose status
    already records a folder keeps it (runs started by an older operator used the bare name).
    """
    meta = training["metadata"]
    recorded = ((training.get("status") or {}).get("resultsVolume") or {}).get("subPath")
    if recorded:
        return str(recorded)
    uid = str(meta.get("uid") or "").replace("-", "")
    return f"{meta['name']}-{uid[:8]}" if uid else str(meta["name"])


def _enabled(spec: RTDETRTrainingSpec, task: str) -> bool:
    return spec.evaluation.enabled if task == "evaluate" else spec.export.enabled


#: Keys the operator may fill in; the others are the author's alone.
_KEYS = (
    "results_dir",
    "train.gpu_ids",
    "dataset.test_data_sources.image_dir",
    "dataset.test_data_sources.json_file",
    "evaluate.checkpoint",
    "inference.checkpoint",
    "export.checkpoint",
    "export.onnx_file",
    "export.gpu_id",
)


def _fill(raw: dict[str, Any], spec: RTDETRTrainingSpec, name: str, results_dir: str) -> None:
    """Set the keys of _KEYS that ``raw`` leaves unset or ``??`` (in place)."""
    latest = f"{results_dir}/train/{LATEST_CHECKPOINT}"
    num_gpus = _get(raw, "train.num_gpus")
    val = _get(raw, "dataset.val_data_sources") or {}
    values: dict[str, Any] = {
        "results_dir": results_dir,
        "train.gpu_ids": list(range(num_gpus if isinstance(num_gpus, int) else 1)),
        "evaluate.checkpoint": latest,
        "inference.checkpoint": latest,
        "export.checkpoint": latest,
        "export.onnx_file": f"{results_dir}/export/{name}.onnx",
        "export.gpu_id": 0,
    }
    test = ("dataset.test_data_sources.image_dir", "dataset.test_data_sources.json_file")
    no_test = all(_unset(_get(raw, k)) for k in test)
    if spec.evaluation.enabled and isinstance(val, dict) and no_test:
        # No test set named: evaluate on the validation set (TAO would refuse to start).
        values[test[0]] = val.get("image_dir")
        values[test[1]] = val.get("json_file")
    for key in _KEYS:
        if key in values and _unset(_get(raw, key)) and values[key] is not None:
            apply_override(raw, key, values[key])
