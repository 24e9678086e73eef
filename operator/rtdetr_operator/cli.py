"""``rtdetr-operator``: run the RTDETRTraining and RTDETRDeployment operator (current kubeconfig).

    rtdetr-operator                          # all namespaces
    rtdetr-operator -n team-a -n team-b      # only these namespaces
    rtdetr-operator --kubeconfig .cluster/kubeconfig --stuck-grace 10

Custom resources in kube-system, kube-public and kube-node-lease are never served
(``--deny-namespaces``); node-level volume sources in CRs are refused unless
``--allow-node-volumes`` (policy.py).

No kopf peering (``--standalone``): kopf's peering is not leader election, and two operators
that see each other freeze (kopf #734). Several replicas run with ``--leader-elect`` instead
(leader.py): every replica watches and queues, only the holder of a coordination.k8s.io Lease
reconciles. kopf settings are chosen here, each with the reason next to it.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys

import kopf
from kubernetes import client, config

from rtdetr_operator import handlers
from rtdetr_operator.api.deployment import DEPLOYMENT
from rtdetr_operator.api.meta import GROUP, VERSION
from rtdetr_operator.api.training import TRAINING
from rtdetr_operator.cli_args import parse_args
from rtdetr_operator.deployment import defaults as deployment_defaults
from rtdetr_operator.deployment.catalog_source import CatalogSource
from rtdetr_operator.deployment.index import SourceIndex
from rtdetr_operator.deployment.kube import DeploymentKubeApi
from rtdetr_operator.deployment.plan import Settings as DeploymentSettings
from rtdetr_operator.deployment.reconcile import DeploymentReconciler
from rtdetr_operator.kube import KubeApi
from rtdetr_operator.leader import ElectionConfig, LeaseElector
from rtdetr_operator.metrics import OperatorMetrics
from rtdetr_operator.scope import (
    NamespaceGate,
    kubeconfig_problem,
)
from rtdetr_operator.training.plan import Settings
from rtdetr_operator.training.reconcile import TrainingReconciler
from rtdetr_operator.workqueue import WorkQueue
from rtdetr_serving.catalog import load_catalog
from rtdetr_serving.errors import ServingError

logger = logging.getLogger("rtdetr_operator")


def operator_settings() -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.peering.standalone = True
    # Server-side timeouts end idle watches cleanly before a load balancer silently drops them
    # (kopf #614, #957); the client timeout is the backstop, the inactivity timeout (kopf
    # >= 1.44) restarts a stream that stopped delivering even bookmarks.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # The reconciler posts its own, deliberate Events; kopf's log-to-event bridge stays off.
    settings.posting.enabled = False
    # No CRD/namespace discovery at runtime: needs no cluster-wide list permissions on
    # CustomResourceDefinitions and Namespaces (kopf #1153); the CRD must exist at start.
    settings.scanning.disabled = True
    handlers.watch_selectors(settings)
    return settings


def deployment_settings(
    args: argparse.Namespace, catalog: CatalogSource | None = None
) -> DeploymentSettings:
    """RTDETRDeployment defaults from the command line; the GPU catalog (+ $RTDETR_GPU_CATALOG)."""
    return DeploymentSettings(
        catalog=catalog.current() if catalog is not None else load_catalog(),
        defaults=deployment_defaults.OperatorDefaults(
            triton_image=args.triton_image,
            tensorrt_version=args.triton_tensorrt_version,
            build_image=args.build_image,
        ),
        stuck_grace=args.stuck_grace,
        allow_node_volumes=args.allow_node_volumes,
        progress_interval=args.progress_interval,
    )


def _load_kube_config(kubeconfig: str | None) -> client.ApiClient:
    if kubeconfig:
        problem = kubeconfig_problem(kubeconfig)
        if problem:
            raise config.ConfigException(problem)
        os.environ["KUBECONFIG"] = kubeconfig  # kopf's own login reads the same file
        config.load_kube_config(config_file=kubeconfig)
    elif os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()


async def run(
    args: argparse.Namespace,
    reconciler: TrainingReconciler,
    deployments: DeploymentReconciler | None = None,
    metrics: OperatorMetrics | None = None,
) -> None:
    elector = _elector(args, reconciler.api.client) if args.leader_elect else None
    queue = WorkQueue(resync_period=args.resync)
    deployment_queue = WorkQueue(resync_period=args.resync)
    gate = NamespaceGate(args.deny_namespaces)
    metrics = metrics or OperatorMetrics()
    metrics.watch(TRAINING.kind, queue, reconciler)
    if deployments is not None:
        metrics.watch(DEPLOYMENT.kind, deployment_queue, deployments)

    async def work(key: object) -> float | None:
        namespace, name = key  # type: ignore[misc]
        if elector is not None:
            await elector.leading.wait()
        if not gate.allows(namespace, "RTDETRTraining", name):
            return None
        with metrics.reconciling(TRAINING.kind):
            return await asyncio.to_thread(reconciler.reconcile, namespace, name)

    async def work_deployment(key: object) -> float | None:
        namespace, name = key  # type: ignore[misc]
        assert deployments is not None
        if elector is not None:
            await elector.leading.wait()
        if not gate.allows(namespace, "RTDETRDeployment", name):
            return None
        with metrics.reconciling(DEPLOYMENT.kind):
            return await asyncio.to_thread(deployments.reconcile, namespace, name)

    queue.start(work, args.workers)
    if deployments is not None:
        deployment_queue.start(work_deployment, args.workers)
    election = None
    if elector is not None:
        election = asyncio.create_task(elector.run(on_lost=_lost_leadership))
    try:
        await kopf.operator(
            registry=handlers.build_registry(),
            settings=operator_settings(),
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=args.liveness or None,
            identity=operator_identity(),
            memo=kopf.Memo(
                training_queue=queue, deployment_queue=deployment_queue, sources=SourceIndex()
            ),
        )
    finally:
        await queue.stop()
        await deployment_queue.stop()
        if election is not None:
            election.cancel()
            await asyncio.to_thread(elector.release)  # type: ignore[union-attr]


def _elector(args: argparse.Namespace, api_client: client.ApiClient) -> LeaseElector:
    namespace = (
        args.leader_election_namespace
        or os.environ.get("POD_NAMESPACE")
        or (args.namespace[0] if args.namespace else "default")
    )
    cfg = ElectionConfig(
        namespace=namespace,
        name=args.leader_election_lease,
        identity=operator_identity(),
        lease_duration=args.lease_duration,
        renew_deadline=args.renew_deadline,
        retry_period=args.retry_period,
    )
    return LeaseElector(KubeApi(api_client, TRAINING.kind), cfg)


def _lost_leadership() -> None:
    """A leader that could not renew must stop at once: another may already be reconciling.
    Exiting (and being restarted as a standby) is what client-go's elections do too."""
    logging.shutdown()
    os._exit(1)


