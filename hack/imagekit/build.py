"""Assemble an image: base -> third-party layer -> app layer -> config layer -> OCI layout.

Four layers, ordered by how often they change, each cached under its own key (keys.py):

1. base: the Debian rootfs (shared by every image).
2. deps: ``/opt/rtdetr``, a venv on Debian's python3 without pip, with the image's lock installed
   hash-checked by uv and compiled. Gigabytes for the trainer, so it is its own layer: a source
   change neither rebuilds nor re-imports it.
3. app: our wheel (built from the recipe's source folders with requirements/build.lock's
   setuptools) installed into that venv, compiled, then the recipe's checks; a failing check
   keeps the image out of the cache.
4. config: /etc/passwd and /etc/group entries, the home directory and extra files such as the
   tritonserver shim, written directly (no useradd in the essential rootfs).

Bytecode is compiled with ``--invalidation-mode unchecked-hash``: independent of file times (so
reproducible, and valid under the fixed mtimes of the layer tars), and never rewritten at run
time on a read-only root filesystem.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import RECIPE_VERSION
from . import keys as K
from .oci import (
    MT_CONFIG,
    MT_LAYER,
    MT_MANIFEST,
    BlobStore,
    Descriptor,
    canonical_json,
    image_config,
    index,
    layout_entries,
    manifest,
    tree_entries,
    write_layout,
    write_tar,
)
from .recipe import BASE_PACKAGES, BUILD_LOCK, RECIPES, SITE_PACKAGES, VENV, WHEEL_FILES, Recipe
from .rootfs import STAGE, BuildError, build_base, run_step
from .userland import config_tree


@dataclass(frozen=True)
class BuiltImage:
    """An image in the cache: an OCI image layout directory whose index names ``references``."""

    name: str
    references: tuple[str, ...]
    layout: Path
    digest: str  # of the manifest: what `ctr images ls` shows for each reference
    size: int  # config + layers, bytes
    key: str
    layers: tuple[str, ...]

    @property
    def reference(self) -> str:
        return self.references[0]

    def write_archive(self, dest: Path) -> Path:
        """The layout as one OCI archive tar (for ctr/podman/skopeo elsewhere); atomic."""
        tmp = dest.with_name(f".{dest.name}.tmp")
        with open(tmp, "wb") as fh:
            write_tar(layout_entries(self.layout), fh)
        tmp.rename(dest)
        return dest

    @classmethod
    def load(cls, layout: Path) -> BuiltImage:
        data = json.loads((layout / "image.json").read_text())
        layers = tuple(layer["digest"] for layer in data["layers"])
        return cls(
            data["name"],
            tuple(data["references"]),
            layout,
            data["digest"],
            data["size"],
            data["key"],
            layers,
        )


@dataclass(frozen=True)
class Base:
    rootfs: Path
    layer: Descriptor


@dataclass(frozen=True)
class Ctx:
    """One ensure_images() call: the source tree it builds from and what all images share."""

    root: Path
    store: BlobStore
    base: Base
    version: str
    quiet: bool

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(f"images: {msg}", file=sys.stderr, flush=True)


def project_version(root: Path = K.REPO_ROOT) -> str:
    return str(tomllib.loads((root / "pyproject.toml").read_text())["project"]["version"])


def ensure_base(store: BlobStore, refresh: bool = False) -> Base:
    final = K.images_root() / "base" / K.base_key()
    if refresh:
        with K.locked(final.name):
            K.remove_tree(final)
    if not (final / "meta.json").exists():
        print(f"images: building the Debian base rootfs into {final}", file=sys.stderr)
    K.build_once(final, lambda tmp: build_base(tmp, store, tmp / "build.log"))
    meta = json.loads((final / "meta.json").read_text())
    if not store.has(meta["digest"]):  # blobs/ was cleaned: the tree gives back the same blob
        store.put_tree(tree_entries(final / "rootfs"))
    return Base(final / "rootfs", Descriptor(MT_LAYER, meta["digest"], meta["size"]))


def ensure_deps(recipe: Recipe, ctx: Ctx) -> tuple[Path, Descriptor]:
    """The venv with the lock installed, as a tree (lower layer of the app step) and a blob."""
    final = K.images_root() / "trees" / K.deps_key(recipe, ctx.base.layer.digest, ctx.root)

    def build(tmp: Path) -> None:
        ctx.say(f"{recipe.name}: installing {recipe.lock} into {VENV}")
        started = time.monotonic()
        stage, upper = _stage(tmp), tmp / "upper"
        shutil.copyfile(ctx.root / recipe.lock, stage / "deps.lock")
        script = f"""
