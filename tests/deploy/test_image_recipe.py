"""The Docker-free image recipes (hack/imagekit/recipe.py) against the Dockerfiles they mirror.

Both build the same images for different users (a Docker engine here, containerd on the local
node there); when one changes and the other does not, these tests say which field drifted. They
parse the Dockerfiles: the final stage's USER, WORKDIR, ENV, ENTRYPOINT, CMD, EXPOSE and user
creation, and every stage's COPYs and locks. No image is built here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from tests.deploy.test_images import instructions, lock_names, stages

ROOT = Path(__file__).resolve().parents[2]
from imagekit import recipe as R  # noqa: E402 - lives in hack/, which is not an installed package

RECIPES = list(R.RECIPES.values())
IDS = [r.name for r in RECIPES]


def _final(recipe: R.Recipe) -> list[tuple[str, str]]:
    return stages(ROOT / recipe.dockerfile)[-1]


def _last(stage: list[tuple[str, str]], word: str) -> str | None:
    found = [rest for w, rest in stage if w == word]
    return found[-1] if found else None


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for token in shlex.split(rest, posix=False):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def _copies(recipe: R.Recipe) -> list[list[str]]:
    """Every COPY of every stage as its words, flags included."""
    return [rest.split() for word, rest in instructions(ROOT / recipe.dockerfile) if word == "COPY"]


def _header(lock: str) -> str:
    return (ROOT / lock).read_text().splitlines()[1]


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_final_stage_runtime_matches_the_recipe(recipe: R.Recipe) -> None:
    final = _final(recipe)
    assert _last(final, "USER") == f"{recipe.user.uid}:{recipe.user.gid}"
    assert _last(final, "WORKDIR") == recipe.workdir
    assert _env(final) == recipe.env
    for word, value in (("ENTRYPOINT", recipe.entrypoint), ("CMD", recipe.cmd)):
        text = _last(final, word)
        assert (json.loads(text) if text else None) == (list(value) if value else None), word
    exposed = " ".join(rest for w, rest in final if w == "EXPOSE").split()
    assert [int(p.split("/")[0]) for p in exposed] == list(recipe.ports)


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_the_user_is_created_as_the_recipe_says(recipe: R.Recipe) -> None:
    runs = " && ".join(rest for word, rest in _final(recipe) if word == "RUN")
    adds = [shlex.split(cmd) for cmd in re.split(r"&&|;", runs) if "useradd" in cmd]
    if recipe.user.name is None:
        assert adds == [], "a bare-uid image creates no user"
        return
    (words,) = adds
    flags = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--uid", "--gid")}
    assert words[-1] == recipe.user.name
    assert int(flags["--uid"]) == recipe.user.uid
    # --user-group makes a group named after the user; the Dockerfile's USER says its gid.
    gid = int(flags["--gid"]) if "--gid" in flags else int(flags["--uid"])
    assert "--gid" in flags or "--user-group" in words
    assert gid == recipe.user.gid
    assert "--create-home" in words and recipe.user.home == f"/home/{recipe.user.name}"


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_the_wheel_is_built_from_the_same_folders_and_locks(recipe: R.Recipe) -> None:
    sources, files = set(), set()
    for words in _copies(recipe):
        if any(w.startswith("--from") for w in words):
            continue
        args = [w for w in words if not w.startswith("--")]
        for src in args[:-1]:
            if (ROOT / src).is_dir():
                sources.add(src)
            elif src in R.WHEEL_FILES:
                files.add(src)
    assert sources == set(recipe.sources)
    assert files == set(R.WHEEL_FILES)
    text = " ".join(rest for _, rest in instructions(ROOT / recipe.dockerfile))
    assert set(re.findall(r"requirements/[\w.-]+\.lock", text)) == {
        recipe.dockerfile_lock,
        R.BUILD_LOCK,
    }


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_extra_files_are_copied_the_same_way(recipe: R.Recipe) -> None:
    copied = {(w[-2], w[-1]) for w in (c for c in _copies(recipe)) if len(w) >= 2}
    for target, source in recipe.files.items():
        assert (source, target) in copied, f"{recipe.dockerfile} does not COPY {source} {target}"


def test_the_tritonserver_shim_runs_the_serving_subcommand() -> None:
    shim = ROOT / R.TRITON_CPU.files["/usr/local/bin/tritonserver"]
    assert shim.stat().st_mode & 0o111, "the shim must be executable (its mode goes in the image)"
    lines = shim.read_text().splitlines()
    assert lines[0] == "#!/bin/sh" and lines[-1] == 'exec rtdetr-serve tritonserver "$@"'


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_modules_proven_absent_are_the_dockerfiles(recipe: R.Recipe) -> None:
    text = (ROOT / recipe.dockerfile).read_text()
    found = re.search(r"for m in \(([^)]*)\) if u\.find_spec", text)
    absent = set(re.findall(r"'(\w+)'", found.group(1))) if found else set()
    assert absent == set(recipe.absent)


@pytest.mark.parametrize("recipe", RECIPES, ids=IDS)
def test_locks_carry_the_recipes_extras(recipe: R.Recipe) -> None:
    for lock in {recipe.lock, recipe.dockerfile_lock}:
        assert re.findall(r"--extra (\w+)", _header(lock)) == list(recipe.extras), lock
        assert "--generate-hashes" in _header(lock) and "requirements/dev.lock" in _header(lock)


def test_the_cpu_trainer_lock_pins_every_trainer_lock_package_at_its_version() -> None:
    gpu, cpu = lock_names(ROOT / "requirements/trainer.lock"), lock_names(ROOT / R.TRAINER_CPU.lock)
    assert {n: (v, cpu.get(n)) for n, v in gpu.items() if cpu.get(n) != v} == {}
    assert "torch" in cpu, "PyPI's torch (with its CUDA wheels) is what the CPU image imports"
    assert "--python-version 3.11" in _header(R.TRAINER_CPU.lock)


def test_the_operator_image_installs_operator_lock_and_only_it() -> None:
    assert R.OPERATOR.lock == R.OPERATOR.dockerfile_lock == "requirements/operator.lock"
    names = lock_names(ROOT / R.OPERATOR.lock)
    assert not set(names) & {"torch", "numpy", "rtdetr-operator"}


def test_the_triton_lock_is_the_dev_locks_versions_with_cpu_onnxruntime() -> None:
    names, dev = lock_names(ROOT / R.TRITON_CPU.lock), lock_names(ROOT / "requirements/dev.lock")
    assert names["nvidia-pytriton"] == "0.7.0"
    assert names["onnxruntime"] == dev["onnxruntime-gpu"], "the CPU build of the tested version"
    assert {n: v for n, v in names.items() if n != "onnxruntime" and dev.get(n) != v} == {}
    assert not set(names) & {"torch", "onnxruntime-gpu", "kopf", "kubernetes"}


def _makefile_commands(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    block = text.split(f"\n{target}:", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()[1:] if "uv pip compile" in line]


@pytest.mark.parametrize("lock", ["requirements/trainer-cpu.lock", "requirements/triton-cpu.lock"])
def test_make_lock_images_regenerates_the_lock_as_its_header_says(lock: str) -> None:
    """The lock's own header is the command that made it; `make lock-images` must run it."""
    header = _header(lock).lstrip("# ").split()
    for command in _makefile_commands("lock-images"):
        words = command.replace("$(BIN)/", "").split()
        if words[-1] == lock:
            assert [w for w in words if w != "--quiet"] == header
            return
    pytest.fail(f"make lock-images does not write {lock}")


def test_base_env_and_venv_are_what_the_dockerfiles_assume() -> None:
    """`${PATH}` in a Dockerfile ENV is the base image's PATH; the recipe expands it the same."""
    env = R.OPERATOR.runtime_env()
    assert env["PATH"] == f"{R.VENV}/bin:{R.BASE_ENV['PATH']}"
    assert "/opt/rtdetr" in (ROOT / "Dockerfile.operator").read_text()
    assert R.TRAINER_CPU.runtime_env()["PATH"].startswith(f"{R.VENV}/bin:")
