"""The REST client and the shared reconciler against API answers shaped like kube-apiserver's.

Lists come back without ``kind`` on their items, exactly as the real server sends them; what the
client hands the reconcilers must still say what each object is, so deleting or logging a
listed child never guesses (a suspended training's Job, a deployment's Service).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rtdetr_operator.api.training import TRAINING
from rtdetr_operator.deployment.kube import DeploymentKubeApi
from rtdetr_operator.kube import ApiError, KubeApi
from rtdetr_operator.training.plan import Settings
from rtdetr_operator.training.reconcile import TrainingReconciler
from tests.operator.apiserver import FakeApiServer, serve
from tests.operator.factories import training

LABELS = {"rtdetr.dev/training": "wh"}


@pytest.fixture
def server() -> Iterator[tuple[FakeApiServer, KubeApi]]:
    api = FakeApiServer()
    api_client, http = serve(api)
    try:
        yield api, KubeApi(api_client, TRAINING.kind)
    finally:
        http.shutdown()
        http.server_close()
        api_client.close()


def _service(name: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "ml", "labels": dict(LABELS)},
        "spec": {"clusterIP": "None"},
    }


def test_listed_items_say_what_they_are(server: tuple[FakeApiServer, KubeApi]) -> None:
    api, kube = server
    api.put(_service("wh"))
    api.put({**_service("other"), "metadata": {"name": "other", "namespace": "ml"}})
    items = kube.list("Service", "ml", "rtdetr.dev/training=wh")
    assert [(i["kind"], i["apiVersion"], i["metadata"]["name"]) for i in items] == [
        ("Service", "v1", "wh")
    ]


def test_a_listed_object_is_deleted_from_its_own_collection(
    server: tuple[FakeApiServer, KubeApi],
) -> None:
    api, kube = server
    api.put(_service("wh"))
    (svc,) = kube.list("Service", "ml", "rtdetr.dev/training=wh")
    kube.delete(svc)
    assert api.names("services") == []
    last = api.requests[-1]
    assert (last.method, last.path) == ("DELETE", "/api/v1/namespaces/ml/services/wh")
    assert last.body == {
        "propagationPolicy": "Background",
        "preconditions": {"uid": "uid-services-wh"},
    }


def test_delete_needs_the_kind_and_never_guesses(server: tuple[FakeApiServer, KubeApi]) -> None:
    _, kube = server
    with pytest.raises(KeyError):
        kube.delete({"metadata": {"name": "wh", "namespace": "ml"}})


def test_deleting_a_replaced_object_is_refused_by_its_uid(
    server: tuple[FakeApiServer, KubeApi],
) -> None:
    api, kube = server
    api.put(_service("wh"))
    (old,) = kube.list("Service", "ml", "rtdetr.dev/training=wh")
    api.objects.clear()
    api.put({**_service("wh"), "metadata": {**_service("wh")["metadata"], "uid": "new"}})
    kube.delete(old)  # 409 on the uid precondition: the new object stays
    assert api.names("services") == ["wh"]


def test_the_deployment_client_refuses_calls_it_was_not_granted(
    server: tuple[FakeApiServer, KubeApi],
) -> None:
    _, kube = server
    deployments = DeploymentKubeApi(kube.client)
    with pytest.raises(ValueError, match="does not list ConfigMap"):
        deployments.list("ConfigMap", "ml", "a=b")


def test_errors_carry_the_servers_status(server: tuple[FakeApiServer, KubeApi]) -> None:
    _, kube = server
    with pytest.raises(ApiError) as e:
        kube.replace(_service("missing"))
    assert e.value.not_found


def test_suspending_a_training_deletes_its_listed_job(
    server: tuple[FakeApiServer, KubeApi],
) -> None:
    """A level-based pass per step, through REST: create the group, then suspend it."""
    api, kube = server
    api.put(training())
    reconciler = TrainingReconciler(api=kube, settings=Settings())
    reconciler.reconcile("ml", "wh")
    assert api.names("jobs") == ["wh-train-0"]
    body = api.get("rtdetrtrainings", "ml", "wh")
    assert body is not None
    body["spec"]["suspend"] = True
    api.put(body)
    reconciler.reconcile("ml", "wh")
    assert api.names("jobs") == []
    status = (api.get("rtdetrtrainings", "ml", "wh") or {})["status"]
    assert status["phase"] == "Suspended"
    reconciler.reconcile("ml", "wh")  # level-based: nothing left to do, nothing fails
    assert api.names("jobs") == []
