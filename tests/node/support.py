"""Objects the node tier applies, derived from examples/local so the examples are what is tested.

Only sizes change: the tests train a few epochs on a hundred small images (the examples train the
demo's 8 epochs on 400), so the whole tier stays within minutes on two cores.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from tests.support import table_rows

REPO = Path(__file__).resolve().parents[2]

import localstack  # noqa: E402 - lives in hack/, which is not an installed package
from clusterkit import nodeconfig, nodehost, realnode  # noqa: E402, F401 - re-exported

EXAMPLES = localstack.LOCAL_EXAMPLES
TRAINER_IMAGE = "localhost/rtdetr-trainer:0.1.0-cpu"


def example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return copy.deepcopy(next(d for d in docs if d["kind"] == kind))


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 2.0) -> Any:
    return localstack.wait_for(what, probe, timeout, interval)


def new_namespace(stack: localstack.Stack) -> str:
    name = f"node-{uuid.uuid4().hex[:8]}"
    localstack.ensure_namespace(stack, name, localstack.RESTRICTED)
    return name


def apply(stack: localstack.Stack, namespace: str, *objs: dict[str, Any]) -> None:
    items = []
    for obj in objs:
        obj = copy.deepcopy(obj)
        obj["metadata"]["namespace"] = namespace
        items.append(obj)
    body = {"apiVersion": "v1", "kind": "List", "items": items}
    stack.kubectl("apply", "-f", "-", input=json.dumps(body))


def dataset(
    stack: localstack.Stack,
    namespace: str,
    *,
    num_images: int,
    size: int,
    corrupt: str | None = None,
    timeout: float = 300,
) -> None:
    """The example's dataset Job (smaller), optionally followed by ``corrupt`` (a Python
    statement run in the trainer image with ``coco`` bound to the train split's JSON)."""
    docs = example("dataset.yaml")
    claim, job = of_kind(docs, "PersistentVolumeClaim"), of_kind(docs, "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    cmd = container["command"]
    cmd[cmd.index("--num-images") + 1] = str(num_images)
    cmd[cmd.index("--image-size") + 1] = f"{size}x{size}"
    if corrupt is not None:
        script = (
            "import json, subprocess, sys\n"
            f"subprocess.run({cmd!r}, check=True)\n"
            "path = '/data/warehouse/annotations/train.json'\n"
            "coco = json.load(open(path))\n"
            f"{corrupt}\n"
            "json.dump(coco, open(path, 'w'))\n"
        )
        container["command"] = ["python", "-c", script]
    apply(stack, namespace, claim, job)
    name = job["metadata"]["name"]

    def done() -> bool:
        status = stack.get("job", name, "-n", namespace).get("status", {})
        if status.get("failed"):
            raise AssertionError(f"dataset Job failed:\n{logs(stack, namespace, f'job/{name}')}")
        return bool(status.get("succeeded"))

    wait_for(f"dataset Job {namespace}/{name}", done, timeout)


def results_claim() -> dict[str, Any]:
    """The example's results claim (one per namespace; each training has its own subPath)."""
    return of_kind(example("training.yaml"), "PersistentVolumeClaim")


def training(name: str, *, epochs: int, size: int, nodes: int = 2, **spec: Any) -> dict[str, Any]:
    """The example's RTDETRTraining, renamed and resized."""
    cr = of_kind(example("training.yaml"), "RTDETRTraining")
    cr["metadata"]["name"] = name
    exp = cr["spec"]["experiment"]
    aug = exp["dataset"]["augmentation"]
    aug["eval_spatial_size"] = aug["train_spatial_size"] = [size, size]
    aug["multi_scales"] = [[size, size]]
    exp["train"].update(num_epochs=epochs, num_nodes=nodes, validation_interval=epochs)
    exp["train"]["optim"]["lr_steps"] = [max(1, epochs - 1)]
    exp["train"]["optim"]["warmup_steps"] = 10
    for task in ("evaluate", "export"):
        exp[task].update(input_width=size, input_height=size)
    # Progress lines every few seconds, so tests see epochs move without waiting 30 s.
    cr["spec"]["env"].append({"name": "RTDETR_LOG_EVERY_S", "value": "3"})
    # Progress lines for the operator as often (the operator reads them every few seconds here).
    cr["spec"]["env"].append({"name": "RTDETR_PROGRESS_EVERY_S", "value": "3"})
    cr["spec"].update(spec)
    return cr


def status(stack: localstack.Stack, namespace: str, kind: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = stack.get(kind, name, "-n", namespace).get("status") or {}
    return out


def wait_phase(
    stack: localstack.Stack,
    namespace: str,
    name: str,
    phases: set[str],
    timeout: float,
    kind: str = "rtdetrtraining",
) -> dict[str, Any]:
    """Poll until the CR's phase is one of ``phases``; print phase changes as they happen."""
    seen: list[str] = []
    started = time.monotonic()

    def probe() -> dict[str, Any] | None:
        st = status(stack, namespace, kind, name)
        phase = st.get("phase", "")
        if not seen or seen[-1] != phase:
            seen.append(phase)
            print(f"{kind}/{name}: {phase} after {time.monotonic() - started:.0f}s", flush=True)
        return st if phase in phases else None

    try:
        result: dict[str, Any] = wait_for(f"{kind}/{name} in {sorted(phases)}", probe, timeout)
    except TimeoutError as err:
        raise AssertionError(f"{err}; phases seen {seen}\n{describe(stack, namespace)}") from None
    return result


def logs(stack: localstack.Stack, namespace: str, what: str, **flags: str) -> str:
    args = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    return stack.kubectl("logs", what, "-n", namespace, *args, check=False)


def pods(stack: localstack.Stack, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = stack.get("pods", "-n", namespace, "-l", selector)["items"]
    return items


def table_row(stack: localstack.Stack, namespace: str, kind: str, name: str) -> dict[str, str]:
    """``kubectl get KIND NAME`` as {column: cell} (blank cells stay blank, split by header)."""
    return table_rows(stack.kubectl("get", kind, name, "-n", namespace))[0]


def wait_live_progress(
    stack: localstack.Stack, namespace: str, name: str, timeout: float
) -> dict[str, str]:
    """The ``kubectl get rtt`` row once it shows epoch, percent and ETA of a running training."""

    def probe() -> dict[str, str] | None:
        st = status(stack, namespace, "rtdetrtraining", name)
        if st.get("phase") in ("Succeeded", "Failed", "Evaluating", "Exporting"):
            raise AssertionError(f"{name} trained without showing live progress:\n{st}")
        if not (st.get("trainingProgress") or {}).get("eta"):
            return None
        row = table_row(stack, namespace, "rtt", name)
        return row if row["PHASE"] == "Training" and row["EPOCH"] and row["ETA"] else None

    result: dict[str, str] = wait_for(f"live progress of {name}", probe, timeout, interval=1.0)
    return result


def describe(stack: localstack.Stack, namespace: str) -> str:
    """Everything useful when a wait fails: objects, events, the operator's log tail."""
    parts = [
        stack.kubectl("get", "rtdetrtrainings,rtdetrdeployments,jobs,pods", "-n", namespace,
                      "-o", "wide", check=False),
        stack.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False)[
            -4000:
        ],
        stack.kubectl("logs", f"deployment/{localstack.OPERATOR_DEPLOYMENT}", "-n",
                      localstack.OPERATOR_NAMESPACE, "--tail=60", check=False),
    ]  # fmt: skip
    return "\n".join(parts)


def volume_path(stack: localstack.Stack, namespace: str, claim: str) -> Path:
    """Where a claim's hostPath volume is on this machine (the node is this machine)."""
    pvc = stack.get("pvc", claim, "-n", namespace)
    pv = stack.get("pv", pvc["spec"]["volumeName"])
    return Path(pv["spec"]["hostPath"]["path"])
