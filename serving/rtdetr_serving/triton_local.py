"""A real tritonserver on this machine: the binary shipped in the ``nvidia-pytriton`` wheel.

Why the set-up below: the wheel's tritonserver (python backend only) runs on a CPU-only host, but

- its backends folder must be writable and hold ``python/triton_python_backend_stub`` for this
  Python version, so it is copied once to a cache outside the repository (keyed by the pytriton
  and Python versions) and passed with ``--backend-directory``;
- the stub must load this interpreter's libpython (Python's LIBDIR first on LD_LIBRARY_PATH, else
  Debian's libpython is picked and fails) and the wheel's bundled libraries
  (``nvidia_pytriton.libs``);
- the stub embeds Python in isolated mode (PYTHONPATH is ignored), so this environment's
  site-packages are handed over in ``RTDETR_TRITON_SITE_DIRS`` and put on ``sys.path`` by our
  python-backend ``model.py`` (numpy, onnxruntime).

``run_foreground`` is ``rtdetr-serve local``; ``LocalTriton`` starts that command in the
background for tests and scripts, waits for readiness and always tears it down.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rtdetr_serving.errors import TritonLaunchError

SITE_DIRS_ENV = "RTDETR_TRITON_SITE_DIRS"
CACHE_ENV = "RTDETR_CACHE_DIR"
ControlMode = Literal["none", "explicit", "poll"]


@dataclass(frozen=True)
class TritonInstall:
    """Where the pytriton wheel put tritonserver, its backends, stubs and libraries."""

    version: str
    binary: Path
    backends: Path
    stub: Path
    libs: Path


def find_triton() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonLaunchError(
            "nvidia-pytriton is not installed: it ships the tritonserver binary (pip install "
            "nvidia-pytriton==0.7.0)"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        version=importlib.metadata.version("nvidia-pytriton"),
        binary=root / "bin" / "tritonserver",
        backends=root / "backends",
        stub=root / "python_backend_stubs" / py / "triton_python_backend_stub",
        libs=root.parent.parent / "nvidia_pytriton.libs",
    )
    for what, path in [("tritonserver", install.binary), (f"python {py} stub", install.stub)]:
        if not path.exists():
            raise TritonLaunchError(f"{path}: the {what} of nvidia-pytriton is missing")
    return install


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "rtdetr-operator"


def prepare_backends(install: TritonInstall, cache: Path | None = None) -> Path:
    """A writable backends folder with the python stub in place.

    Created once, atomically, in the cache (``cache``, else :func:`cache_root`). Where that
    cannot be written (a read-only image, a pod user without a home), a fresh private folder
    under the temporary directory is used instead, every start: a shared ``/tmp`` is never
    trusted to hold a stub someone else put there.
    """
    try:
        return _cached_backends(install, cache or cache_root())
    except (OSError, RuntimeError, KeyError):
        private = Path(tempfile.mkdtemp(prefix="rtdetr-triton-backends-"))
        return _cached_backends(install, private)


def _cached_backends(install: TritonInstall, cache: Path) -> Path:
    py = f"{sys.version_info.major}{sys.version_info.minor}"
    target = cache / "triton-backends" / f"pytriton-{install.version}-py{py}"
    if (target / "python" / "triton_python_backend_stub").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".backends.", dir=target.parent))
    try:
        shutil.copytree(install.backends, stage / "b")
        stub = stage / "b" / "python" / "triton_python_backend_stub"
        shutil.copy2(install.stub, stub)
        stub.chmod(0o755)
        try:
            (stage / "b").rename(target)
        except OSError:
            if not (target / "python" / "triton_python_backend_stub").is_file():
                raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return target


def site_dirs() -> list[str]:
    paths = sysconfig.get_paths()
    return list(dict.fromkeys([paths["purelib"], paths["platlib"]]))


def server_env(install: TritonInstall, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    parts = [p for p in [libdir, str(install.libs), env.get("LD_LIBRARY_PATH", "")] if p]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(parts)
    env[SITE_DIRS_ENV] = os.pathsep.join(site_dirs())
    return env


@dataclass
class TritonOptions:
    model_repository: list[Path]
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int | None = None
    model_control_mode: ControlMode = "none"
    load_models: list[str] = field(default_factory=list)
    model_config_name: str | None = None
    address: str = "127.0.0.1"
    log_verbose: int = 0
    exit_timeout_s: int = 30


def server_command(install: TritonInstall, backends: Path, o: TritonOptions) -> list[str]:
    return [str(install.binary), f"--backend-directory={backends}", *server_flags(o)]


def server_flags(o: TritonOptions) -> list[str]:
    """tritonserver's own flags for ``o`` (no binary, no backend directory)."""
    if o.load_models and o.model_control_mode != "explicit":
        raise TritonLaunchError("--load-model needs --model-control-mode explicit")
    cmd = [f"--model-repository={p}" for p in o.model_repository]
    cmd += [
        f"--model-control-mode={o.model_control_mode}",
        f"--http-address={o.address}",
        f"--http-port={o.http_port}",
        f"--grpc-address={o.address}",
        f"--grpc-port={o.grpc_port}",
        # Our configs are complete; skipping auto-complete saves a stub start per model.
        "--disable-auto-complete-config",
        f"--exit-timeout-secs={o.exit_timeout_s}",
        f"--log-verbose={o.log_verbose}",
    ]
    if o.metrics_port is None:
        cmd.append("--allow-metrics=false")
    else:
        cmd += [f"--metrics-address={o.address}", f"--metrics-port={o.metrics_port}"]
    cmd += [f"--load-model={m}" for m in o.load_models]
    if o.model_config_name:
        cmd.append(f"--model-config-name={o.model_config_name}")
    return cmd