def operator_identity() -> str:
    """Who this operator is, for kopf: the host (pod) name and process id.

    kopf would otherwise ask ``getpass.getuser()``, which raises in a container whose uid has no
    passwd entry (the images run as a bare uid such as 65532), and the operator crash-loops.
    """
    return f"{socket.gethostname()}/{os.getpid()}"


def _configure_logging(args: argparse.Namespace) -> None:
    """kopf's root handler in the chosen format; per-event kopf lines only when verbose."""
    log_format = {
        "json": kopf.LogFormat.JSON,
        "plain": kopf.LogFormat.PLAIN,
        "full": kopf.LogFormat.FULL,
    }[args.log_format]
    kopf.configure(verbose=args.verbose, log_format=log_format)
    if not args.verbose:
        # kopf logs every handled watch event per object; the reconciler logs what it does.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        api_client = _load_kube_config(args.kubeconfig)
    except (config.ConfigException, OSError, ValueError, TypeError, KeyError) as e:
        # The client's own errors for a malformed file are Python ones (TypeError on a list
        # where a mapping belongs, IsADirectoryError): one line, never a traceback.
        where = args.kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        cause = str(e) if isinstance(e, config.ConfigException) else f"{where}: {e}"
        print(f"rtdetr-operator: no usable Kubernetes configuration: {cause}", file=sys.stderr)
        return 2
    api = KubeApi(api_client, TRAINING.kind)
    deployment_api = DeploymentKubeApi(api_client)
    try:
        served = api.serves(TRAINING.plural, DEPLOYMENT.plural)
    except Exception as e:  # urllib3 raises its own types for refused/timed-out connections
        print(f"rtdetr-operator: cannot reach the Kubernetes API: {e}", file=sys.stderr)
        return 2
    if not served:
        # kopf would start, find nothing to watch, and idle: say so instead.
        print(
            f"rtdetr-operator: the API server does not serve {GROUP}/{VERSION} "
            f"{TRAINING.plural} and {DEPLOYMENT.plural}; install the CRDs first: "
            "kubectl apply --server-side -f crds/",
            file=sys.stderr,
        )
        return 2
    reconciler = TrainingReconciler(
        api,
        Settings(
            stuck_grace=args.stuck_grace,
            allow_node_volumes=args.allow_node_volumes,
            progress_interval=args.progress_interval,
        ),
    )
    try:
        catalog = CatalogSource.from_env()
        deployments = DeploymentReconciler(
            deployment_api, deployment_settings(args, catalog), catalog_source=catalog
        )
    except ServingError as e:
        print(f"rtdetr-operator: {e}", file=sys.stderr)
        return 2
    metrics = OperatorMetrics()
    if args.metrics_port:
        try:
            metrics.serve(args.metrics_port)
        except OSError as e:
            print(f"rtdetr-operator: --metrics-port {args.metrics_port}: {e}", file=sys.stderr)
            return 2
    # Logging is configured only once the operator will run: every refusal above is one plain
    # line, and a refused start leaves the process's logging as it found it.
    _configure_logging(args)
    scope = ", ".join(args.namespace) if args.namespace else "all namespaces"
    logger.info("serving RTDETRTrainings and RTDETRDeployments in %s", scope)
    asyncio.run(run(args, reconciler, deployments, metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
