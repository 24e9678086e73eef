"""Deterministic OCI pieces: layer tars, image config, manifest, index and image layouts.

The same tree always gives the same bytes: entries are sorted, every mtime is ``EPOCH``, owners
are numeric with no names, and hard links are written as links to the first path in sort
order. So an unchanged input gives an unchanged digest, and containerd keeps (and does not
unpack again) a layer it already has. Layers are plain tars (``...layer.v1.tar``): compressing
gigabytes of CUDA libraries costs minutes on two cores and buys nothing for a local import.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# 1980-01-01: the oldest time a zip (a wheel) can hold, used for files, pyc headers and JSON.
EPOCH = 315532800
CREATED = "1980-01-01T00:00:00Z"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
PLATFORM = {"architecture": "amd64", "os": "linux"}
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]


class HashingWriter:
    """Counts and hashes what passes through on its way to ``out``."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.size, self.sha = out, 0, hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        self.size += len(data)
        self.out.write(data)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tree_entries(root: Path, top: Sequence[str] | None = None) -> Iterator[tuple[str, Path]]:
    """(name in the tar, path on disk) for ``root`` or its subtrees ``top``, parents first.

    A ``top`` like ``opt/rtdetr`` also yields ``opt`` so the layer carries its parent's mode.
    """
    names: set[str] = set()
    starts = [""] if top is None else list(top)
    for start in starts:
        parts = Path(start).parts
        for i in range(1, len(parts)):
            names.add("/".join(parts[:i]))
        base = root / start if start else root
        if start:
            names.add(start)
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, root)
            for name in dirnames + filenames:
                names.add(name if rel == "." else f"{rel}/{name}")
    for name in sorted(names, key=lambda n: n.split("/")):
        yield name, root / name


def tar_info(
    name: str, st: os.stat_result, path: Path, first_link: dict[tuple[int, int], str]
) -> tarfile.TarInfo:
    """A TarInfo with only what the file is: no times, no user names, no host details."""
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid, info.uname, info.gname = st.st_uid, st.st_gid, "", ""
    info.mtime = EPOCH
    if stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(st.st_mode):
        info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
    elif stat.S_ISREG(st.st_mode):
        inode = (st.st_dev, st.st_ino)
        if st.st_nlink > 1 and inode in first_link:
            info.type, info.linkname = tarfile.LNKTYPE, first_link[inode]
        else:
            first_link.setdefault(inode, name)
            info.type, info.size = tarfile.REGTYPE, st.st_size
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            raise ValueError(f"{path}: an overlay whiteout (a deletion) has no place in a layer")
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(st.st_mode):
        info.type = tarfile.FIFOTYPE
    else:
        raise ValueError(f"{path}: cannot put a socket or unknown file type into a layer")
    return info


def write_tar(entries: Iterable[tuple[str, Path]], out: BinaryIO) -> tuple[str, int]:
    """Stream a tar of ``entries`` into ``out``; return its digest and size."""
    w = HashingWriter(out)
    first_link: dict[tuple[int, int], str] = {}
    for name, path in entries:
        st = path.lstat()
        info = tar_info(name, st, path, first_link)
        w.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        if info.type == tarfile.REGTYPE:
            _copy_exactly(path, info.size, w)
    w.write(b"\0" * (2 * tarfile.BLOCKSIZE))
    return w.digest, w.size


def _copy_exactly(path: Path, size: int, w: HashingWriter) -> None:
    left = size
    with open(path, "rb") as fh:
        while left:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                raise OSError(f"{path} shrank while it was being archived")
            w.write(chunk)
            left -= len(chunk)
    pad = -size % tarfile.BLOCKSIZE
    if pad:
        w.write(b"\0" * pad)


