"""What goes into each image, declared once and compared with the Dockerfiles by a test.

Each recipe names the lock its third-party packages come from, the source folders that go into
our wheel, the user, WORKDIR, ENV and entrypoint of the final image, the modules that must be
absent and the commands that must succeed before an image is cached. ``tests/deploy/
test_image_recipe.py`` parses the Dockerfile each recipe mirrors and fails when they drift.

Where the Docker build and this one differ by design, the difference is a field of its own with
the reason beside it (the interpreter is Debian's python3 rather than python:slim's or NGC's;
the trainer's CPU lock replaces the NGC image's preinstalled torch).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The Debian release and packages of the shared base rootfs (one base layer for all images).
# python3 is the interpreter (3.11.2 in bookworm); libpython3.11 is the shared library the
# Triton python backend stub links; libstdc++6 is needed by torch, onnxruntime and tritonserver
# (the essential variant has no apt, which is what pulls it into Debian's slim images);
# netbase and tzdata are what python:slim carries beside Python.
SUITE = "bookworm"
MIRRORS = (
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
)
BASE_PACKAGES = ("python3", "ca-certificates", "libpython3.11", "libstdc++6", "netbase", "tzdata")
PYTHON = "3.11"

# The runtime virtual environment (no pip), as in Dockerfile.operator.
VENV = "/opt/rtdetr"
SITE_PACKAGES = f"{VENV}/lib/python{PYTHON}/site-packages"
# What the Dockerfiles' bases put in the environment (python:slim: PATH and LANG); `${PATH}` in
# a recipe's ENV expands to this PATH, as it does against the base image in a Dockerfile.
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
BUILD_LOCK = "requirements/build.lock"
# Files outside the source folders that go into the wheel (pyproject's readme, metadata).
WHEEL_FILES = ("pyproject.toml", "README.md")

TRITON_BIN = f"{SITE_PACKAGES}/pytriton/tritonserver/bin/tritonserver"
TRITON_LIBS = f"/usr/lib/x86_64-linux-gnu:{SITE_PACKAGES}/nvidia_pytriton.libs"
TRITON_STUB = f"{SITE_PACKAGES}/pytriton/tritonserver/python_backend_stubs/{PYTHON}"


@dataclass(frozen=True)
class User:
    """The user the image runs as; ``name`` None means a bare uid with no passwd entry."""

    uid: int
    gid: int
    name: str | None = None
    home: str | None = None


@dataclass(frozen=True)
class Recipe:
    """One image. ``env`` must equal the Dockerfile's final-stage ENV; ``extra_env`` holds what
    the Dockerfile's base image provides differently, each with the reason in a comment."""

    name: str
    repository: str
    tag_suffix: str
    dockerfile: str
    lock: str
    # The lock the Dockerfile installs (differs only for the trainer: NGC's Python 3.12).
    dockerfile_lock: str
    extras: tuple[str, ...]
    sources: tuple[str, ...]
    user: User
    workdir: str | None
    env: dict[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    ports: tuple[int, ...] = ()
    # Top-level modules the image must not contain (checked in the build).
    absent: tuple[str, ...] = ()
    # Shell commands that must succeed in the finished tree before it is cached.
    checks: tuple[str, ...] = ()
    # Extra files: image path -> repository path (mode taken from the repository file).
    files: dict[str, str] = field(default_factory=dict)
    title: str = ""

    def tag(self, version: str) -> str:
        return f"{version}{self.tag_suffix}"

    def runtime_env(self) -> dict[str, str]:
        """The image config's environment: base, then extra_env, then env, `${PATH}` expanded."""
        out = dict(BASE_ENV)
        for key, value in {**self.extra_env, **self.env}.items():
            out[key] = value.replace("${PATH}", out["PATH"])
        return out


OPERATOR = Recipe(
    name="operator",
    repository="localhost/rtdetr-operator",
    tag_suffix="",
    dockerfile="Dockerfile.operator",
    lock="requirements/operator.lock",
    dockerfile_lock="requirements/operator.lock",
    extras=("operator",),
    sources=("spec", "operator", "serving"),
    user=User(uid=65532, gid=65532),
    workdir=None,
    env={
        "PATH": f"{VENV}/bin:${{PATH}}",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
    },
    entrypoint=("rtdetr-operator",),
    ports=(8080,),
    absent=("torch", "numpy", "rtdetr_trainer"),
    checks=("rtdetr-operator --help > /dev/null",),
    title="rtdetr-operator",
)

TRAINER_CPU = Recipe(
    name="trainer-cpu",
    repository="localhost/rtdetr-trainer",
    tag_suffix="-cpu",
    dockerfile="Dockerfile.trainer",
    lock="requirements/trainer-cpu.lock",
    dockerfile_lock="requirements/trainer.lock",
    extras=("trainer", "serving"),
    sources=("spec", "trainer", "operator", "serving"),
    user=User(uid=10001, gid=10001, name="rtdetr", home="/home/rtdetr"),
    workdir="/home/rtdetr",
    env={"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1", "PYTHONUNBUFFERED": "1"},
    # The Dockerfile installs into the NGC image's system Python, whose scripts are on its PATH;
    # here the packages live in a venv on Debian's python3, so its bin goes first.
    extra_env={"PATH": f"{VENV}/bin:${{PATH}}"},
    checks=(
        'python -c "import torch, rtdetr_trainer, rtdetr_serving.engine_build, '
        'rtdetr_serving.repository; print(torch.__version__)"',
        "rtdetr --help > /dev/null",
        "rtdetr-serve --help > /dev/null",
    ),
    title="rtdetr-trainer",
)

TRITON_CPU = Recipe(
    name="triton-cpu",
    repository="localhost/rtdetr-triton",
    tag_suffix="-cpu",
    dockerfile="Dockerfile.triton-cpu",
    lock="requirements/triton-cpu.lock",
    dockerfile_lock="requirements/triton-cpu.lock",
    extras=("serving",),
    sources=("spec", "serving"),
    # NGC's tritonserver images run as this uid; the operator's Triton pods use runAsUser 1000.
    user=User(uid=1000, gid=1000, name="triton-server", home="/home/triton-server"),
    workdir="/home/triton-server",
    env={"PATH": f"{VENV}/bin:${{PATH}}", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
    ports=(8000, 8001, 8002),
    absent=("torch", "rtdetr_trainer", "rtdetr_operator"),
    checks=(
        'python -c "import numpy, onnxruntime, rtdetr_serving.repository"',
        "rtdetr-serve --help > /dev/null",
        f"test -x {TRITON_STUB}/triton_python_backend_stub",
        f"LD_LIBRARY_PATH={TRITON_LIBS} {TRITON_BIN} --help 2>&1 | grep -q 'Usage: tritonserver'",
    ),
    files={"/usr/local/bin/tritonserver": "docker/tritonserver"},
    title="rtdetr-triton",
)

RECIPES: dict[str, Recipe] = {r.name: r for r in (OPERATOR, TRAINER_CPU, TRITON_CPU)}
