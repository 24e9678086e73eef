"""TAO's multi-node launch contract: every misconfiguration is an error naming the variable."""

from __future__ import annotations

import socket

import pytest

from rtdetr_spec.train import TrainConfig
from rtdetr_trainer.engine.launcher import (
    DEFAULT_MASTER_PORT,
    WORKER_MODULE,
    LaunchPlan,
    check_master,
    plan_launch,
)
from rtdetr_trainer.errors import EXIT_BAD_INPUT, EXIT_RUNTIME, LaunchError, RendezvousError
from tests.support import free_port

TWO_NODES = TrainConfig(num_nodes=2, num_gpus=1)


def _env(**kw: str) -> dict[str, str]:
    base = {"WORLD_SIZE": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.1"}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not None}


def test_single_node_without_world_size() -> None:
    plan = plan_launch(TrainConfig(num_gpus=2), {}, gpus_visible=0)
    assert (plan.num_nodes, plan.nproc_per_node, plan.master_port) == (1, 2, None)
    args = plan.torchrun_args(["--spec", "s.yaml"])
    assert args[:4] == ["--nnodes", "1", "--nproc-per-node", "2"]
    assert "--master-port" not in args and args[-4:-1] == ["-m", WORKER_MODULE, "--spec"]


def test_multi_node_plan_follows_tao_env() -> None:
    plan = plan_launch(TWO_NODES, _env(NUM_GPU_PER_NODE="1"), gpus_visible=0)
    assert plan == LaunchPlan(2, 1, 1, "10.0.0.1", DEFAULT_MASTER_PORT, 300)
    args = plan.torchrun_args([])
    for flag, value in [
        ("--node-rank", "1"),
        ("--master-addr", "10.0.0.1"),
        ("--master-port", "29500"),
        ("--rdzv-conf", "timeout=300"),
    ]:
        assert args[args.index(flag) + 1] == value


@pytest.mark.parametrize(
    ("train", "env", "message"),
    [
        (TWO_NODES, {}, "train.num_nodes=2 but WORLD_SIZE is not set"),
        (TWO_NODES, _env(WORLD_SIZE="4"), "WORLD_SIZE=4 (nodes) but train.num_nodes=2"),
        (TWO_NODES, _env(WORLD_SIZE="two"), "WORLD_SIZE='two' is not an integer"),
        (TWO_NODES, _env(NODE_RANK=""), "NODE_RANK is not set"),
        (TWO_NODES, _env(NODE_RANK="2"), "NODE_RANK=2 is out of range for WORLD_SIZE=2"),
        (TWO_NODES, _env(NODE_RANK="-1"), "NODE_RANK=-1 is out of range"),
        (TWO_NODES, _env(MASTER_ADDR=""), "MASTER_ADDR is not set"),
        (TWO_NODES, _env(MASTER_PORT="80"), "MASTER_PORT=80 is outside 1024..65535"),
        (TWO_NODES, _env(MASTER_PORT="x"), "MASTER_PORT='x' is not an integer"),
        (TWO_NODES, _env(NUM_GPU_PER_NODE="8"), "NUM_GPU_PER_NODE=8 but train.num_gpus=1"),
        (TWO_NODES, _env(RTDETR_RENDEZVOUS_TIMEOUT="0"), "RTDETR_RENDEZVOUS_TIMEOUT must be"),
    ],
)
def test_misconfigurations_fail_loudly(train: TrainConfig, env: dict, message: str) -> None:
    with pytest.raises(LaunchError) as e:
        plan_launch(train, env, gpus_visible=0)
    assert message in str(e.value)
    assert e.value.exit_code == EXIT_BAD_INPUT


def test_pytorchjob_rank_without_node_rank_is_named() -> None:
    with pytest.raises(LaunchError, match=r"RANK=1 is set, but this launcher reads NODE_RANK"):
        plan_launch(TWO_NODES, _env(NODE_RANK="", RANK="1"), gpus_visible=0)


def test_more_processes_than_gpus() -> None:
    with pytest.raises(LaunchError, match=r"train\.num_gpus=8 but this node has 2 visible GPU"):
        plan_launch(TrainConfig(num_gpus=8), {}, gpus_visible=2)


def test_unresolvable_master_addr_after_retries() -> None:
    calls = []

    def resolve(addr: str, port: int) -> object:
        calls.append(addr)
        raise socket.gaierror(-2, "Name or service not known")

    clock = iter(range(100)).__next__
    plan = LaunchPlan(2, 1, 1, "node-0.missing", 29500, 3)
    with pytest.raises(LaunchError, match=r"MASTER_ADDR 'node-0.missing' does not resolve"):
        check_master(plan, resolve=resolve, poll_s=0, clock=lambda: float(clock()))
    assert len(calls) > 1  # retried, as pods start unevenly


def test_unreachable_master_times_out_naming_address() -> None:
    port = free_port()  # nothing listens here
    plan = LaunchPlan(2, 1, 1, "127.0.0.1", port, 1)
    with pytest.raises(RendezvousError) as e:
        check_master(plan, poll_s=0.1)
    assert f"127.0.0.1:{port} within 1 s" in str(e.value)
    assert e.value.exit_code == EXIT_RUNTIME


def test_reachable_master_passes_and_busy_port_on_node_0_is_named() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        check_master(LaunchPlan(2, 1, 1, "127.0.0.1", port, 5), poll_s=0.1)
        with pytest.raises(RendezvousError, match=f"MASTER_PORT {port} is already in use"):
            check_master(LaunchPlan(2, 1, 0, "127.0.0.1", port, 5), poll_s=0.1)


def test_cpu_processes_are_bounded_by_usable_cores() -> None:
    with pytest.raises(
        LaunchError, match=r"train\.num_gpus=4 but this node has no GPU and 2 usable"
    ):
        plan_launch(TrainConfig(num_gpus=4), {}, gpus_visible=0, cpus=2)
    assert plan_launch(TrainConfig(num_gpus=2), {}, gpus_visible=0, cpus=2).nproc_per_node == 2
    assert plan_launch(TrainConfig(num_gpus=4), {}, gpus_visible=4, cpus=2).nproc_per_node == 4
