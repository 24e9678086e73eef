"""Where the image cache lives and the content keys that decide what gets rebuilt.

Everything is under ``${RTDETR_CLUSTER_CACHE:-${XDG_CACHE_HOME:-~/.cache}/rtdetr-operator}/
images/``, beside the control-plane binaries, so every clone and worktree shares it:

    base/<key>/         the Debian rootfs (lower layer of every build step) and base.json
    trees/<key>/        third-party layers as directories (lower layer of the app step)
    layers/<key>.json   descriptor of the layer built from the key's inputs
    blobs/sha256/<hex>  every blob (layers, configs, manifests), content-addressed
    oci/<name>-<key>/   one OCI image layout per image key (blobs hardlinked) + image.json
    locks/, tmp/        one lock file per key; builds happen in tmp/ and are renamed in place

A key is a hash of the recipe version and of everything that goes into that piece: the base's
package list and mirrors; a dependency layer's lock and the base layer's digest; the app
layer's sources, build lock, the dependency layer's digest and this package's code. The base
is keyed by its package list only (Debian's archive changes under the same list), so it is
refreshed by deleting ``base/`` or ``images.py build --refresh-base``; its layer digest feeds
every later key, so a refreshed base rebuilds everything above it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

from clusterkit.build import cache_root

from . import RECIPE_VERSION
from .recipe import BASE_PACKAGES, BUILD_LOCK, MIRRORS, SUITE, VENV, WHEEL_FILES, Recipe

REPO_ROOT = Path(__file__).resolve().parents[2]
# Never part of a wheel's input: caches, build outputs and editable-install metadata.
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "dist"}
_SKIP_SUFFIXES = (".pyc", ".pyo", ".egg-info")


def images_root() -> Path:
    return cache_root() / "images"


def digest(*parts: str | bytes) -> str:
    """sha256 over the parts, each terminated by NUL so ("ab", "c") != ("a", "bc")."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def source_files(
    root: Path, folders: Sequence[str], files: Sequence[str] = WHEEL_FILES
) -> list[str]:
    """Relative paths of the wheel's inputs, sorted: what is hashed is exactly what is copied."""
    out = [f for f in files if (root / f).is_file()]
    for folder in folders:
        for dirpath, dirnames, filenames in os.walk(root / folder):
            dirnames[:] = [
                d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(_SKIP_SUFFIXES)
            ]
            for name in filenames:
                if not name.endswith(_SKIP_SUFFIXES):
                    out.append(str((Path(dirpath) / name).relative_to(root)))
    return sorted(out)


def sources_digest(root: Path, folders: Sequence[str], files: Sequence[str] = WHEEL_FILES) -> str:
    h = hashlib.sha256()
    for rel in source_files(root, folders, files):
        path = root / rel
        executable = "x" if os.access(path, os.X_OK) else "-"
        h.update(f"{rel}\0{executable}\0".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def kit_digest() -> str:
    """This package's own code: an edit rebuilds app layers and images (seconds), never the
    base or the third-party layers (minutes); those change with RECIPE_VERSION."""
    kit = Path(__file__).resolve().parent
    return digest(*(p.read_bytes() for p in sorted(kit.glob("*.py"))))


def base_key() -> str:
    return (
        "base-"
        + digest(RECIPE_VERSION, SUITE, "essential", *MIRRORS, "packages", *sorted(BASE_PACKAGES))[
            :16
        ]
    )


def deps_key(recipe: Recipe, base_digest: str, root: Path = REPO_ROOT) -> str:
    """Same lock on the same base -> same layer, whichever image asks for it."""
    lock = (root / recipe.lock).read_bytes()
    return "deps-" + digest(RECIPE_VERSION, "deps", base_digest, VENV, lock)[:16]


def app_key(recipe: Recipe, deps_digest: str, root: Path = REPO_ROOT) -> str:
    return (
        "app-"
        + digest(
            RECIPE_VERSION,
            "app",
            kit_digest(),
            deps_digest,
            (root / BUILD_LOCK).read_bytes(),
            sources_digest(root, recipe.sources),
            repr(recipe.absent),
            repr(recipe.checks),
        )[:16]
    )


def image_key(recipe: Recipe, base_digest: str, root: Path = REPO_ROOT) -> str:
    """Everything an image is made of, known before anything is built (the warm-path check)."""
    extra_files = [(root / rel).read_bytes() for rel in sorted(recipe.files.values())]
    return digest(
        RECIPE_VERSION,
        kit_digest(),
        base_digest,
        (root / recipe.lock).read_bytes(),
        (root / BUILD_LOCK).read_bytes(),
        sources_digest(root, recipe.sources),
        json.dumps(asdict(recipe), sort_keys=True),
        *extra_files,
    )[:16]


@contextlib.contextmanager
def locked(name: str) -> Iterator[None]:
    """Serialise builders of one key (other processes, other worktrees)."""
    path = images_root() / "locks" / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build_once(final: Path, build: Callable[[Path], object], marker: str = "meta.json") -> Path:
    """Return ``final``, building it first into a temporary directory renamed into place.

    ``build`` writes ``marker`` last; a directory without it (an interrupted removal) is rebuilt.
    """
    if (final / marker).exists():
        return final
    with locked(final.name):
        if (final / marker).exists():  # another builder finished while we waited
            return final
        with scratch(final.name) as tmp:
            build(tmp)
            if not (tmp / marker).exists():
                raise RuntimeError(f"build of {final.name} wrote no {marker}")
            remove_tree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp.rename(final)
    return final


@contextlib.contextmanager
def scratch(name: str) -> Iterator[Path]:
    """An empty ``tmp/<name>-<pid>`` for one build; call it holding ``name``'s lock.

    What builders of the same name left when they were killed is removed first; on failure the
    step's build.log is kept as ``failed-<name>.log`` beside the cache folders.
    """
    tmp_root = images_root() / "tmp"
    for stale in tmp_root.glob(f"{name}-*"):
        remove_tree(stale)
    tmp = tmp_root / f"{name}-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        if (tmp / "build.log").exists():
            shutil.copyfile(tmp / "build.log", images_root() / f"failed-{name}.log")
        raise
    finally:
        remove_tree(tmp)


def remove_tree(path: Path) -> None:
    """rmtree that also removes read-only directories (venvs and rootfs trees have some)."""
    if not path.exists() and not path.is_symlink():
        return

    def _retry(func: Callable[..., object], name: str, _exc: object) -> None:
        Path(name).parent.chmod(0o755)
        func(name)

    shutil.rmtree(path, onerror=_retry)


def write_json(path: Path, data: object) -> None:
    """Atomic JSON write (temp file + rename) so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.rename(path)