class BlobStore:
    """Content-addressed blobs (``blobs/sha256/<hex>``) shared by every image in the cache."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "blobs" / "sha256"

    def path(self, digest: str) -> Path:
        return self.dir / digest.split(":", 1)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes, media_type: str) -> Descriptor:
        desc = Descriptor(media_type, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
        if not self.has(desc.digest):
            tmp = self._tmp()
            tmp.write_bytes(data)
            self._commit(tmp, desc.digest)
        return desc

    def put_tree(self, entries: Iterable[tuple[str, Path]]) -> Descriptor:
        """Write a layer tar of ``entries`` straight into the store."""
        tmp = self._tmp()
        with open(tmp, "wb") as fh:
            digest, size = write_tar(entries, fh)
        self._commit(tmp, digest)
        return Descriptor(MT_LAYER, digest, size)

    def _tmp(self) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        return self.dir.parent / f".tmp-{os.getpid()}-{os.urandom(4).hex()}"

    def _commit(self, tmp: Path, digest: str) -> None:
        final = self.path(digest)
        if final.exists():
            tmp.unlink()
        else:
            tmp.chmod(0o444)
            tmp.rename(final)


def image_config(
    layers: Sequence[tuple[Descriptor, str]],
    *,
    user: str,
    env: dict[str, str],
    entrypoint: Sequence[str] | None,
    cmd: Sequence[str] | None,
    workdir: str | None,
    ports: Sequence[int],
    labels: dict[str, str],
) -> dict[str, object]:
    """The OCI image config; ``layers`` are (descriptor, what made it) for the history."""
    config: dict[str, object] = {"User": user, "Env": [f"{k}={v}" for k, v in env.items()]}
    if entrypoint is not None:
        config["Entrypoint"] = list(entrypoint)
    if cmd is not None:
        config["Cmd"] = list(cmd)
    if workdir:
        config["WorkingDir"] = workdir
    if ports:
        config["ExposedPorts"] = {f"{p}/tcp": {} for p in ports}
    if labels:
        config["Labels"] = dict(labels)
    return {
        **PLATFORM,
        "created": CREATED,
        "config": config,
        # Uncompressed layers: the digest of the blob is the digest of the tar (the diff id).
        "rootfs": {"type": "layers", "diff_ids": [d.digest for d, _ in layers]},
        "history": [{"created": CREATED, "created_by": by} for _, by in layers],
    }


def manifest(
    config: Descriptor, layers: Sequence[Descriptor], annotations: dict[str, str]
) -> dict[str, object]:
    return {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": config.json(),
        "layers": [d.json() for d in layers],
        "annotations": dict(annotations),
    }


def index(manifest_desc: Descriptor, references: Sequence[str]) -> dict[str, object]:
    """One entry per reference, all naming the same manifest: containerd creates each image."""
    entries = []
    for ref in references:
        entries.append(
            {
                **manifest_desc.json(),
                "platform": dict(PLATFORM),
                "annotations": {NAME_ANNOTATION: ref, REF_ANNOTATION: ref.rsplit(":", 1)[1]},
            }
        )
    return {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}


def write_layout(
    dest: Path, store: BlobStore, index_doc: dict[str, object], digests: Iterable[str]
) -> None:
    """An OCI image layout directory whose blobs are hard links into ``store`` (no copies)."""
    blobs = dest / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for digest in digests:
        os.link(store.path(digest), blobs / digest.split(":", 1)[1])
    (dest / "oci-layout").write_bytes(canonical_json({"imageLayoutVersion": "1.0.0"}))
    (dest / "index.json").write_bytes(canonical_json(index_doc))


def layout_entries(layout: Path, skip: Collection[str] = ()) -> list[tuple[str, Path]]:
    """The layout as tar entries, leaving out the blobs in ``skip`` (ones the importer has)."""
    out = [("oci-layout", layout / "oci-layout"), ("index.json", layout / "index.json")]
    out += [("blobs", layout / "blobs"), ("blobs/sha256", layout / "blobs" / "sha256")]
    for blob in sorted((layout / "blobs" / "sha256").iterdir()):
        if f"sha256:{blob.name}" not in skip:
            out.append((f"blobs/sha256/{blob.name}", blob))
    return out
