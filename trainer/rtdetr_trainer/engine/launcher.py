"""``rtdetr train``'s launcher: TAO's multi-node environment contract, checked loudly; torchrun.

TAO's launcher (``core/entrypoint.py``) runs ``torchrun --nnodes N --nproc-per-node G
[--node-rank R --master-addr A --master-port P]``. With ``WORLD_SIZE`` set it reads:

* ``WORLD_SIZE``: the number of **nodes** (not processes); must equal ``train.num_nodes``;
* ``NODE_RANK``: this node's index, 0 <= NODE_RANK < WORLD_SIZE;
* ``MASTER_ADDR``: node 0's address; ``MASTER_PORT``: its port (default 29500, 1024-65535);
* ``NUM_GPU_PER_NODE``: processes per node; must equal ``train.num_gpus`` when set.

so a pod runs nothing but ``rtdetr train -e spec.yaml``. TAO catches any violation, warns, and
silently trains single-node on every pod. Here each violation is an error naming the variable
(exit 2), and so is a MASTER_ADDR that does not resolve within the rendezvous timeout. A node
that cannot reach MASTER_ADDR:MASTER_PORT within ``RTDETR_RENDEZVOUS_TIMEOUT`` seconds (default
300; pods start unevenly, so it retries until then) fails with exit 1 naming the address.

Without ``WORLD_SIZE`` the run is one node; ``train.num_nodes > 1`` is then an error. CPU-only
machines run ``train.num_gpus`` gloo processes, which is how this path is tested; asking for more
processes than the node has GPUs, or (without a GPU) usable CPU cores, is an error naming both
counts.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rtdetr_spec.train import TrainConfig
from rtdetr_trainer.errors import LaunchError, RendezvousError

log = logging.getLogger(__name__)

DEFAULT_MASTER_PORT = 29500
RENDEZVOUS_TIMEOUT_ENV = "RTDETR_RENDEZVOUS_TIMEOUT"
DEFAULT_RENDEZVOUS_TIMEOUT = 300
WORKER_MODULE = "rtdetr_trainer.engine.worker"


@dataclass(frozen=True)
class LaunchPlan:
    """How many nodes and processes, and where they meet."""

    num_nodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str
    master_port: int | None  # None: single node, torchrun picks a free local port
    rendezvous_timeout: int

    @property
    def multi_node(self) -> bool:
        return self.num_nodes > 1

    def torchrun_args(self, worker_args: list[str]) -> list[str]:
        """Arguments for ``python -m torch.distributed.run`` (torchrun)."""
        args = [
            "--nnodes",
            str(self.num_nodes),
            "--nproc-per-node",
            str(self.nproc_per_node),
            "--max-restarts",
            "0",
            "--monitor-interval",
            "1",
        ]
        if self.master_port is not None:
            args += [
                "--node-rank",
                str(self.node_rank),
                "--master-addr",
                self.master_addr,
                "--master-port",
                str(self.master_port),
                "--rdzv-conf",
                f"timeout={self.rendezvous_timeout}",
            ]
        return [*args, "-m", WORKER_MODULE, *worker_args]


def _int_env(env: Mapping[str, str], name: str, *, why: str) -> int:
    raw = env[name].strip()
    try:
        return int(raw)
    except ValueError:
        raise LaunchError(f"{name}={env[name]!r} is not an integer ({why})") from None


def rendezvous_timeout(env: Mapping[str, str]) -> int:
    if not env.get(RENDEZVOUS_TIMEOUT_ENV):
        return DEFAULT_RENDEZVOUS_TIMEOUT
    value = _int_env(env, RENDEZVOUS_TIMEOUT_ENV, why="seconds to wait for the other nodes")
    if value < 1:
        raise LaunchError(f"{RENDEZVOUS_TIMEOUT_ENV} must be >= 1 second, got {value}")
    return value


def plan_launch(
    train: TrainConfig, env: Mapping[str, str], *, gpus_visible: int, cpus: int | None = None
) -> LaunchPlan:
    """Check the environment against the spec and decide the launch; raise LaunchError if wrong.

    Args:
        train: the spec's ``train`` section (``num_nodes``, ``num_gpus``).
        env: the process environment.
        gpus_visible: CUDA devices on this node (0 on CPU-only machines).
        cpus: CPU cores this process may use (None: not checked); without a GPU each training
            process needs one.
    """
    nproc = train.num_gpus
    if env.get("NUM_GPU_PER_NODE", "").strip():
        per_node = _int_env(env, "NUM_GPU_PER_NODE", why="processes per node")
        if per_node != nproc:
            raise LaunchError(
                f"NUM_GPU_PER_NODE={per_node} but train.num_gpus={nproc}; they must agree "
                "(set train.num_gpus to the GPUs each node runs)"
            )
    if gpus_visible and nproc > gpus_visible:
        raise LaunchError(f"train.num_gpus={nproc} but this node has {gpus_visible} visible GPU(s)")
    if not gpus_visible and cpus is not None and nproc > cpus:
        raise LaunchError(
            f"train.num_gpus={nproc} but this node has no GPU and {cpus} usable CPU core(s); "
            f"on CPU each of the {nproc} training processes needs a core: set train.num_gpus "
            f"to at most {cpus}"
        )
    timeout = rendezvous_timeout(env)
    if not env.get("WORLD_SIZE", "").strip():
        if train.num_nodes > 1:
            raise LaunchError(
                f"train.num_nodes={train.num_nodes} but WORLD_SIZE is not set: a multi-node run "
                "needs WORLD_SIZE (number of nodes), NODE_RANK, MASTER_ADDR and optionally "
                "MASTER_PORT and NUM_GPU_PER_NODE on every node"
            )
        return LaunchPlan(1, nproc, 0, "127.0.0.1", None, timeout)
    nodes = _int_env(env, "WORLD_SIZE", why="the number of nodes")
    if nodes < 1:
        raise LaunchError(f"WORLD_SIZE must be >= 1 (the number of nodes), got {nodes}")
    if nodes != train.num_nodes:
        raise LaunchError(
            f"WORLD_SIZE={nodes} (nodes) but train.num_nodes={train.num_nodes}; WORLD_SIZE counts "
            "nodes, not processes, and must equal train.num_nodes"
        )
    if not env.get("NODE_RANK", "").strip():
        if nodes == 1:
            return LaunchPlan(1, nproc, 0, "127.0.0.1", None, timeout)
        hint = ""
        for other in ("RANK", "PET_NODE_RANK", "JOB_COMPLETION_INDEX"):
            if env.get(other):
                hint = f" ({other}={env[other]} is set, but this launcher reads NODE_RANK)"
                break
        raise LaunchError(
            f"NODE_RANK is not set; with WORLD_SIZE={nodes} every node needs NODE_RANK "
            f"(0..{nodes - 1}){hint}"
        )
    rank = _int_env(env, "NODE_RANK", why="this node's index")
    if not 0 <= rank < nodes:
        raise LaunchError(
            f"NODE_RANK={rank} is out of range for WORLD_SIZE={nodes} (0..{nodes - 1})"
        )
    if nodes == 1:
        return LaunchPlan(1, nproc, 0, "127.0.0.1", None, timeout)
    addr = env.get("MASTER_ADDR", "").strip()
    if not addr:
        raise LaunchError(f"MASTER_ADDR is not set; with WORLD_SIZE={nodes} it names node 0")
    port = DEFAULT_MASTER_PORT
    if env.get("MASTER_PORT", "").strip():
        port = _int_env(env, "MASTER_PORT", why="node 0's rendezvous port")
    if not 1024 <= port <= 65535:
        raise LaunchError(f"MASTER_PORT={port} is outside 1024..65535")
    return LaunchPlan(nodes, nproc, rank, addr, port, timeout)


Resolver = Callable[[str, int], object]


def _resolve(addr: str, port: int) -> object:
    return socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)


def check_master(
    plan: LaunchPlan,
    *,
    resolve: Resolver = _resolve,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Before torchrun: MASTER_ADDR resolves, node 0 can listen, other nodes can connect.

    Retries until the rendezvous timeout, since in Kubernetes node 0's DNS name and socket
    appear only once its pod runs.
    """
    if not plan.multi_node or plan.master_port is None:
        return
    deadline = clock() + plan.rendezvous_timeout
    target = f"{plan.master_addr}:{plan.master_port}"
    last_error = ""
    announced = False
    while True:
        try:
            resolve(plan.master_addr, plan.master_port)
            break
        except (socket.gaierror, UnicodeError) as e:
            last_error = str(e)
        if clock() >= deadline:
            raise LaunchError(
                f"MASTER_ADDR {plan.master_addr!r} does not resolve (tried for "
                f"{plan.rendezvous_timeout} s: {last_error}); it must be node 0's host name or IP"
            )
        if not announced:
            log.warning("waiting for MASTER_ADDR %r to resolve (%s)", plan.master_addr, last_error)
            announced = True
        time.sleep(poll_s)
    if plan.node_rank == 0:
        _check_port_free(plan.master_port)
        return
    announced = False
    while True:
        try:
            with socket.create_connection((plan.master_addr, plan.master_port), timeout=5):
                return
        except OSError as e:
            last_error = e.strerror or str(e)
        if clock() >= deadline:
            raise RendezvousError(
                f"could not reach MASTER_ADDR:MASTER_PORT {target} within "
                f"{plan.rendezvous_timeout} s ({last_error}); is node 0 running `rtdetr train` "
                f"with the same MASTER_PORT, and is the port open between the nodes? "
                f"({RENDEZVOUS_TIMEOUT_ENV} sets the wait)"
            )
        if not announced:
            log.info("node %d: waiting for node 0 at %s", plan.node_rank, target)
            announced = True
        time.sleep(poll_s)


def _check_port_free(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise RendezvousError(
                    f"MASTER_PORT {port} is already in use on node 0, which hosts the "
                    "rendezvous; pick another MASTER_PORT"
                ) from None
            raise
