"""``rtdetr train`` on one node: check everything, then start this node's workers under torchrun.

Order matters for failing early and loudly: the launch environment and the dataset are checked
in this process, before any worker or GPU is touched, so a wrong NODE_RANK or a missing image is
an exit-2 message in seconds, not a crashed job after minutes. Then the rendezvous address is
probed and torchrun's elastic agent (``torch.distributed.run``, in this process) starts the
workers. A worker failure is reported with the worker's own message and exit code.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from pathlib import Path

from rtdetr_spec import ExperimentSpec, dump_experiment
from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_spec.reporting import TaskSummary
from rtdetr_trainer.data.pipeline import TrainData, prepare_train_data
from rtdetr_trainer.engine.launcher import LaunchPlan, check_master, plan_launch
from rtdetr_trainer.engine.worker import DATA_FILE, LAUNCHER_PID_ENV, SPEC_FILE, outcome_path
from rtdetr_trainer.errors import (
    EXIT_BAD_INPUT,
    EXIT_STORAGE,
    RendezvousError,
    TrainerError,
    UserInputError,
)
from rtdetr_trainer.results import TaskResults, failure_recorded

log = logging.getLogger(__name__)


class WorkerFailedError(TrainerError):
    """A training process failed; carries that process's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class TerminatedError(TrainerError):
    """The launcher was told to stop (SIGTERM from Kubernetes, SIGINT); exit 128 + signal."""

    def __init__(self, sig: signal.Signals) -> None:
        super().__init__(
            f"stopped by {sig.name}; the next `rtdetr train` resumes from the latest checkpoint"
        )
        self.exit_code = 128 + int(sig)


def _gpus_visible() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _cpus_usable() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_train(spec: ExperimentSpec, env: Mapping[str, str] | None = None) -> TaskSummary:
    """Validate, launch this node's workers, wait; returns the run's summary."""
    env = os.environ if env is None else env
    plan = plan_launch(spec.train, env, gpus_visible=_gpus_visible(), cpus=_cpus_usable())
    if _gpus_visible() == 0 and plan.nproc_per_node > 1:
        log.info("no GPU visible: running %d CPU processes (gloo)", plan.nproc_per_node)
    data = prepare_train_data(spec)
    log.info("dataset: %s", data.summary())
    results = TaskResults(spec, "train", writer=plan.node_rank == 0)
    results.prepare(spec_file=False)  # experiment.yaml: by rank 0 once the resume is accepted
    results.status("STARTED", "Starting RT-DETR training", max_epoch=spec.train.num_epochs)
    run_dir = Path(tempfile.mkdtemp(prefix="rtdetr-train-"))
    with failure_recorded(results):
        try:
            _launch(spec, plan, data, run_dir)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
    from rtdetr_trainer.engine.reporting import read_summary

    summary = read_summary(results.dir)
    if summary is None:
        summary = TaskSummary(
            task="train", status="SUCCESS", message=f"node {plan.node_rank} finished"
        )
    return summary


def _launch(spec: ExperimentSpec, plan: LaunchPlan, data: TrainData, run_dir: Path) -> None:
    """Hand the resolved spec (and the serialized index) to the workers; run torchrun."""
    # unredacted: the workers must see the spec as given; run_dir is private (mkdtemp: 0700)
    atomic_write_text(run_dir / SPEC_FILE, dump_experiment(spec, redact=False))
    if spec.dataset.dataset_type == "serialized":
        data.train.save(run_dir / "index" / "train")
        data.val.save(run_dir / "index" / "val")
        meta = {
            "class_map": data.class_map.model_dump(),
            "val_categories": {str(k): v for k, v in data.val_categories.items()},
            "sample_sizes": data.sample_sizes,
        }
        atomic_write_text(run_dir / DATA_FILE, json.dumps(meta))
    check_master(plan)
    _torchrun(plan, run_dir)


def _torchrun(plan: LaunchPlan, run_dir: Path) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    argv = plan.torchrun_args(["--spec", str(run_dir / SPEC_FILE), "--run-dir", str(run_dir)])
    log.info("launching: torchrun %s", " ".join(argv))
    args = get_args_parser().parse_args(argv)
    os.environ[LAUNCHER_PID_ENV] = str(os.getpid())  # the agent runs in this process
    if "OMP_NUM_THREADS" not in os.environ and plan.nproc_per_node > 1:
        # torchrun would set 1 and print a warning box at every start; share the CPUs instead
        threads = max(1, _cpus_usable() // plan.nproc_per_node)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        log.info("OMP_NUM_THREADS=%d per training process (set it to choose)", threads)
    try:
        run(args)
    except SignalException as e:  # SIGTERM/SIGINT: the agent already stopped the workers
        raise TerminatedError(e.sigval) from None
    except ChildFailedError as e:
        raise _worker_failure(run_dir, plan, e) from None
    except Exception as e:  # rendezvous: store timeouts, refused connections, closed peers
        if plan.multi_node and _looks_like_rendezvous(e):
            raise RendezvousError(
                f"node {plan.node_rank}: rendezvous with {plan.master_addr}:{plan.master_port} "
                f"failed ({type(e).__name__}: {_first_line(e)})"
            ) from None
        raise


def _worker_failure(run_dir: Path, plan: LaunchPlan, err: Exception) -> TrainerError:
    outcomes = []
    for rank in range(plan.num_nodes * plan.nproc_per_node):
        p = outcome_path(run_dir, rank)
        if p.exists():
            try:
                outcomes.append(json.loads(p.read_text()))
            except ValueError:
                continue
    failed = [o for o in outcomes if o.get("exit_code")]
    bad_input = [o for o in failed if o["exit_code"] == EXIT_BAD_INPUT]
    # a full volume on rank 0 makes its peers fail too (a closed connection): name the cause
    storage = [o for o in failed if o["exit_code"] == EXIT_STORAGE]
    chosen = (bad_input or storage or failed or [None])[0]
    if chosen is None:  # killed (signal, OOM) before it could say why
        failures = getattr(err, "failures", {})
        detail = "; ".join(
            f"local rank {f.local_rank}: exit code {f.exitcode}" for f in failures.values()
        )
        codes = {f.exitcode for f in failures.values()}
        code = EXIT_STORAGE if codes == {EXIT_STORAGE} else 1
        return WorkerFailedError(f"a training process died ({detail or err})", code)
    if chosen["exit_code"] == EXIT_BAD_INPUT:
        return UserInputError(chosen["message"])
    return WorkerFailedError(chosen["message"], int(chosen["exit_code"]))


def _looks_like_rendezvous(e: Exception) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return any(
        k in text for k in ("rendezvous", "store", "timed out", "timeout", "connect", "socket")
    )


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0][:300]
