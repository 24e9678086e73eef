"""Go programs the tests run beside the cluster (SeaweedFS's S3 server, Kueue), built from a
published module version and cached outside the repository.

A :class:`GoProgram` names a module, a version and the package folder of its ``main``. The
first :meth:`GoProgram.ensure` downloads the module (``go mod download``, so the module cache and
the proxy's checksums apply) and builds that folder as the main module: ``go install
module/cmd@version`` would be simpler but refuses modules whose go.mod has ``replace``
directives, which both of ours have. The binary lands in ``<cache>/<name>-<version>-<go
version>/bin`` (the cache root of the local cluster tools, ``~/.cache/rtdetr-operator``), so a
new version or a new Go gives a new folder and a finished build is reused. Builds hold a file
lock (two test processes never build the same folder at once) and write into ``bin.tmp``
renamed to ``bin`` at the end (an interrupted build leaves no half binary behind).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from clusterkit.build import cache_root


def go_version(go: str = "go") -> str:
    """``go env GOVERSION``, e.g. ``go1.26.8``."""
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class GoProgram:
    """One program of one module version: ``package`` is its main package's folder inside the
    module, ``binary`` the file name it gets."""

    name: str
    module: str
    version: str
    package: str
    binary: str

    def folder(self, go: str = "go") -> Path:
        return cache_root() / f"{self.name}-{self.version}-{go_version(go)}"

    def path(self, go: str = "go") -> Path:
        """Where the binary is (or will be once built)."""
        return self.folder(go) / "bin" / self.binary

    def source(self, log: TextIO | None = None) -> Path:
        """The module's source folder in the Go module cache (downloaded if missing); ``go``'s
        messages go to ``log``."""
        got = subprocess.run(
            ["go", "mod", "download", "-json", f"{self.module}@{self.version}"],
            env=_env(),
            cwd=cache_root(),
            capture_output=True,
            text=True,
        )
        if log is not None:
            log.write(got.stderr)
            log.flush()
        if got.returncode != 0:
            raise RuntimeError(
                f"go mod download {self.module}@{self.version} failed:\n{got.stderr[-2000:]}"
            )
        return Path(json.loads(got.stdout)["Dir"])

    def ensure(self, go: str = "go") -> Path:
        """The cached binary, built first if this version never was with this Go."""
        binary = self.path(go)
        if binary.is_file():
            return binary
        folder = self.folder(go)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if binary.is_file():
                return binary  # another process built it while this one waited
            log = folder / "build.log"
            with log.open("w") as out:
                source = self.source(out)
                tmp = folder / "bin.tmp"
                done = subprocess.run(
                    ["go", "build", "-ldflags", "-s -w", "-o", str(tmp / self.binary), "."],
                    cwd=source / self.package,
                    env=_env(),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            if done.returncode != 0:
                tail = log.read_text()[-2000:]
                raise RuntimeError(f"building {self.module}@{self.version} failed:\n{tail}")
            tmp.rename(folder / "bin")
        return binary


def _env() -> dict[str, str]:
    """Module mode whatever the caller's environment says, no cgo, no workspace file."""
    return dict(os.environ, GOFLAGS="-mod=mod", CGO_ENABLED="0", GOWORK="off")
