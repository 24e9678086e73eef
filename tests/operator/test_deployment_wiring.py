"""How RTDETRDeployments get reconciled: handlers, source index, watch selectors, CLI flags."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import kopf

from rtdetr_operator import cli, handlers
from rtdetr_operator.deployment.index import SourceIndex
from rtdetr_operator.workqueue import WorkQueue
from tests.operator.deployment_sim import deployment


def test_source_index_follows_spec_changes_and_deletion() -> None:
    idx = SourceIndex()
    idx.update("ml", "a", deployment("a"))
    idx.update("ml", "b", deployment("b"))
    assert idx.deployments_of("ml", "warehouse-r50") == {"a", "b"}
    idx.update("ml", "a", deployment("a", model={"training": {"name": "other"}}))
    assert idx.deployments_of("ml", "warehouse-r50") == {"b"}
    assert idx.deployments_of("ml", "other") == {"a"}
    idx.update("ml", "b", None)
    assert idx.deployments_of("ml", "warehouse-r50") == set()
    assert idx.deployments_of("other-ns", "other") == set()


def test_training_events_requeue_the_deployments_serving_it() -> None:
    async def scenario() -> set:
        memo = SimpleNamespace(deployment_queue=WorkQueue(), sources=SourceIndex())
        await handlers.on_deployment_event("ADDED", "wh", "ml", deployment("wh"), memo)
        drained = await _drain(memo.deployment_queue)
        await handlers.on_source_training_event("warehouse-r50", "ml", memo)
        await handlers.on_source_training_event("unrelated", "ml", memo)
        drained |= await _drain(memo.deployment_queue)
        ref = {"apiVersion": "rtdetr.dev/v1alpha1", "kind": "RTDETRDeployment", "name": "wh"}
        child = {"metadata": {"ownerReferences": [ref]}}
        await handlers.on_deployment_child_event(child, "ml", memo)
        drained |= await _drain(memo.deployment_queue)
        await handlers.on_deployment_event("DELETED", "wh", "ml", deployment("wh"), memo)
        assert ("ml", "wh") not in memo.deployment_queue.known
        return drained

    assert asyncio.run(scenario()) == {("ml", "wh")}


async def _drain(queue: WorkQueue) -> set:
    """The keys queued so far, taken by a worker of the queue itself."""
    out = set()

    async def record(key: tuple[str, str]) -> None:
        out.add(key)

    queue.start(record, 1)
    while len(queue):  # a worker records a key in the same step it dequeues it
        await asyncio.sleep(0)
    await queue.stop()
    return out


def test_children_of_both_kinds_are_watched_through_one_server_side_selector() -> None:
    settings = kopf.OperatorSettings()
    handlers.watch_selectors(settings)
    resources = {*handlers.CHILD_RESOURCES, *handlers.DEPLOYMENT_CHILD_RESOURCES}
    assert ("apps", "v1", "deployments") in resources
    for resource in resources:
        assert settings.watching.label_selectors[resource] == (
            "app.kubernetes.io/managed-by=rtdetr-operator"
        )


def test_registry_has_a_handler_per_watched_resource() -> None:
    registry = handlers.build_registry()
    ids = {h.id for h in registry._watching.get_all_handlers()}
    assert {"on_deployment_event", "deployment-sources", "deployment-child-deployments"} <= ids
    assert "on_training_event" in ids and "child-jobs" in ids


def test_operator_flags_set_the_deployment_defaults() -> None:
    args = cli.parse_args(
        ["--triton-image", "mirror/triton:25.10-py3", "--build-image", "mirror/trainer:1"]
    )
    settings = cli.deployment_settings(args)
    assert settings.defaults.triton_image == "mirror/triton:25.10-py3"
    assert settings.defaults.tensorrt_version == "10.13.3"
    assert settings.defaults.build_image == "mirror/trainer:1"
    assert "H100" in settings.catalog.names()
