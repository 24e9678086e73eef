"""Put cached images into a containerd with Debian's ``ctr``, moving only what it lacks.

An image whose every reference containerd already has at the same manifest digest is skipped
without reading a byte. Otherwise the layout is streamed to ``ctr images import -`` as an OCI
archive that leaves out the blobs containerd's content store already holds: containerd's OCI
importer writes the blobs it is given, then walks the index through its content store, so a
source change moves only the small app and config layers (and unpacks only those: a layer
whose snapshot exists is not applied again). Should containerd have dropped a blob between the
listing and the import, the import is retried once with every blob.

``PrivateContainerd`` runs a throwaway containerd for tests: its root, state and sockets in a
temporary directory, inside ``unshare --mount --pid`` with a tmpfs on /run (the shim's sockets
and runc's state live under /run/containerd whatever --state says), so stopping it leaves
nothing behind on the host.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .build import BuiltImage
from .oci import layout_entries, write_tar
from .rootfs import BuildError, tail


@dataclass(frozen=True)
class ImportResult:
    name: str
    action: str  # "skipped" (already there) or "imported"
    seconds: float
    bytes_sent: int  # size of the archive streamed to ctr (0 when skipped)


def ctr(address: str, namespace: str, *args: str, check: bool = True, timeout: float = 600) -> str:
    require_ctr()
    argv = ["ctr", "--address", address, "--namespace", namespace, *args]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise BuildError(f"{' '.join(argv)} failed (exit {out.returncode}): {out.stderr.strip()}")
    return out.stdout


def require_ctr() -> None:
    if shutil.which("ctr") is None:
        raise BuildError("ctr not found: run hack/node/install-packages.sh (as root)")


def images_in(address: str, namespace: str = "k8s.io") -> dict[str, str]:
    """Reference -> manifest (target) digest of every image in the namespace."""
    out: dict[str, str] = {}
    for line in ctr(address, namespace, "images", "ls").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3:
            out[fields[0]] = fields[2]
    return out


def blobs_in(address: str, namespace: str = "k8s.io") -> set[str]:
    return {
        line.split()[0]
        for line in ctr(address, namespace, "content", "ls", "-q").splitlines()
        if line
    }


def import_images(
    images: Sequence[BuiltImage],
    address: str,
    namespace: str = "k8s.io",
    snapshotter: str | None = None,
) -> list[ImportResult]:
    """Import each image unless containerd has all its references at its digest already."""
    results = []
    for image in images:
        started = time.monotonic()
        present = images_in(address, namespace)
        if all(present.get(ref) == image.digest for ref in image.references):
            results.append(ImportResult(image.name, "skipped", time.monotonic() - started, 0))
            continue
        known = blobs_in(address, namespace) & set(image.layers)
        try:
            sent = _import(image, address, namespace, snapshotter, skip=known)
        except BuildError:
            if not known:
                raise
            sent = _import(image, address, namespace, snapshotter, skip=set())
        after = images_in(address, namespace)
        wrong = {ref: after.get(ref) for ref in image.references if after.get(ref) != image.digest}
        if wrong:
            raise BuildError(f"after import, containerd has {wrong}, expected {image.digest}")
        results.append(ImportResult(image.name, "imported", time.monotonic() - started, sent))
    return results


def _import(
    image: BuiltImage, address: str, namespace: str, snapshotter: str | None, skip: set[str]
) -> int:
    """Stream the layout (less ``skip``) into ``ctr images import -``; return bytes sent."""
    require_ctr()
    argv = ["ctr", "--address", address, "--namespace", namespace, "images", "import"]
    if snapshotter:
        argv.append(f"--snapshotter={snapshotter}")
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([*argv, "-"], stdin=subprocess.PIPE, stdout=log, stderr=log)
        assert proc.stdin is not None
        try:
            _, sent = write_tar(layout_entries(image.layout, skip), proc.stdin)  # type: ignore[arg-type]
            proc.stdin.close()
        except BrokenPipeError:
            sent = -1
        rc = proc.wait()
        if rc != 0 or sent < 0:
            log.seek(0)
            raise BuildError(
                f"ctr images import of {image.reference} failed (exit {rc}): "
                f"{log.read().decode(errors='replace').strip()[-2000:]}"
            )
    return sent


_CONFIG = """version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{address}"

[ttrpc]
  address = "{address}.ttrpc"

[debug]
  address = "{address}.debug"
"""


class PrivateContainerd:
    """A containerd of its own in ``workdir`` (a context manager); ``address`` is its socket."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.address = str(workdir / "containerd.sock")
        self.log = workdir / "containerd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrivateContainerd:
        for tool in ("containerd", "ctr", "runc", "unshare"):
            if shutil.which(tool) is None:
                raise BuildError(f"{tool} not found: run hack/node/install-packages.sh")
        cfg = self.workdir / "config.toml"
        cfg.write_text(
            _CONFIG.format(
                root=self.workdir / "root", state=self.workdir / "state", address=self.address
            )
        )
        (self.workdir / "fifo").mkdir(exist_ok=True)
        script = f"mount -t tmpfs -o mode=0755 tmpfs /run && exec containerd --config {cfg}"
        argv = [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "private",
        ]
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                [*argv, "sh", "-c", script], stdout=fh, stderr=fh, start_new_session=True
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BuildError(f"containerd exited ({self.proc.returncode}):\n{tail(self.log)}")
            if Path(self.address).exists() and self._answers():
                return self
            time.sleep(0.2)
        self.__exit__(None, None, None)
        raise BuildError(f"containerd did not answer on {self.address}:\n{tail(self.log)}")

    def _answers(self) -> bool:
        argv = ["ctr", "--address", self.address, "version"]
        return subprocess.run(argv, capture_output=True, timeout=10).returncode == 0

    def __exit__(self, *_exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # unshare kills the namespace's init
            timer = threading.Timer(
                20, lambda: os.killpg(self.proc.pid, signal.SIGKILL) if self.proc else None
            )
            timer.start()
            self.proc.wait()
            timer.cancel()

    def run(
        self,
        namespace: str,
        reference: str,
        *command: str,
        name: str = "check",
        env: dict[str, str] | None = None,
        net_host: bool = False,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """``ctr run --rm`` (runc) of ``reference``; FIFOs in the workdir, no cgroup parent left
        behind. ``net_host`` shares the host's network (a fresh one has its loopback down)."""
        argv = ["ctr", "--address", self.address, "--namespace", namespace, "run", "--rm"]
        argv += ["--fifo-dir", str(self.workdir / "fifo"), "--cgroup", ""]
        argv += ["--net-host"] if net_host else []
        for key, value in (env or {}).items():
            argv += ["--env", f"{key}={value}"]
        return subprocess.run(
            [*argv, reference, name, *command], capture_output=True, text=True, timeout=timeout
        )
