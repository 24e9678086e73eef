"""Single-layer OCI image archives for the node's own small images (the pod sandbox).

containerd insists on a sandbox ("pause") image for every pod and would pull it from a registry;
none is reachable here, so the node gets one built from a static binary and imported with
``ctr images import``. The archive is an OCI image layout (``oci-layout``, ``index.json``,
``blobs/sha256/...``) with one uncompressed layer; every byte is derived from the inputs (fixed
mtimes, numeric owners, sorted entries), so the same inputs always give the same digests and a
warm node start can tell an image is already imported.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
#: containerd's import names an image by this index annotation.
NAME_ANNOTATION = "io.containerd.image.name"


@dataclass(frozen=True)
class FileEntry:
    """One regular file of the layer: its absolute path in the image, content and mode."""

    path: str
    data: bytes
    mode: int = 0o755


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: list[FileEntry]) -> bytes:
    """A deterministic tar of ``files`` (parent directories included, owner 0:0, mtime 0)."""
    dirs: set[str] = set()
    for entry in files:
        parts = entry.path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for entry in sorted(files, key=lambda e: e.path):
            info = tarfile.TarInfo(entry.path.strip("/"))
            info.size, info.mode, info.mtime = len(entry.data), entry.mode, 0
            tar.addfile(info, io.BytesIO(entry.data))
    return buf.getvalue()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def image_archive(reference: str, files: list[FileEntry], entrypoint: list[str]) -> bytes:
    """An OCI image-layout tar holding one linux/amd64 image named ``reference``."""
    layer = layer_tar(files)
    config = _json(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "User": "65535:65535"},
            "rootfs": {"type": "layers", "diff_ids": [_digest(layer)]},
        }
    )
    manifest = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
        }
    )
    index = _json(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": _digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {NAME_ANNOTATION: reference},
                }
            ],
        }
    )
    blobs = {_digest(b): b for b in (layer, config, manifest)}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        members = [("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", index)]
        members += [(f"blobs/sha256/{d.split(':')[1]}", b) for d, b in sorted(blobs.items())]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def manifest_digest(archive: bytes) -> str:
    """The digest containerd will list for the image in ``archive``."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.extractfile("index.json")
        assert member is not None
        index = json.loads(member.read())
    return str(index["manifests"][0]["digest"])


def write_archive(path: Path, archive: bytes) -> None:
    """Store ``archive`` atomically (readers never see half an image)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(archive)
    tmp.replace(path)


__all__ = ["FileEntry", "image_archive", "layer_tar", "manifest_digest", "write_archive"]
