"""Live progress on the operator side: a pod log tail in, status.trainingProgress and events out."""

from __future__ import annotations

from typing import Any

from urllib3.exceptions import ReadTimeoutError

from rtdetr_operator.api.training_status import RTDETRTrainingStatus
from rtdetr_operator.kube import ApiError
from rtdetr_operator.pod_logs import LogReader
from rtdetr_operator.training import live
from rtdetr_operator.training.plan import Settings, World, plan
from rtdetr_spec.progress import ProgressReport, Validation, format_line, parse_log
from tests.operator.factories import later, pod, summary, training
from tests.operator.test_operator_plan import Sim, reasons


def line(epoch: int, step: int, **kw: Any) -> str:
    r = ProgressReport(
        epoch=epoch,
        num_epochs=30,
        step=step,
        steps_per_epoch=400,
        global_step=epoch * 400 + step,
        **{"percent": min(100 * (epoch * 400 + step) / 12000, 100), **kw},
    )
    return format_line(r)


#: What `kubectl logs` of a rank-0 training pod looks like: log lines, the periodic human line,
#: a warning from a library, and progress lines.
POD_LOG = "\n".join(
    [
        "2026-12-02 10:00:01 INFO rtdetr_trainer.cli: train: 7 classes, 2 node(s) x 8 GPU(s)",
        line(0, 1, loss=35.2, learning_rate=1e-5),
        "epoch 1/30  step 120/400  loss 20.1  lr 1.00e-04  2.10 it/s  eta 2m13s",
        "/usr/lib/python3/dist-packages/torch/utils/data.py:42: UserWarning: something",
        line(
            1,
            400,
            loss=18.0,
            learning_rate=1e-4,
            eta_seconds=7000,
            validation=Validation(epoch=1, mAP=0.31, mAP50=0.62, perClassAP50={"person": 0.9}),
        ),
        line(
            2,
            120,
            loss=17.5,
            learning_rate=1e-4,
            eta_seconds=6500.4,
            validation=Validation(epoch=1, mAP=0.31, mAP50=0.62),
        ),
        "RTDETR_PROGRESS {truncated",
    ]
)


def running_sim() -> Sim:
    sim = Sim(training())
    sim.step()
    sim.run_pods("wh-train-0")
    sim.now = later(5)
    sim.step()
    return sim


def step_with(sim: Sim, log: str) -> Any:
    world = sim.world()
    world = World(**{**world.__dict__, "progress": parse_log(log)})
    p = plan(world, sim.settings)
    sim.training["status"] = p.status
    return p


def test_a_running_training_shows_the_newest_line_and_one_event_per_validation() -> None:
    sim = running_sim()
    p = step_with(sim, POD_LOG)
    tp = sim.status["trainingProgress"]
    assert (tp["epoch"], tp["numEpochs"], tp["epochs"], tp["step"]) == (2, 30, "2/30", 120)
    assert tp["percent"] == 7 and tp["eta"] == "1h48m" and tp["etaSeconds"] == 6500
    assert tp["loss"] == 17.5 and tp["learningRate"] == 1e-4
    assert tp["validation"]["mAP50"] == 0.62
    assert [e.message for e in p.events if e.reason == "Validated"] == [
        "epoch 1/30: mAP50 0.6200, mAP 0.3100"
    ]
    assert p.requeue_after == Settings().progress_interval
    RTDETRTrainingStatus.model_validate(sim.status)  # what the CRD schema accepts
    # Read again (same tail): no second event for the same validation.
    p = step_with(sim, POD_LOG)
    assert "Validated" not in reasons(p)
    # No lines this time (not due, or no log): the last progress stays.
    p = step_with(sim, "")
    assert sim.status["trainingProgress"]["epoch"] == 2 and p.events == []


