"""CEL rules (``x-kubernetes-validations``) that make ``kubectl apply`` refuse unrunnable CRs.

Each rule carries a message naming the field and a ``fieldPath`` so the API server's error reads
``spec.resources.gpus: Invalid value: ...: must equal spec.experiment.train.num_gpus``. The
operator re-checks the same conditions (:mod:`rtdetr_operator.training.resolve`): a cluster may
run an older CRD than the operator, and a CR stored before a rule existed is never re-validated.

Written against the CRD's wire names: the experiment keeps TAO's snake_case, the rest of the spec
is camelCase.
"""

from __future__ import annotations

from typing import Any

#: TAO's "required and not set" markers, plus the empty string (an unusable path).
_UNSET = "['', '??', '???']"


def _set(expr: str, field: str) -> str:
    """CEL: ``expr.field`` is present, non-null and not a ``??`` marker."""
    return f"(has({expr}.{field}) && !({expr}.{field} in {_UNSET}))"


def rule(expr: str, message: str, field_path: str | None = None, **extra: Any) -> dict[str, Any]:
    """One ``x-kubernetes-validations`` entry (also the builder of deployment_rules.py)."""
    out: dict[str, Any] = {"rule": expr, "message": message}
    if field_path:
        out["fieldPath"] = field_path
    out.update(extra)
    return out


_DS = "self.experiment.dataset"
_TRAIN_NUM_GPUS = (
    "(has(self.experiment.train) && has(self.experiment.train.num_gpus) "
    "? self.experiment.train.num_gpus : 1)"
)

#: The experiment rules apply to an inline experiment without overrides; an experiment from a
#: ConfigMap, or one that overrides complete, is checked by the operator (same wording).
_WHOLE_INLINE = "!has(self.experiment) || (has(self.overrides) && size(self.overrides) > 0) || "


def _inline(expr: str) -> str:
    return f"{_WHOLE_INLINE}({expr})"


#: Rules on ``spec`` (``self`` is the spec).
SPEC_RULES: list[dict[str, Any]] = [
    rule(
        "has(self.experiment) != has(self.experimentRef)",
        "set exactly one of spec.experiment and spec.experimentRef",
        ".experimentRef",
    ),
    rule(
        _inline(
            "!has(self.resources.gpus) || self.resources.gpus == 0 || "
            f"self.resources.gpus == {_TRAIN_NUM_GPUS}"
        ),
        "must equal spec.experiment.train.num_gpus (GPUs per node), or 0 to run on CPU; leave "
        "it unset to derive it",
        ".resources.gpus",
    ),
    rule(
        _inline(
            f"has({_DS}) && has({_DS}.train_data_sources) && size({_DS}.train_data_sources) > 0 "
            f"&& {_DS}.train_data_sources.all(s, {_set('s', 'image_dir')} && "
            f"{_set('s', 'json_file')})"
        ),
        "every training source needs image_dir and json_file set to paths on the data volume "
        "(not ??)",
        ".experiment.dataset.train_data_sources",
    ),
    rule(
        _inline(
            f"has({_DS}) && has({_DS}.val_data_sources) && "
            f"{_set(f'{_DS}.val_data_sources', 'image_dir')} && "
            f"{_set(f'{_DS}.val_data_sources', 'json_file')}"
        ),
        "image_dir and json_file must be set to paths on the data volume (not ??)",
        ".experiment.dataset.val_data_sources",
    ),
    rule(
        _inline(
            "!has(self.experiment.results_dir) || "
            f"self.experiment.results_dir in {_UNSET} || "
            "self.experiment.results_dir == self.storage.results.mountPath || "
            "self.experiment.results_dir.startsWith(self.storage.results.mountPath + '/')"
        ),
        "must be spec.storage.results.mountPath or a folder below it, so results survive pod "
        "restarts",
        ".experiment.results_dir",
    ),
    rule(
        _inline(
            "!has(self.experiment.evaluate) || !has(self.experiment.evaluate.num_nodes) || "
            "self.experiment.evaluate.num_nodes == 1"
        ),
        "must be 1: evaluation runs on one node",
        ".experiment.evaluate.num_nodes",
    ),
    rule(
        "!has(self.gpuProduct) || !has(self.nodeSelector) || "
        "!('nvidia.com/gpu.product' in self.nodeSelector) || "
        "self.nodeSelector['nvidia.com/gpu.product'] == self.gpuProduct",
        "contradicts spec.nodeSelector['nvidia.com/gpu.product']",
        ".gpuProduct",
    ),
    rule(
        "!has(self.evaluation.minMAP50) || self.evaluation.enabled",
        "minMAP50 needs spec.evaluation.enabled: true",
        ".evaluation",
    ),
    rule(
        "!has(self.resumeFrom) || !has(self.initFrom)",
        "set at most one of spec.resumeFrom and spec.initFrom",
        ".initFrom",
    ),
]

