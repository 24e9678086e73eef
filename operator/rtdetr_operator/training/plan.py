"""The reconciler's brain: observed world in, desired changes out. Pure (no I/O, no clock).

:func:`plan` reads an RTDETRTraining and everything labelled as its child, and returns the
status to write, the objects to create, replace or delete, the Events to post and when to look
again. The I/O half (:mod:`rtdetr_operator.training.reconcile`) applies that in a fixed order:
status first, then deletions, then creations, so a crash between steps never forgets a restart
(the status says attempt k+1 before Job k is touched) and never duplicates a Job (names are
deterministic; see names.py).

The run is a pipeline of tasks (train, then evaluate and export when enabled). ``status.tasks``
records each task's attempt and outcome; the current task is the first one not Succeeded, and
its Job is ``<name>-<task>-<attempt>``. Everything else follows from comparing that desire with
what exists:

* Job missing -> create it (also after someone deleted it).
* Job succeeded -> read the task's summary from pod 0's termination message into status, move on.
* Any pod failed -> restart: attempt + 1 (a new Job, the whole group), up to spec.maxRestarts;
  training resumes from the latest checkpoint on the results volume. Exit code 2 (the trainer's
  "bad input") fails the run at once: the same command cannot succeed on a second try.
  Exit code 3 (the results volume is full, read-only or not writable) stalls the run
  (Stalled=True, reason OutputUnwritable) without a restart; once the volume is fixed, toggling
  spec.suspend (true, then false) starts the next attempt from the latest checkpoint.
* Pods unschedulable / image not pullable beyond the grace period -> Stalled, with the reason.
* spec.suspend -> delete the active Job, phase Suspended; clearing it creates the next attempt.
"""

from __future__ import annotations

from typing import Any

from rtdetr_operator.api.training_status import TERMINAL_PHASES
from rtdetr_operator.children import owned_by
from rtdetr_operator.conditions import Health, condition, parse_time, timestamp
from rtdetr_operator.jobs import JobView, job_view
from rtdetr_operator.planning import Plan, PlannerBase
from rtdetr_operator.training import live, manifests
from rtdetr_operator.training.conditions import carried_health, kstatus, tasks_progress
from rtdetr_operator.training.lineage import resolve_all
from rtdetr_operator.training.names import LABEL_TASK
from rtdetr_operator.training.resolve import InvalidTrainingError, ResolvedTraining
from rtdetr_operator.training.results import apply_summary, failure_text, success_message
from rtdetr_operator.training.sources import describe_fetching, update_sources
from rtdetr_operator.training.world import Settings, World

__all__ = ["Settings", "World", "plan"]

TASK_PHASE = {"train": "Training", "evaluate": "Evaluating", "export": "Exporting"}
TASK_TITLE = {"train": "training", "evaluate": "evaluation", "export": "export"}
JOB_FIELD = {"train": "trainingJob", "evaluate": "evaluationJob", "export": "exportJob"}
#: The trainer's exit status for input it refuses (spec, dataset, checkpoint, launch env):
#: running the same command again cannot help, so the run fails without burning restarts.
EXIT_BAD_INPUT = 2
#: The trainer's exit status when the results volume is full, read-only or not writable: a
#: retry fails the same way until someone fixes the volume, so the run stalls instead.
EXIT_STORAGE = 3


def plan(world: World, settings: Settings | None = None) -> Plan:
    return _Planner(world, settings or Settings()).run()