def _die_with_parent() -> None:
    """Child-side: get SIGTERM if the launcher dies (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def run_foreground(o: TritonOptions) -> int:
    """Run tritonserver until it exits; SIGINT/SIGTERM received here are forwarded to it."""
    for p in o.model_repository:
        if not p.is_dir():
            raise TritonLaunchError(f"{p}: model repository folder not found")
    install = find_triton()
    backends = prepare_backends(install)
    cmd = server_command(install, backends, o)
    print(
        f"tritonserver {install.version} (nvidia-pytriton): HTTP {o.address}:{o.http_port}, "
        f"gRPC {o.address}:{o.grpc_port}"
        + (f", metrics {o.address}:{o.metrics_port}" if o.metrics_port else ""),
        file=sys.stderr,
        flush=True,
    )
    proc = subprocess.Popen(
        cmd, env=server_env(install), start_new_session=True, preexec_fn=_die_with_parent
    )

    def forward(signum: int, _frame: object) -> None:
        if proc.poll() is None:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def free_port(address: str = "127.0.0.1") -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


class LocalTriton:
    """``rtdetr-serve local`` in the background: free ports, readiness wait, teardown, log dump.

    Usage::

        with LocalTriton(repo, load_models=["rtdetr"]) as triton:
            client = RTDETRClient(triton.http_url)

    The server's output goes to ``log_path``; when start-up fails or the ``with`` body raises, its
    tail is written to stderr so the failure explains itself.
    """

    def __init__(
        self,
        model_repository: str | Path | list[str | Path],
        *,
        model_control_mode: ControlMode = "explicit",
        load_models: list[str] | tuple[str, ...] = (),
        metrics: bool = False,
        model_config_name: str | None = None,
        startup_timeout_s: float = 90.0,
        log_path: str | Path | None = None,
        log_verbose: int = 0,
        exit_timeout_s: int = 5,
        launcher: Literal["local", "tritonserver"] = "local",
    ) -> None:
        repos = model_repository if isinstance(model_repository, list) else [model_repository]
        self.options = TritonOptions(
            model_repository=[Path(p).resolve() for p in repos],
            http_port=free_port(),
            grpc_port=free_port(),
            metrics_port=free_port() if metrics else None,
            model_control_mode=model_control_mode,
            load_models=list(load_models),
            model_config_name=model_config_name,
            log_verbose=log_verbose,
            exit_timeout_s=exit_timeout_s,
        )
        #: ``local``: ``rtdetr-serve local`` (forwards signals to its tritonserver child);
        #: ``tritonserver``: ``rtdetr-serve tritonserver FLAGS`` (execs tritonserver itself).
        self.launcher = launcher
        self.startup_timeout_s = startup_timeout_s
        self.log_path = (
            Path(log_path) if log_path else Path(tempfile.mkstemp(suffix=".triton.log")[1])
        )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the launched command (with launcher="tritonserver": tritonserver)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def http_url(self) -> str:
        return f"{self.options.address}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.address}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str | None:
        p = self.options.metrics_port
        return f"http://{self.options.address}:{p}/metrics" if p else None

    def command(self) -> list[str]:
        o = self.options
        if self.launcher == "tritonserver":
            return [sys.executable, "-m", "rtdetr_serving", "tritonserver", *server_flags(o)]
        cmd = [sys.executable, "-m", "rtdetr_serving", "local"]
        for p in o.model_repository:
            cmd += ["--model-repository", str(p)]
        cmd += ["--http-port", str(o.http_port), "--grpc-port", str(o.grpc_port)]
        cmd += ["--model-control-mode", o.model_control_mode]
        if o.metrics_port:
            cmd += ["--metrics-port", str(o.metrics_port)]
        for m in o.load_models:
            cmd += ["--load-model", m]
        if o.model_config_name:
            cmd += ["--model-config-name", o.model_config_name]
        if o.log_verbose:
            cmd += ["--log-verbose", str(o.log_verbose)]
        cmd += ["--exit-timeout", str(o.exit_timeout_s)]
        return cmd

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def start(self) -> LocalTriton:
        import time
        import urllib.error
        import urllib.request

        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        url = f"http://{self.http_url}/v2/health/ready"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise TritonLaunchError(
                    f"tritonserver exited with code {self._proc.returncode} during start-up; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1.0) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        self.stop()
        raise TritonLaunchError(
            f"tritonserver not ready after {self.startup_timeout_s:.0f}s; log {self.log_path}:\n"
            f"{self.log_tail()}"
        )

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM (forwarded to tritonserver); SIGKILL if it outlives its exit timeout."""
        timeout_s = timeout_s if timeout_s is not None else self.options.exit_timeout_s + 15.0
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def __enter__(self) -> LocalTriton:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            print(
                f"--- tritonserver log tail ({self.log_path}) ---\n{self.log_tail()}",
                file=sys.stderr,
            )
        self.stop()
