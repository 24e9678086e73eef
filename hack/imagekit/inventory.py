"""What the image cache holds (``images.py list``) and dropping what no recipe uses (``prune``).

"Current" means: the key today's recipes, locks and sources give, on the cached base. Anything
else is an older build, kept until pruned so that switching branches back and forth stays warm.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from . import keys as K
from .oci import BlobStore
from .recipe import RECIPES


@dataclass(frozen=True)
class Entry:
    kind: str  # base, deps, image, blobs
    name: str
    size: int
    current: bool
    detail: str


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            total += (Path(dirpath) / name).lstat().st_size
    return total


def _base_digest() -> str | None:
    meta = K.images_root() / "base" / K.base_key() / "meta.json"
    return json.loads(meta.read_text())["digest"] if meta.exists() else None


def current_keys() -> dict[str, set[str]]:
    """Keys today's inputs map to, per kind (empty sets when the base is not built yet)."""
    out: dict[str, set[str]] = {"base": {K.base_key()}, "deps": set(), "app": set(), "image": set()}
    base = _base_digest()
    if base is None:
        return out
    for recipe in RECIPES.values():
        out["image"].add(f"{recipe.name}-{K.image_key(recipe, base)}")
        deps = K.deps_key(recipe, base)
        out["deps"].add(deps)
        meta = K.images_root() / "trees" / deps / "meta.json"
        if meta.exists():
            out["app"].add(K.app_key(recipe, json.loads(meta.read_text())["digest"]))
    return out


def entries() -> list[Entry]:
    root, cur = K.images_root(), current_keys()
    out: list[Entry] = []
    for path in sorted((root / "base").glob("*/meta.json")):
        meta = json.loads(path.read_text())
        out.append(
            Entry(
                "base",
                path.parent.name,
                tree_size(path.parent / "rootfs"),
                path.parent.name in cur["base"],
                f"{meta['digest'][:19]} built {meta['built_at']}",
            )
        )
    for path in sorted((root / "trees").glob("*/meta.json")):
        meta = json.loads(path.read_text())
        out.append(
            Entry(
                "deps",
                path.parent.name,
                tree_size(path.parent / "upper"),
                path.parent.name in cur["deps"],
                f"{meta['lock']} {meta['digest'][:19]}",
            )
        )
    for path in sorted((root / "oci").glob("*/image.json")):
        meta = json.loads(path.read_text())
        out.append(
            Entry(
                "image",
                path.parent.name,
                meta["size"],
                path.parent.name in cur["image"],
                f"{meta['digest']} {' '.join(meta['references'])}",
            )
        )
    blobs = BlobStore(root).dir
    sizes = [p.stat().st_size for p in blobs.iterdir()] if blobs.is_dir() else []
    out.append(Entry("blobs", str(blobs), sum(sizes), True, f"{len(sizes)} blobs"))
    return out


def prune() -> list[str]:
    """Remove images, trees, layer records and bases no current key names, the logs of failed
    builds, then blobs nothing kept refers to."""
    root, cur = K.images_root(), current_keys()
    if not cur["image"]:
        return []  # without a base nothing can be called current: keep everything
    removed: list[str] = []
    for kind, folder, marker in (
        ("image", "oci", "image.json"),
        ("deps", "trees", "meta.json"),
        ("base", "base", "meta.json"),
    ):
        for path in sorted((root / folder).glob(f"*/{marker}")):
            if path.parent.name not in cur[kind]:
                K.remove_tree(path.parent)
                removed.append(f"{folder}/{path.parent.name}")
    for path in sorted((root / "layers").glob("*.json")):
        if path.stem not in cur["app"]:
            path.unlink()
            removed.append(f"layers/{path.name}")
    for log in sorted(root.glob("failed-*.log")):
        log.unlink()
        removed.append(log.name)
    keep = {json.loads(p.read_text())["digest"] for p in (root / "layers").glob("*.json")}
    for folder in ("trees", "base"):
        keep |= {json.loads(p.read_text())["digest"] for p in (root / folder).glob("*/meta.json")}
    store = BlobStore(root)
    for blob in sorted(store.dir.iterdir()) if store.dir.is_dir() else []:
        # A blob still linked from a kept image layout has more than one link.
        if blob.stat().st_nlink == 1 and f"sha256:{blob.name}" not in keep:
            blob.unlink()
            removed.append(f"blobs/sha256/{blob.name[:12]}")
    return removed
