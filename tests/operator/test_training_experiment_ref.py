"""spec.experimentRef + spec.overrides: the TAO spec from a ConfigMap key, the CLI's messages."""

from __future__ import annotations

from typing import Any

import yaml

from rtdetr_operator.planning import Plan
from rtdetr_operator.training.experiment_source import SOURCE_KEY, sha256
from rtdetr_operator.training.plan import Settings, World, plan
from tests.operator.factories import T0, experiment, training


def _ref_training(overrides: list[str] | None = None, status: dict | None = None) -> dict:
    body = training(status=status, overrides=overrides or [])
    del body["spec"]["experiment"]
    body["spec"]["experimentRef"] = {"name": "wh-exp"}
    return body


def _cm(text: str, key: str = "experiment.yaml") -> dict[str, Any]:
    return {"metadata": {"name": "wh-exp", "namespace": "ml"}, "data": {key: text}}


def _plan(body: dict, cm: dict | None, own: dict | None = None) -> Plan:
    world = World(
        training=body,
        jobs=[],
        pods=[],
        configmap=own,
        service=None,
        now=T0,
        experiment_configmap=cm,
    )
    return plan(world, Settings())


def _stalled(p: Plan) -> dict[str, Any]:
    return next(c for c in p.status["conditions"] if c["type"] == "Stalled")


def _experiment_data(p: Plan) -> dict[str, Any]:
    cm = next(o for o in p.create if o["kind"] == "ConfigMap")
    return cm["data"]


def test_a_configmap_plus_overrides_resolves_and_is_recorded() -> None:
    text = yaml.safe_dump(experiment())
    p = _plan(_ref_training(["train.num_epochs=3", "train.optim.lr=0.00005"]), _cm(text))
    assert _stalled(p)["status"] == "False"
    assert any(o["kind"] == "Job" for o in p.create)
    data = _experiment_data(p)
    resolved = yaml.safe_load(data["experiment.yaml"])
    assert resolved["train"]["num_epochs"] == 3 and resolved["train"]["optim"]["lr"] == 0.00005
    assert data[SOURCE_KEY] == text
    assert p.status["experimentSource"] == {
        "configMap": "wh-exp",
        "key": "experiment.yaml",
        "sha256": sha256(text),
    }


def test_inline_experiment_takes_overrides_too() -> None:
    p = _plan(training(overrides=["train.num_epochs=5"]), None)
    assert yaml.safe_load(_experiment_data(p)["experiment.yaml"])["train"]["num_epochs"] == 5
    assert "experimentSource" not in p.status


def test_problems_stall_naming_the_key_with_the_clis_words_and_recover() -> None:
    exp = experiment()
    exp["model"]["nheads"] = 7
    cases = [
        (None, [], "spec.experimentRef (ConfigMap wh-exp key experiment.yaml): not found"),
        (_cm("x: 1", key="other.yaml"), [], "has no key experiment.yaml (its keys: other.yaml)"),
        (_cm("a: 1\na: 2\n"), [], "duplicate key"),
        (
            _cm(yaml.safe_dump(exp)),
            [],
            "spec.experimentRef (ConfigMap wh-exp key experiment.yaml): model: hidden_dim 256 "
            "is not divisible by nheads 7",
        ),
        (_cm(yaml.safe_dump(experiment())), ["train.optm.lr=1"], "spec.overrides[0]: "),
        (_cm(yaml.safe_dump(experiment())), ["train.num_epochs"], "not of the form key=value"),
    ]
    for cm, overrides, words in cases:
        p = _plan(_ref_training(overrides), cm)
        stalled = _stalled(p)
        assert p.create == [] and p.status["phase"] == "Pending", words
        assert stalled["status"] == "True" and stalled["reason"] == "InvalidExperiment"
        assert words in stalled["message"], (words, stalled["message"])
        assert p.requeue_after == 10.0  # read again: fixing the ConfigMap is enough
    fixed = _plan(_ref_training(), _cm(yaml.safe_dump(experiment())))
    assert _stalled(fixed)["status"] == "False" and fixed.create


def test_an_unknown_override_key_names_the_closest_valid_keys() -> None:
    p = _plan(_ref_training(["train.optim.lrr=1"]), _cm(yaml.safe_dump(experiment())))
    message = _stalled(p)["message"]
    assert message.startswith("spec.overrides[0]: ") and "lr" in message


def test_a_started_run_keeps_its_experiment_when_the_configmap_changes() -> None:
    text = yaml.safe_dump(experiment())
    first = _plan(_ref_training(), _cm(text))
    own = next(o for o in first.create if o["kind"] == "ConfigMap")
    edited = experiment()
    edited["train"]["num_epochs"] = 99
    body = _ref_training(status=first.status)
    p = _plan(body, _cm(yaml.safe_dump(edited)), own=own)
    assert [e.reason for e in p.events].count("ExperimentChanged") == 1
    assert p.status["experimentSource"]["sha256"] == sha256(text)
    assert p.status["experimentSource"]["currentSha256"] == sha256(yaml.safe_dump(edited))
    assert not any(o["kind"] == "ConfigMap" for o in p.create + p.replace)  # kept as it was
    again = _plan(_ref_training(status=p.status), _cm(yaml.safe_dump(edited)), own=own)
    assert "ExperimentChanged" not in [e.reason for e in again.events]  # one event per edit


def test_both_or_neither_experiment_form_is_refused() -> None:
    body = training()
    body["spec"]["experimentRef"] = {"name": "wh-exp"}
    p = _plan(body, _cm(yaml.safe_dump(experiment())))
    ready = next(c for c in p.status["conditions"] if c["type"] == "Ready")
    assert p.status["phase"] == "Failed"
    assert "set exactly one of spec.experiment and spec.experimentRef" in ready["message"]


def test_the_shipped_example_resolves_from_the_model_card_spec() -> None:
    from rtdetr_operator.training.resolve import resolve
    from tests.operator.factories import MODEL_CARD_SPEC, ROOT

    body = yaml.safe_load((ROOT / "examples" / "training-configmap.yaml").read_text())
    body["metadata"] |= {"namespace": "ml", "uid": "0f1e2d3c-0000"}
    r = resolve(body, experiment_configmap=_cm(MODEL_CARD_SPEC.read_text()))
    assert r.experiment.train.num_epochs == 72
    assert r.experiment_source is not None
    assert r.experiment_source["configMap"] == "warehouse-experiment"
