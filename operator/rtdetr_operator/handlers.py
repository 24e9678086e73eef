"""Every kopf registration of the operator, and nothing else.

The handlers only turn watch events into work-queue keys ``(namespace, training name)``; the
work happens in :class:`rtdetr_operator.training.reconcile.Reconciler`, driven by the queue in
``memo.queue``. Only event handlers are used: no on.create/update/delete, no timers, no daemons,
so kopf puts no finalizer and no progress annotations on RTDETRTrainings and deleting one never
waits for the operator (kopf #833). Jobs, Pods, ConfigMaps and Services are watched through a
server-side label selector (``app.kubernetes.io/managed-by=rtdetr-operator``, carried by the
children of both kinds), so the operator never streams every pod of the cluster.

RTDETRDeployments work the same way with their own queue (``memo.deployments``, keys
``(namespace, deployment name)``, worked by
:class:`rtdetr_operator.deployment.reconcile.DeploymentReconciler`): their events, their
children's (Jobs, Pods, Services, apps Deployments) and their source RTDETRTraining's, found
through ``memo.sources`` (:class:`rtdetr_operator.deployment.index.SourceIndex`).
"""

from __future__ import annotations

from typing import Any

import kopf

from rtdetr_operator.api import GROUP, PLURAL, VERSION
from rtdetr_operator.api.deployment import DEPLOYMENT_PLURAL
from rtdetr_operator.deployment.names import LABEL_DEPLOYMENT, MANAGED_BY, deployment_of
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
        memo.queue.forget((namespace, name))
    else:
        memo.queue.add((namespace, name))


async def on_child_event(body: Any, namespace: str, memo: Any, **_: Any) -> None:
    parent = parent_of(dict(body))
    if parent:
        memo.queue.add((namespace, parent))


async def on_deployment_event(
    type: str | None, name: str, namespace: str, body: Any, memo: Any, **_: Any
) -> None:
    deleted = type == "DELETED"
    memo.sources.update(namespace, name, None if deleted else dict(body))
    if deleted:
        memo.deployments.forget((namespace, name))
    else:
        memo.deployments.add((namespace, name))


async def on_source_training_event(name: str, namespace: str, memo: Any, **_: Any) -> None:
    for deployment in memo.sources.deployments_of(namespace, name):
        memo.deployments.add((namespace, deployment))


async def on_deployment_child_event(body: Any, namespace: str, memo: Any, **_: Any) -> None:
    parent = deployment_of(dict(body))
    if parent:
        memo.deployments.add((namespace, parent))


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    # An explicit registry starts empty: log in the way the reconciler's client does.
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(on_training_event)
    for resource in CHILD_RESOURCES:
        kopf.on.event(
            *resource,
            labels={LABEL_TRAINING: kopf.PRESENT},
            registry=registry,
            id=f"child-{resource[-1]}",
        )(on_child_event)
    register_deployments(registry)
    return registry


def register_deployments(registry: kopf.OperatorRegistry) -> None:
    kopf.on.event(GROUP, VERSION, DEPLOYMENT_PLURAL, registry=registry)(on_deployment_event)
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry, id="deployment-sources")(
        on_source_training_event
    )
    for resource in DEPLOYMENT_CHILD_RESOURCES:
        kopf.on.event(
            *resource,
            labels={LABEL_DEPLOYMENT: kopf.PRESENT},
            registry=registry,
            id=f"deployment-child-{resource[-1]}",
        )(on_deployment_child_event)


def watch_selectors(settings: kopf.OperatorSettings) -> None:
    """Filter child watches on the API server, not in the operator."""
    for resource in {*CHILD_RESOURCES, *DEPLOYMENT_CHILD_RESOURCES}:
        settings.watching.label_selectors[resource] = CHILD_SELECTOR