class _Planner(PlannerBase):
    def __init__(self, world: World, settings: Settings) -> None:
        super().__init__(world.training, world.pods, world.now, settings.stuck_grace)
        self.world, self.settings = world, settings
        self.health: Health | None = None
        self.jobs = {j["metadata"]["name"]: j for j in world.jobs if owned_by(j, self.uid)}
        self.foreign = {j["metadata"]["name"] for j in world.jobs if not owned_by(j, self.uid)}
        self.resolved: ResolvedTraining | None = None

    # ----------------------------------------------------------------------------- driver
    def run(self) -> Plan:
        self.status.setdefault("phase", "Pending")
        self.status.setdefault("restarts", 0)
        try:  # also resolves spec.experimentRef and spec.resumeFrom/initFrom
            self.resolved, warning = resolve_all(
                self.world, self.status, self.settings.allow_node_volumes
            )
        except InvalidTrainingError as e:
            if e.fixable and self.status["phase"] not in TERMINAL_PHASES:  # may pass without edits
                self.health = Health(e.reason, "; ".join(e.problems), stalled=True)
                self.requeue(10.0)
                return self._finish()
            self._delete_active()
            if self.status["phase"] not in TERMINAL_PHASES:
                self._fail("InvalidSpec", "; ".join(e.problems))
            return self._finish()
        self._describe_run()
        for message in update_sources(self.status, self.resolved.fetches, self.world):
            self.event("Normal", "Fetched", message)
        if warning:
            self.event("Warning", "ExperimentChanged", warning)
        if self.status["phase"] == "Failed" and not self._retry_after_failure():
            self._delete_active()
            return self._finish()
        if self.status["phase"] == "Succeeded":
            return self._finish()
        self.status.setdefault("startTime", timestamp(self.now))
        if self.status["phase"] == "Suspended" and not self.resolved.spec.suspend:
            # As for Jobs, the deadline clock restarts when a suspended run resumes.
            self.status["startTime"] = timestamp(self.now)
            self.event("Normal", "Resumed", "resumed from the latest checkpoint")
        if self._deadline_exceeded():
            return self._finish()
        if self.resolved.spec.suspend:
            self._suspend()
            return self._finish()
        self._ensure_support_objects()
        for task in self.resolved.tasks:
            if self._record(task).get("state") == "Succeeded":
                continue
            if not self._step(task):
                return self._finish()
        self.status["phase"] = "Succeeded"
        self.status["completionTime"] = timestamp(self.now)
        self.health = Health("Succeeded", success_message(self.status))
        return self._finish()

    def _describe_run(self) -> None:
        r = self.resolved
        self.status["nodes"], self.status["gpus"] = r.nodes, r.nodes * r.gpus_per_node
        results = r.spec.storage.results
        volume: dict[str, Any] = {"subPath": r.results_sub_path, "mountPath": results.mount_path}
        if results.claim_name:
            volume["claimName"] = results.claim_name
        self.status["resultsVolume"] = volume

    # ------------------------------------------------------------------------- one task
    def _step(self, task: str) -> bool:
        """Drive ``task`` one step; True when it is done and the next task may start."""
        rec = self._record(task)
        name = self.resolved.names.job(task, rec.setdefault("attempt", 0))
        rec["job"] = name
        self.status[JOB_FIELD[task]] = name
        self._set_task_phase(task, rec)
        for other, job in self.jobs.items():
            labels = job["metadata"].get("labels") or {}
            if other != name and labels.get(LABEL_TASK) == task and self.active(job):
                self._delete(job)
        job = self.jobs.get(name)
        if job is None:
            if name in self.foreign:
                self._wait(f"Job {name} of an earlier RTDETRTraining {self.name} is being deleted")
                return False
            self._create_job(task, rec)
            return False
        view = job_view(job, self.world.pods)
        if view.deleting:
            self._wait(f"Job {name} is being deleted")
            return False
        if view.succeeded:
            return self._succeeded(task, rec, view)
        if view.failed:
            self._failed(task, rec, view)
            return False
        self._running(task, rec, view)
        return False

    def _create_job(self, task: str, rec: dict[str, Any]) -> None:
        checkpoint = self._checkpoint_for(task)
        job = manifests.task_job(self.resolved, task, rec["attempt"], checkpoint)
        self.changes.create.append(job)
        rec["state"] = "Pending"
        per_node = (
            f"{self.resolved.processes_per_node} CPU process(es)"
            if self.resolved.on_cpu
            else f"{self.resolved.gpus_per_node} GPU(s)"
        )
        shape = f"{self.resolved.nodes} node(s) x {per_node}" if task == "train" else ""
        what = f"created {TASK_TITLE[task]} Job {rec['job']}" + (f" ({shape})" if shape else "")
        self.event("Normal", "JobCreated", what)
        self.health = Health(self.status["phase"], f"{what}; waiting for its pods")

    def _running(self, task: str, rec: dict[str, Any], view: JobView) -> None:
        job = self.jobs.get(view.name) or {}
        queue = ((job.get("metadata") or {}).get("labels") or {}).get(manifests.KUEUE_QUEUE_LABEL)
        if queue and (job.get("spec") or {}).get("suspend") and not view.running:
            rec["state"] = "Pending"  # not stalled: Kueue admits the whole group when it fits
            self._set_task_phase(task, rec)
            why = f"Job {view.name} waits for Kueue to admit all its pods (LocalQueue {queue})"
            self.health = Health("Queued", f"{TASK_TITLE[task]}: {why}")
            return
        all_up = view.running == view.expected
        if all_up and not rec.get("startTime"):
            rec["startTime"] = timestamp(self.now)
        rec["state"] = "Running" if all_up else "Pending"
        self._set_task_phase(task, rec)
        detail = f"{view.running}/{view.expected} pod(s) of Job {view.name} running"
        fetching = describe_fetching(self.status) if task == "train" and not view.running else None
        detail += f"; {fetching}" if fetching else ""
        self.health = Health(self.status["phase"], f"{TASK_TITLE[task]}: {detail}")
        if task == "train" and (view.running or fetching) and self.settings.progress_interval > 0:
            for reason, message in live.fold(self.status, self.world.progress, self.now):
                self.event("Normal", reason, message)
            self.requeue(self.settings.progress_interval)  # no pod event marks either's progress
        stuck = view.stuck()
        if stuck is None or not self.past_grace(stuck.since):
            return
        message = stuck.message
        self.health = Health(stuck.reason, message, stalled=True)
        old = condition(self.old, "Stalled")
        if not old or old.get("status") != "True" or old.get("reason") != stuck.reason:
            self.event("Warning", stuck.reason, message)

    def _succeeded(self, task: str, rec: dict[str, Any], view: JobView) -> bool:
        leader = view.leader()
        problem, reported_failure = apply_summary(
            self.status, task, leader.message if leader else None
        )
        if problem:
            reason = "MalformedTaskSummary" if "malformed" in problem else "NoTaskSummary"
            self.event("Warning", reason, f"{TASK_TITLE[task]} Job {view.name}: {problem}")
        if reported_failure is not None:
            self._failed(task, rec, view, why=reported_failure)
            return False
        rec["state"] = "Succeeded"
        rec["completionTime"] = timestamp(self.now)
        if task == "train":
            for reason, message in live.fold(self.status, self.world.progress, self.now):
                self.event("Normal", reason, message)  # the last lines: final validation
            live.finished(self.status)
        self.event("Normal", "TaskSucceeded", f"{TASK_TITLE[task]} finished (Job {view.name})")
        gate = self.resolved.spec.evaluation.min_map50
        if task == "evaluate" and gate is not None:
            m50 = (self.status.get("metrics") or {}).get("mAP50")
            if m50 is None or m50 < gate:
                self._fail(
                    "AccuracyBelowThreshold",
                    f"evaluated mAP50 {m50} is below spec.evaluation.minMAP50 {gate}; "
                    "not exporting",
                )
                return False
        return True

    def _failed(self, task: str, rec: dict[str, Any], view: JobView, why: str = "") -> None:
        pod = view.first_failure()
        why = why or (failure_text(pod) if pod else view.job_message or "the Job failed")
        restarts, limit = int(self.status.get("restarts", 0)), self.resolved.spec.max_restarts
        rec["message"] = why
        if pod is not None and pod.exit_code == EXIT_BAD_INPUT:
            rec["state"] = "Failed"
            self._fail("BadInput", f"{TASK_TITLE[task]} refused its input (not retried): {why}")
            return
        if pod is not None and pod.exit_code == EXIT_STORAGE:
            rec["state"] = "Failed"
            self._output_unwritable(task, why)
            return
        if restarts >= limit:
            rec["state"] = "Failed"
            self._fail(
                "BackoffLimitExceeded",
                f"{TASK_TITLE[task]} failed after {restarts} restart(s) (spec.maxRestarts "
                f"{limit}): {why}",
            )
            return
        self.status["restarts"] = restarts + 1
        rec["attempt"] = rec.get("attempt", 0) + 1
        rec["job"] = self.resolved.names.job(task, rec["attempt"])
        self.status[JOB_FIELD[task]] = rec["job"]
        self.event(
            "Warning",
            "Restarting",
            f"{TASK_TITLE[task]} Job {view.name} failed: {why}; recreating the whole group as "
            f"Job {rec['job']} (restart {restarts + 1}/{limit})",
        )
        self._create_job(task, rec)

    def _output_unwritable(self, task: str, why: str) -> None:
        """Stall (no restart): the same write fails until someone fixes the results volume."""
        message = (
            f"{TASK_TITLE[task]} could not write its results (not retried): {why}. Fix the "
            "results volume, then set spec.suspend to true and back to false to continue from "
            "the latest checkpoint"
        )
        self.health = Health("OutputUnwritable", message, stalled=True)
        old = condition(self.old, "Stalled")
        if not old or old.get("status") != "True" or old.get("reason") != "OutputUnwritable":
            self.event("Warning", "OutputUnwritable", message)

    # ----------------------------------------------------------------- run-level states
    def _retry_after_failure(self) -> bool:
        """A run that used up its restarts may go on once spec.maxRestarts is raised."""
        ready = condition(self.status, "Ready") or {}
        restarts = int(self.status.get("restarts", 0))
        if (
            ready.get("reason") != "BackoffLimitExceeded"
            or restarts >= self.resolved.spec.max_restarts
        ):
            return False
        for task in self.resolved.tasks:
            rec = self._record(task)
            if rec.get("state") == "Failed":
                rec["state"] = "Pending"
                rec["attempt"] = rec.get("attempt", 0) + 1
        self.status["restarts"] = restarts + 1
        self.status.pop("completionTime", None)
        self.status["phase"] = "Pending"
        self.event(
            "Normal", "Retrying", f"spec.maxRestarts raised to {self.resolved.spec.max_restarts}"
        )
        return True

    def _deadline_exceeded(self) -> bool:
        deadline = self.resolved.spec.active_deadline_seconds
        started = parse_time(self.status.get("startTime"))
        if not deadline or started is None or self.resolved.spec.suspend:
            return False
        left = deadline - (self.now - started).total_seconds()
        if left > 0:
            self.requeue(left)
            return False
        self._delete_active()
        self._fail("DeadlineExceeded", f"the run was active longer than {deadline}s")
        return True

    def _suspend(self) -> None:
        for task in self.resolved.tasks:
            rec = self._record(task)
            job = self.jobs.get(rec.get("job") or "")
            stalled = rec.get("state") == "Failed"  # only an unwritable output stalls a task
            if (
                rec.get("state") != "Succeeded"
                and job is not None
                and (self.active(job) or stalled)
            ):
                rec["attempt"] = rec.get("attempt", 0) + 1  # resuming starts a fresh group
                rec["state"] = "Pending"
        self._delete_active()
        self.status["phase"] = "Suspended"
        self.health = Health(
            "Suspended", "spec.suspend is true: no pods run; clearing it resumes the run"
        )

    def _ensure_support_objects(self) -> None:
        want = manifests.experiment_configmap(self.resolved)
        have = self.world.configmap
        if have is None:
            self.changes.create.append(want)
        elif owned_by(have, self.uid) and have.get("data") != want["data"]:
            want["metadata"]["resourceVersion"] = have["metadata"].get("resourceVersion")
            self.changes.replace.append(want)
        if self.world.service is None:
            self.changes.create.append(manifests.headless_service(self.resolved))

    # ------------------------------------------------------------------------- helpers
    def _record(self, task: str) -> dict[str, Any]:
        tasks = self.status.setdefault("tasks", {})
        return tasks.setdefault(task, {"state": "Pending", "attempt": 0})

    def _set_task_phase(self, task: str, rec: dict[str, Any]) -> None:
        started = task != "train" or bool(rec.get("startTime"))
        self.status["phase"] = TASK_PHASE[task] if started else "Pending"

    def _checkpoint_for(self, task: str) -> str | None:
        """Checkpoint a task must use, None for the experiment's own (see resolve._fill)."""
        if task == "train" or f"{task}.checkpoint" in self.resolved.user_set:
            return None
        artifacts = self.status.get("artifacts") or {}
        spec = self.resolved.spec
        choice = spec.evaluation.checkpoint if task == "evaluate" else spec.export.checkpoint
        best = artifacts.get("bestModel") or artifacts.get("bestCheckpoint")  # model_best.pth
        return (choice == "best" and best) or artifacts.get("checkpoint")

    def _delete(self, job: dict[str, Any]) -> None:
        if all(d["metadata"]["name"] != job["metadata"]["name"] for d in self.changes.delete):
            self.changes.delete.append(job)

    def _delete_active(self) -> None:
        for job in self.jobs.values():
            if self.active(job):
                self._delete(job)

    def _fail(self, reason: str, message: str) -> None:
        self.status["phase"] = "Failed"
        self.status["completionTime"] = timestamp(self.now)
        self.health = Health(reason, message, stalled=True)

    def _wait(self, message: str) -> None:
        self.health = Health(self.status["phase"], message)
        self.requeue(2.0)

    def _finish(self) -> Plan:
        phase = self.status["phase"]
        health = self.health or carried_health(self.status, phase)
        self.status["observedGeneration"] = self.generation
        self.status["conditions"] = kstatus(
            self.status.get("conditions") or [],
            phase,
            health,
            now=self.now,
            generation=self.generation,
        )
        self.status["progress"] = tasks_progress(
            self.status, self.resolved.tasks if self.resolved else None
        )
        if self.old.get("phase") != phase and (self.old.get("phase") or phase != "Pending"):
            kind = "Warning" if phase == "Failed" else "Normal"
            self.event(kind, phase, health.message)
        return self.changes