python3 -m venv --without-pip {VENV}
{STAGE}/uv pip install --python {VENV}/bin/python --require-hashes --no-deps -r {STAGE}/deps.lock
rm -f {VENV}/.lock
# Some third-party files are templates or Python 2 and do not compile (pip skips them too).
python3 -m compileall -q -j 2 --invalidation-mode unchecked-hash {SITE_PACKAGES} \\
    || echo "compileall: some third-party files stay uncompiled"
"""
        run_step([ctx.base.rootfs], upper, stage, script, tmp / "build.log", f"{recipe.name} deps")
        _keep_only(upper, VENV)
        layer = ctx.store.put_tree(tree_entries(upper, [VENV.lstrip("/")]))
        K.remove_tree(stage)
        meta = {
            **layer.json(),
            "seconds": round(time.monotonic() - started, 1),
            "lock": recipe.lock,
        }
        K.write_json(tmp / "meta.json", meta)

    K.build_once(final, build)
    meta = json.loads((final / "meta.json").read_text())
    layer = Descriptor(MT_LAYER, meta["digest"], meta["size"])
    if not ctx.store.has(layer.digest):
        ctx.store.put_tree(tree_entries(final / "upper", [VENV.lstrip("/")]))
    return final / "upper", layer


def ensure_app(recipe: Recipe, ctx: Ctx, deps: tuple[Path, Descriptor]) -> Descriptor:
    """Our wheel installed over the deps tree; only the layer is kept (it is small)."""
    key = K.app_key(recipe, deps[1].digest, ctx.root)
    record = K.images_root() / "layers" / f"{key}.json"
    if record.exists():
        data = json.loads(record.read_text())
        if ctx.store.has(data["digest"]):
            return Descriptor(MT_LAYER, data["digest"], data["size"])
    with K.locked(key), K.scratch(key) as tmp:
        ctx.say(f"{recipe.name}: building our wheel from {', '.join(recipe.sources)}")
        started = time.monotonic()
        stage, upper = _stage(tmp), tmp / "upper"
        _copy_sources(recipe, ctx.root, stage / "src")
        shutil.copyfile(ctx.root / BUILD_LOCK, stage / "build.lock")
        lowers = [deps[0], ctx.base.rootfs]
        run_step(lowers, upper, stage, _app_script(recipe), tmp / "build.log", recipe.name)
        _keep_only(upper, VENV)
        layer = ctx.store.put_tree(tree_entries(upper, [VENV.lstrip("/")]))
        K.write_json(record, {**layer.json(), "seconds": round(time.monotonic() - started, 1)})
    return layer


def _app_script(recipe: Recipe) -> str:
    """Build our wheel with the locked backend, install it, compile it, prove the image."""
    prove_absent = (
        f"import importlib.util as u, sys; bad = [m for m in {list(recipe.absent)!r} "
        "if u.find_spec(m)]; sys.exit(f'the image must not contain {bad}' if bad else 0)"
    )
    checks = "\n".join(recipe.checks)
    return rf"""