def test_training_success_reads_the_last_lines_and_says_100_percent() -> None:
    sim = running_sim()
    step_with(sim, POD_LOG)
    sim.finish("wh-train-0", summary("train", epoch=30, num_epochs=30))
    validation = Validation(epoch=30, mAP=0.6, mAP50=0.88)
    final = line(30, 400, loss=9.0, validation=validation, eta_seconds=0, percent=100)
    p = step_with(sim, POD_LOG + "\n" + final)
    tp = sim.status["trainingProgress"]
    assert (tp["percent"], tp["eta"], tp["epochs"], tp["loss"]) == (100, "0s", "30/30", 9.0)
    assert tp["validation"]["mAP50"] == 0.88
    assert [e.message for e in p.events if e.reason == "Validated"] == [
        "epoch 30/30: mAP50 0.8800, mAP 0.6000"
    ]
    assert sim.status["tasks"]["train"]["state"] == "Succeeded"
    RTDETRTrainingStatus.model_validate(sim.status)


def test_leader_pod_is_read_while_running_and_once_finished_not_when_failed() -> None:
    sim = running_sim()
    pods = list(sim.pods.values())
    leader = live.leader_pod(pods, "wh-train-0")
    assert leader is not None and leader["metadata"]["name"] == "wh-train-0-0-abcde"
    assert live.leader_pod(pods, "wh-train-1") is None
    sim.finish("wh-train-0")
    assert live.leader_pod(list(sim.pods.values()), "wh-train-0") is not None
    job = sim.jobs["wh-train-0"]
    failed = [pod(job, i, "Failed") for i in range(2)]
    assert live.leader_pod(failed, "wh-train-0") is None


def test_pending_pods_are_not_read_and_not_requeued_for_progress() -> None:
    sim = Sim(training())
    sim.step()
    p = step_with(sim, POD_LOG)
    assert "trainingProgress" not in sim.status and "Validated" not in reasons(p)


class FakeLogs:
    """Pod log API stand-in: counts calls, fails like a kubelet without logs when told."""

    def __init__(self, text: str = "", error: Exception | None = None) -> None:
        self.text, self.error, self.calls = text, error, 0

    def pod_log(self, namespace: str, name: str, container: str, limit_bytes: int) -> str:
        self.calls += 1
        assert container == "rtdetr" and limit_bytes > 0
        if self.error:
            raise self.error
        return self.text


def test_reader_reads_at_most_once_per_interval_per_training_and_tolerates_no_log() -> None:
    clock = [0.0]
    api = FakeLogs(POD_LOG)
    reader = LogReader(api, 30, clock=lambda: clock[0])  # type: ignore[arg-type]
    leader = {"metadata": {"name": "wh-train-0-0-abcde"}}
    assert len(reader.read("ns", "wh", leader)) == 3
    assert reader.read("ns", "wh", leader) == [] and api.calls == 1  # rate limited
    assert len(reader.read("ns", "other", leader)) == 3 and api.calls == 2  # per training
    clock[0] = 31
    assert len(reader.read("ns", "wh", leader)) == 3 and api.calls == 3
    assert len(reader.read("ns", "wh", leader, final=True)) == 3 and api.calls == 4  # pod ended
    reader.forget("ns", "wh")
    assert reader.due("ns", "wh")
    broken = LogReader(FakeLogs(error=ApiError(500, "no kubelet")), 30)  # type: ignore[arg-type]
    assert broken.read("ns", "wh", leader) == [] and broken.failures == 1
    timeout = ReadTimeoutError(None, "/log", "read timed out")  # type: ignore[arg-type]
    slow = LogReader(FakeLogs(error=timeout), 30)  # type: ignore[arg-type]
    assert slow.read("ns", "wh", leader) == [] and slow.failures == 1


def test_the_same_line_read_again_writes_nothing() -> None:
    from datetime import UTC, datetime

    sim = running_sim()
    first = line(1, 10, time=datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC))
    step_with(sim, first)
    read_at = sim.status["trainingProgress"]["updateTime"]
    assert sim.status["trainingProgress"]["reportTime"] == "2026-12-02T10:00:00Z"
    sim.now = later(60)
    step_with(sim, first)
    assert sim.status["trainingProgress"]["updateTime"] == read_at
    step_with(sim, first + "\n" + line(1, 20, time=datetime(2026, 12, 2, 10, 1, tzinfo=UTC)))
    tp = sim.status["trainingProgress"]
    assert tp["step"] == 20 and tp["updateTime"] != read_at