#: Rules on spec.resumeFrom / spec.initFrom.
RUN_REFERENCE_RULES: list[dict[str, Any]] = [
    rule("has(self.training) != has(self.checkpoint)", "set exactly one of training or checkpoint"),
]


def reserved_env_rule(names: tuple[str, ...]) -> dict[str, Any]:
    quoted = ", ".join(f"'{n}'" for n in names)
    return rule(
        f"self.all(e, !(e.name in [{quoted}]))",
        f"must not set {', '.join(names)}: the operator sets the launch contract",
    )


def forbidden_env_rule(names: tuple[str, ...]) -> dict[str, Any]:
    quoted = ", ".join(f"'{n}'" for n in names)
    return rule(
        f"self.all(e, !(e.name in [{quoted}]))",
        f"must not set {', '.join(names)}: task pods never unpickle checkpoints fully",
    )


#: Fields that may change after creation; everything else is fixed for the life of a run.
MUTABLE_FIELDS: tuple[str, ...] = ("suspend", "maxRestarts", "activeDeadlineSeconds")


def immutability_rules(fields: list[str]) -> list[dict[str, Any]]:
    """Transition rules: each field of ``spec`` not in MUTABLE_FIELDS keeps its first value.

    A training run is a record of what was trained. To change it, create a new RTDETRTraining
    (``spec.initFrom`` / ``spec.resumeFrom`` can start it from this run's checkpoint).
    """
    rules = []
    for f in fields:
        if f in MUTABLE_FIELDS:
            continue
        rules.append(
            rule(
                f"has(self.{f}) == has(oldSelf.{f}) && (!has(self.{f}) || self.{f} == oldSelf.{f})",
                "is immutable; create a new RTDETRTraining to train with other settings",
                f".{f}",
            )
        )
    return rules


#: Rules on a storage entry (data or results).
STORAGE_RULES: list[dict[str, Any]] = [
    rule("has(self.claimName) != has(self.volume)", "set exactly one of claimName or volume"),
]

#: Extra rule on results storage: it must outlive the pod.
RESULTS_RULES: list[dict[str, Any]] = [
    rule(
        "!has(self.volume) || !has(self.volume.emptyDir)",
        "results must survive pod restarts (a PersistentVolumeClaim or network volume), "
        "not emptyDir",
        ".volume",
    ),
]


def name_rule(why: str) -> dict[str, Any]:
    """Whole-object rule: the CR's name is at most 40 DNS-label characters, because ``why``.

    Both kinds name children ``<name>-<suffix>``, which must stay DNS labels (63 characters).
    """
    return rule(
        "self.metadata.name.size() <= 40 && "
        "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
        "metadata.name must be at most 40 characters, start with a letter and contain only "
        f"lowercase letters, digits and '-' ({why})",
        reason="FieldValueInvalid",
    )


#: Rules on the whole object: names must fit the children's DNS names.
ROOT_RULES: list[dict[str, Any]] = [name_rule("it names the pods' DNS hostnames")]
