"""The machine, the software versions and the peers' install location.

Peers are installed once per content hash of ``bench/requirements.txt`` into
``~/.cache/rtdetr-operator/bench-peers-<hash>`` (``RTDETR_BENCH_CACHE`` overrides the parent
directory) with ``uv pip install --no-deps --require-hashes --target``. Benchmark processes
*append* that directory to ``sys.path``, so the project's own torch/numpy always win.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
PEERS_ENV = "RTDETR_BENCH_PEERS"
VERSIONED = (
    "torch",
    "onnxruntime-gpu",
    "onnxruntime",
    "onnx",
    "numpy",
    "transformers",
    "pycocotools",
    "faster-coco-eval",
    "pillow",
    "h5py",
)


class PeerInstallError(RuntimeError):
    """The peers could not be installed; the message names the command and its output."""


def cache_root() -> Path:
    default = Path.home() / ".cache" / "rtdetr-operator"
    return Path(os.environ.get("RTDETR_BENCH_CACHE", default))


def peers_dir() -> Path:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    return cache_root() / f"bench-peers-{digest}"


def ensure_peers() -> Path:
    """Install the pinned peers into the cache (once) and return the directory."""
    target = peers_dir()
    stamp = target / ".complete"
    if stamp.exists():
        return target
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise PeerInstallError("uv is not installed next to the Python interpreter or on PATH")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        uv,
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--require-hashes",
        "--python",
        sys.executable,
        "--target",
        str(tmp),
        "-r",
        str(REQUIREMENTS),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise PeerInstallError(
            f"installing the benchmark peers failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}"
        )
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    stamp.write_text("ok\n")
    return target


def activate_peers() -> None:
    """In a benchmark process: make the peers importable after the project's packages."""
    path = os.environ.get(PEERS_ENV)
    if path and path not in sys.path:
        sys.path.append(path)
    # No hub access, ever: the peer model is built from a config with random weights.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                keep = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")
                return [f for f in keep if f in flags]
    except OSError:
        pass
    return []


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return float("nan")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        pass
    # Peers live in a --target directory that importlib.metadata only sees once on sys.path.
    path = os.environ.get(PEERS_ENV)
    if path:
        for d in importlib.metadata.distributions(path=[path]):
            if d.metadata["Name"].lower().replace("_", "-") == dist:
                return d.version
    return None


def git_commit(path: Path = REPO) -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=path, capture_output=True, text=True)
        return out.stdout.strip()

    dirty = git("status", "--porcelain", "--", "trainer", "spec", "serving", "bench")
    return {
        "commit": git("rev-parse", "HEAD"),
        "short": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(dirty),
    }


def machine_info() -> dict[str, Any]:
    import torch

    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
    return {
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpu": gpu,
        "versions": {d: _version(d) for d in VERSIONED if _version(d) is not None},
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
    }
