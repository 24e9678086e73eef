"""Every kopf registration of the operator, and nothing else.

The handlers only turn watch events into work-queue keys ``(namespace, training name)``; the
work happens in :class:`rtdetr_operator.training.reconcile.Reconciler`, driven by the queue in
``memo.queue``. Only event handlers are used: no on.create/update/delete, no timers, no daemons,
so kopf puts no finalizer and no progress annotations on RTDETRTrainings and deleting one never
waits for the operator (kopf #833). Jobs, Pods, ConfigMaps and Services are watched through a
server-side label selector (``rtdetr.dev/training``), so the operator never streams every pod of
the cluster.
"""

from __future__ import annotations

from typing import Any

import kopf

from rtdetr_operator.api import GROUP, PLURAL, VERSION
from rtdetr_operator.training.names import LABEL_TRAINING, parent_of

#: Children whose changes re-trigger their parent's reconciliation.
CHILD_RESOURCES: tuple[tuple[str, ...], ...] = (
    ("batch", "v1", "jobs"),
    ("v1", "pods"),
    ("v1", "configmaps"),
    ("v1", "services"),
)


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


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)(on_training_event)
    for resource in CHILD_RESOURCES:
        kopf.on.event(
            *resource,
            labels={LABEL_TRAINING: kopf.PRESENT},
            registry=registry,
            id=f"child-{resource[-1]}",
        )(on_child_event)
    return registry


def watch_selectors(settings: kopf.OperatorSettings) -> None:
    """Filter child watches on the API server, not in the operator."""
    for resource in CHILD_RESOURCES:
        settings.watching.label_selectors[resource] = LABEL_TRAINING
