"""Where a training's TAO experiment comes from: inline, or a ConfigMap key, plus overrides.

``spec.experimentRef`` names a ConfigMap key holding the spec YAML a TAO user passes to
``rtdetr train -e``; ``spec.overrides`` is the ``key=value`` list of that command line. Both are
read with :mod:`rtdetr_spec.loading` (duplicate keys refused, overrides checked against the
schema), so the operator's messages are the CLI's, prefixed with the field they came from:
``spec.experimentRef (ConfigMap wh-exp key experiment.yaml): model: hidden_dim 256 is not
divisible by nheads 7`` or ``spec.overrides: unknown key 'train.optm' ...``.

A referenced experiment is recorded when the run starts (``status.experimentSource``: name, key
and SHA-256 of the text) and kept in the run's own ConfigMap (key ``source.yaml``), so a later
edit of the user's ConfigMap never changes a started run; the planner warns about it instead.
Pure functions: the ConfigMap comes in as a dict (None when it does not exist).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from rtdetr_spec import SpecError, apply_override
from rtdetr_spec.loading import parse_override, parse_yaml

#: The key of the run's own ConfigMap keeping the referenced text the run started with.
SOURCE_KEY = "source.yaml"


@dataclass(frozen=True)
class LoadedExperiment:
    """The raw experiment (overrides applied, not yet validated) and where it came from."""

    raw: dict[str, Any]
    #: Prefix of a message about a key of the experiment (``spec.experiment.`` inline).
    prefix: str
    #: status.experimentSource for a referenced experiment; None inline.
    source: dict[str, str] | None = None
    #: The referenced text (kept in the run's ConfigMap as source.yaml).
    text: str | None = None
    problems: list[str] = field(default_factory=list)
    #: True when the problems may go away without a spec change (the ConfigMap can be edited).
    fixable: bool = False


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def load(raw_spec: dict[str, Any], configmap: dict[str, Any] | None) -> LoadedExperiment:
    """The experiment of ``raw_spec`` (a CR's spec) with its overrides applied."""
    ref = raw_spec.get("experimentRef")
    inline = raw_spec.get("experiment")
    if (ref is None) == (inline is None):
        problem = "spec.experimentRef: set exactly one of spec.experiment and spec.experimentRef"
        return LoadedExperiment({}, "spec.experiment.", problems=[problem])
    if ref is None:
        raw = dict(inline or {})
        return _overridden(LoadedExperiment(raw, "spec.experiment."), raw_spec)
    name, key = str(ref.get("name") or ""), str(ref.get("key") or "experiment.yaml")
    where = f"spec.experimentRef (ConfigMap {name} key {key})"
    if configmap is None:
        return LoadedExperiment({}, where, problems=[f"{where}: not found"], fixable=True)
    data = configmap.get("data") or {}
    if key not in data:
        keys = ", ".join(sorted(data)) or "none"
        problem = f"{where}: the ConfigMap has no key {key} (its keys: {keys})"
        return LoadedExperiment({}, where, problems=[problem], fixable=True)
    text = str(data[key])
    source = {"configMap": name, "key": key, "sha256": sha256(text)}
    try:
        raw = parse_yaml(text, source=f"ConfigMap {name} key {key}")
    except SpecError as e:
        problems = [f"{where}: {p}" for p in e.problems]
        return LoadedExperiment({}, where, source, text, problems, fixable=True)
    if not isinstance(raw, dict):
        what = type(raw).__name__ if raw is not None else "empty"
        problems = [f"{where}: top level must be a mapping, got {what}"]
        return LoadedExperiment({}, where, source, text, problems, fixable=True)
    loaded = LoadedExperiment(raw, f"{where}: ", source, text, fixable=True)
    return _overridden(loaded, raw_spec)


def _overridden(loaded: LoadedExperiment, raw_spec: dict[str, Any]) -> LoadedExperiment:
    """Apply spec.overrides in order, as the CLI does; each refusal is one problem."""
    for i, item in enumerate(raw_spec.get("overrides") or []):
        try:
            key, value = parse_override(str(item))
            apply_override(loaded.raw, key, value)
        except SpecError as e:
            loaded.problems.extend(f"spec.overrides[{i}]: {p}" for p in e.problems)
    return loaded


def pinned_configmap(
    status: dict[str, Any], live: dict[str, Any] | None, own: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The ConfigMap to read for a run that may already have started, and a drift warning.

    A run with ``status.experimentSource`` keeps the text it started with: when the user's
    ConfigMap now hashes differently (or is gone), the copy in the run's own ConfigMap is read
    instead and the second value says so (one Warning event).
    """
    recorded = status.get("experimentSource") or {}
    if not recorded:
        return live, None
    live_text = ((live or {}).get("data") or {}).get(recorded.get("key"))
    if live_text is not None and sha256(str(live_text)) == recorded.get("sha256"):
        return live, None
    kept = ((own or {}).get("data") or {}).get(SOURCE_KEY)
    if kept is None or sha256(str(kept)) != recorded.get("sha256"):
        return live, None  # nothing kept to fall back on: read the ConfigMap as it is now
    copy = {"data": {recorded["key"]: kept}}
    name, key = recorded.get("configMap"), recorded.get("key")
    now = "was deleted" if live is None else "changed"
    warning = (
        f"ConfigMap {name} key {key} {now} after the run started; the run keeps the experiment "
        f"it started with (sha256 {str(recorded.get('sha256'))[:12]}). Create a new "
        "RTDETRTraining to train with the new one"
    )
    return copy, warning


def record_source(
    status: dict[str, Any],
    experiment_source: dict[str, Any] | None,
    live: dict[str, Any] | None,
    drift: str | None,
) -> str | None:
    """Set status.experimentSource once (the run's start); return a Warning when it changed.

    ``currentSha256`` shows the key's hash now while it differs; the warning is returned only
    when that value changes, so each edit gives one event.
    """
    if experiment_source is None:
        return None
    recorded = status.setdefault("experimentSource", dict(experiment_source))
    text = ((live or {}).get("data") or {}).get(recorded["key"])
    now = sha256(str(text)) if text is not None else "deleted"
    if drift is None or now == recorded["sha256"]:
        recorded.pop("currentSha256", None)
        return None
    if recorded.get("currentSha256") == now:
        return None
    recorded["currentSha256"] = now
    return drift
