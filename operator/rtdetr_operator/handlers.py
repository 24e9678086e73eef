"""Every kopf registration of the operator, and nothing else.

The handlers only turn watch events into work-queue keys ``(namespace, training name)``; the work
happens in :class:`rtdetr_operator.training.reconcile.TrainingReconciler`, driven by the queue in
``memo.training_queue``. Only event handlers are used: no on.create/update/delete, no timers,
no daemons, so kopf puts no finalizer and no progress annotations on RTDETRTrainings and deleting
one never waits for the operator (kopf #833). Jobs, Pods, ConfigMaps and Services are watched
through a server-side label selector (``app.kubernetes.io/managed-by=rtdetr-operator``, carried
by the children of both kinds), so the operator never streams every pod of the cluster.

RTDETRDeployments work the same way with their own queue (``memo.deployment_queue``, keys
``(namespace, deployment name)``, worked by
:class:`rtdetr_operator.deployment.reconcile.DeploymentReconciler`): their events, their
children's (Jobs, Pods, Services, apps Deployments) and their source RTDETRTraining's, found
through ``memo.sources`` (:class:`rtdetr_operator.deployment.index.SourceIndex`).
"""

from __future__ import annotations

from typing import Any

import kopf

from rtdetr_operator.api.deployment import DEPLOYMENT
from rtdetr_operator.api.meta import GROUP, VERSION
from rtdetr_operator.api.training import TRAINING
from rtdetr_operator.children import MANAGED_BY
from rtdetr_operator.deployment.names import LABEL_DEPLOYMENT, deployment_of
from rtdetr_operator.training.names import LABEL_TRAINING, parent_of

#: Children whose changes re-trigger their parent's reconciliation.
CHILD_RESOURCES: tuple[tuple[str, ...], ...] = (
    ("batch", "v1", "jobs"),
    ("v1", "pods"),
    ("v1", "configmaps"),
    ("v1", "services"),
)
#: Children of RTDETRDeployments whose changes re-trigger their parent.
DEPLOYMENT_CHILD_RESOURCES: tuple[tuple[str, ...], ...] = (
    ("batch", "v1", "jobs"),
    ("v1", "pods"),
    ("v1", "services"),
    ("apps", "v1", "deployments"),
)
#: The server-side selector of every child watch: both kinds' children carry it.
CHILD_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"


async def on_training_event(
    type: str | None, name: str, namespace: str, memo: Any, **_: Any
) -> None:
    if type == "DELETED":
        memo.training_queue.forget((namespace, name))
    else:
        memo.training_queue.add((namespace, name))


async def on_child_event(body: Any, namespace: str, memo: Any, **_: Any) -> None:
    parent = parent_of(dict(body))
    if parent:
        memo.training_queue.add((namespace, parent))


async def on_deployment_event(
    type: str | None, name: str, namespace: str, body: Any, memo: Any, **_: Any
) -> None:
    deleted = type == "DELETED"
    memo.sources.update(namespace, name, None if deleted else dict(body))
    if deleted:
        memo.deployment_queue.forget((namespace, name))
    else:
        memo.deployment_queue.add((namespace, name))


async def on_source_training_event(name: str, namespace: str, memo: Any, **_: Any) -> None:
    for deployment in memo.sources.deployments_of(namespace, name):
        memo.deployment_queue.add((namespace, deployment))


async def on_deployment_child_event(body: Any, namespace: str, memo: Any, **_: Any) -> None:
    parent = deployment_of(dict(body))
    if parent:
        memo.deployment_queue.add((namespace, parent))


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    # An explicit registry starts empty: log in the way the reconciler's client does.
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.event(GROUP, VERSION, TRAINING.plural, registry=registry)(on_training_event)
    _watch_children(registry, CHILD_RESOURCES, LABEL_TRAINING, "child", on_child_event)
    register_deployments(registry)
    return registry


def register_deployments(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event(GROUP, VERSION, DEPLOYMENT.plural, registry=registry)(on_deployment_event)
    kopf.on.event(GROUP, VERSION, TRAINING.plural, registry=registry, id="deployment-sources")(
        on_source_training_event
    )
    _watch_children(
        registry,
        DEPLOYMENT_CHILD_RESOURCES,
        LABEL_DEPLOYMENT,
        "deployment-child",
        on_deployment_child_event,
    )


def _watch_children(
    registry: kopf.OperatorRegistry,
    resources: tuple[tuple[str, ...], ...],
    label: str,
    prefix: str,
    handler: Any,
) -> None:
    """Watch ``resources`` carrying ``label`` (the parent's name); ids ``<prefix>-<plural>``."""
    for resource in resources:
        kopf.on.event(
            *resource,
            labels={label: kopf.PRESENT},
            registry=registry,
            id=f"{prefix}-{resource[-1]}",
        )(handler)


def watch_selectors(settings: kopf.OperatorSettings) -> None:
    """Filter child watches on the API server, not in the operator."""
    for resource in {*CHILD_RESOURCES, *DEPLOYMENT_CHILD_RESOURCES}:
        settings.watching.label_selectors[resource] = CHILD_SELECTOR