B={STAGE}/buildenv
python3 -m venv --without-pip $B
{STAGE}/uv pip install --python $B/bin/python --require-hashes --no-deps -r {STAGE}/build.lock
cd {STAGE}/src
$B/bin/python -c "from setuptools import build_meta as b; b.build_wheel('{STAGE}/wheels')"
cd /
{STAGE}/uv pip install --python {VENV}/bin/python --no-deps --no-cache {STAGE}/wheels/*.whl
rm -f {VENV}/.lock
# uv notes when it installed a local wheel (for its own freshness checks): not reproducible.
for info in {SITE_PACKAGES}/rtdetr_operator-*.dist-info; do
    rm -f "$info/uv_cache.json" && sed -i '/uv_cache\.json,/d' "$info/RECORD"
done
python3 -m compileall -q -j 2 --invalidation-mode unchecked-hash {SITE_PACKAGES}/rtdetr_*
python -c {shlex.quote(prove_absent)}
{checks}
"""


def _stage(tmp: Path) -> Path:
    stage = tmp / "stage"
    (stage / "wheels").mkdir(parents=True)
    return stage


def _copy_sources(recipe: Recipe, root: Path, dest: Path) -> None:
    for rel in K.source_files(root, recipe.sources, WHEEL_FILES):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, dest / rel)


def _keep_only(upper: Path, keep: str) -> None:
    """Drop the step's scratch (mount points, /tmp, /root) from the upper dir: only ``keep``."""
    parts = Path(keep.lstrip("/")).parts
    for i, name in enumerate(parts):
        for child in upper.joinpath(*parts[:i]).iterdir():
            if child.name == name:
                continue
            if child.is_dir() and not child.is_symlink():
                K.remove_tree(child)
            else:
                child.unlink()


def config_layer(recipe: Recipe, ctx: Ctx, work: Path) -> Descriptor | None:
    """passwd/group entries, the home directory and extra files, as a tiny layer (or none)."""
    tree = work / "config"
    config_tree(recipe, ctx.base.rootfs, tree, ctx.root)
    layer = ctx.store.put_tree(tree_entries(tree)) if any(tree.iterdir()) else None
    K.remove_tree(tree)
    return layer


def ensure_image(recipe: Recipe, ctx: Ctx) -> BuiltImage:
    key = K.image_key(recipe, ctx.base.layer.digest, ctx.root)
    final = K.images_root() / "oci" / f"{recipe.name}-{key}"
    if (final / "image.json").exists():
        return BuiltImage.load(final)
    started = time.monotonic()
    deps = ensure_deps(recipe, ctx)
    app = ensure_app(recipe, ctx, deps)
    version = ctx.version
    store = ctx.store
    tag = recipe.tag(version)
    references = (f"{recipe.repository}:{tag}", f"{recipe.repository}:{tag}-{key[:12]}")

    def build(tmp: Path) -> None:
        layers = [
            (ctx.base.layer, "debian bookworm (mmdebstrap essential) + " + " ".join(BASE_PACKAGES)),
            (deps[1], f"{VENV}: venv + {recipe.lock}"),
            (app, f"{VENV}: our wheel ({' '.join(recipe.sources)})"),
        ]
        cfg = config_layer(recipe, ctx, tmp)
        if cfg is not None:  # the operator runs as a bare uid and adds no files: no layer
            layers.append((cfg, "user, home and files: " + (recipe.user.name or "")))
        labels = {
            "org.opencontainers.image.title": recipe.title,
            "org.opencontainers.image.version": version,
            "dev.rtdetr.image-key": key,
            "dev.rtdetr.recipe": RECIPE_VERSION,
        }
        config = image_config(
            layers,
            user=f"{recipe.user.uid}:{recipe.user.gid}",
            env=recipe.runtime_env(),
            entrypoint=recipe.entrypoint,
            cmd=recipe.cmd,
            workdir=recipe.workdir,
            ports=recipe.ports,
            labels=labels,
        )
        config_desc = store.put_bytes(canonical_json(config), MT_CONFIG)
        annotations = {k: v for k, v in labels.items() if k.startswith("org.opencontainers")}
        man = manifest(config_desc, [d for d, _ in layers], annotations)
        man_desc = store.put_bytes(canonical_json(man), MT_MANIFEST)
        digests = [man_desc.digest, config_desc.digest, *(d.digest for d, _ in layers)]
        write_layout(tmp, store, index(man_desc, references), sorted(set(digests)))
        meta = {
            "name": recipe.name,
            "references": list(references),
            "digest": man_desc.digest,
            "size": config_desc.size + sum(d.size for d, _ in layers),
            "key": key,
            "layers": [{**d.json(), "created_by": by} for d, by in layers],
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 1),
        }
        K.write_json(tmp / "image.json", meta)

    K.build_once(final, build, marker="image.json")
    return BuiltImage.load(final)


def ensure_images(
    names: Sequence[str] | None = None,
    *,
    refresh_base: bool = False,
    quiet: bool = False,
    root: Path = K.REPO_ROOT,
) -> list[BuiltImage]:
    """Build what is missing and return every named image (default: all), cached or new.

    ``root`` is the source tree the locks, sources and extra files come from (the repository).
    """
    unknown = sorted(set(names or ()) - set(RECIPES))
    if unknown:
        raise BuildError(f"unknown image(s) {unknown}; known: {sorted(RECIPES)}")
    store = BlobStore(K.images_root())
    base = ensure_base(store, refresh=refresh_base)
    ctx = Ctx(root.resolve(), store, base, project_version(root), quiet)
    return [ensure_image(RECIPES[n], ctx) for n in (names or list(RECIPES))]
