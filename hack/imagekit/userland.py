"""The config layer's tree: the image's user, its home directory and extra files.

The essential Debian rootfs has no ``useradd`` (no ``passwd`` package), and running it would
stamp today's date into /etc/shadow anyway. So the entries ``useradd --create-home --uid U
--user-group NAME`` would make are written directly: one line in /etc/passwd (shell /bin/sh,
Debian's and Ubuntu's useradd default), one in /etc/group, and the home directory owned by the
user. Parent directories take their mode and owner from the base rootfs, so the layer changes
nothing but what it adds.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .recipe import Recipe


def config_tree(recipe: Recipe, rootfs: Path, tree: Path, repo: Path) -> None:
    """Write the files of ``recipe``'s config layer into the empty directory ``tree``."""
    tree.mkdir(parents=True)
    user = recipe.user
    if user.name:
        passwd = _with_entry(
            rootfs / "etc/passwd",
            user.name,
            user.uid,
            f"{user.name}:x:{user.uid}:{user.gid}::{user.home or '/'}:/bin/sh",
        )
        group = _with_entry(rootfs / "etc/group", user.name, user.gid, f"{user.name}:x:{user.gid}:")
        _parents(tree, rootfs, "etc/passwd")
        for name, text in (("passwd", passwd), ("group", group)):
            _write(tree / "etc" / name, text.encode(), rootfs / "etc" / name)
    if user.home:
        _parents(tree, rootfs, user.home)
        home = tree / user.home.lstrip("/")
        home.mkdir(mode=0o750)
        home.chmod(0o750)
        os.chown(home, user.uid, user.gid)
    if (
        recipe.workdir
        and recipe.workdir != user.home
        and not (rootfs / recipe.workdir.lstrip("/")).exists()
    ):
        _parents(tree, rootfs, recipe.workdir)
        (tree / recipe.workdir.lstrip("/")).mkdir(mode=0o755)
    for target, source in sorted(recipe.files.items()):
        _parents(tree, rootfs, target)
        dest = tree / target.lstrip("/")
        shutil.copyfile(repo / source, dest)
        dest.chmod(0o755 if os.access(repo / source, os.X_OK) else 0o644)
        os.chown(dest, 0, 0)


def _with_entry(path: Path, name: str, ident: int, line: str) -> str:
    """``path``'s text plus ``line``; refuses a name or id the base already uses."""
    text = path.read_text()
    for existing in text.splitlines():
        fields = existing.split(":")
        if len(fields) > 2 and (fields[0] == name or fields[2] == str(ident)):
            raise ValueError(f"{path} already has {existing!r}; cannot add {line!r}")
    return text + ("" if text.endswith("\n") or not text else "\n") + line + "\n"


def _parents(tree: Path, rootfs: Path, target: str) -> None:
    """Create the parents of ``target`` in ``tree`` with the base rootfs's mode and owner."""
    parts = Path(target.lstrip("/")).parts
    for i in range(1, len(parts)):
        rel = Path(*parts[:i])
        made = tree / rel
        if made.exists():
            continue
        made.mkdir()
        ref = rootfs / rel
        st = ref.stat() if ref.is_dir() and not ref.is_symlink() else None
        made.chmod(st.st_mode & 0o7777 if st else 0o755)
        os.chown(made, st.st_uid if st else 0, st.st_gid if st else 0)


def _write(dest: Path, data: bytes, like: Path) -> None:
    dest.write_bytes(data)
    st = like.stat()
    dest.chmod(st.st_mode & 0o7777)
    os.chown(dest, st.st_uid, st.st_gid)
