"""Build the control-plane binaries once and cache them outside the repository.

A cold build of kube-apiserver, kube-controller-manager and kube-scheduler takes many minutes
on a small machine, so the result is stored under the user's cache directory in a folder whose
name is derived from the pinned versions and a hash of everything that influences the build.
Every worktree or clone with the same inputs reuses it. A lock file serialises concurrent
builders, and a build only becomes visible through an atomic rename of a finished directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import COREDNS_VERSION, ETCD_VERSION, K8S_VERSION, KWOK_VERSION
from .procs import write_atomic

HACK_DIR = Path(__file__).resolve().parent.parent
MODULE_DIR = HACK_DIR / "controlplane"
#: CoreDNS with a minimal plugin set, its own module (its dependencies are not Kubernetes').
COREDNS_DIR = HACK_DIR / "coredns"
#: The pod sandbox process, a static C binary.
PAUSE_SOURCE = HACK_DIR / "node" / "pause.c"

# Bump when the recipe below changes in a way the hashed inputs do not capture.
RECIPE = "4"
K8S_PACKAGES = [
    "k8s.io/kubernetes/cmd/kube-apiserver",
    "k8s.io/kubernetes/cmd/kube-controller-manager",
    "k8s.io/kubernetes/cmd/kube-scheduler",
    # The real node: built from the same wrapper module, so the same Kubernetes release.
    "k8s.io/kubernetes/cmd/kubelet",
    "k8s.io/kubernetes/cmd/kube-proxy",
]
LOCAL_PACKAGES = ["./cmd/etcd", "./cmd/pki"]
BINARIES = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "etcd",
    "pki",
    "kwok",
    "coredns",
    "pause",
]
VERSION_PACKAGES = ["k8s.io/component-base/version", "k8s.io/client-go/pkg/version"]


class BuildError(RuntimeError):
    """A build step failed; the message carries the command and the tail of its output."""


def cache_root() -> Path:
    """Per-user cache root; RTDETR_CLUSTER_CACHE overrides the XDG location."""
    override = os.environ.get("RTDETR_CLUSTER_CACHE")
    if override:
        return Path(override).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser().resolve() / "rtdetr-operator"


def _hashed_inputs() -> list[Path]:
    files = [MODULE_DIR / "go.mod", MODULE_DIR / "go.sum"]
    files += sorted(p for p in (MODULE_DIR / "cmd").rglob("*") if p.is_file())
    files += sorted(p for p in COREDNS_DIR.iterdir() if p.is_file())
    return [*files, PAUSE_SOURCE]


def _go_version(go: str) -> str:
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def cache_key(go: str = "go") -> str:
    """Folder name for this exact build: versions plus a hash of all build inputs."""
    digest = hashlib.sha256()
    digest.update(f"recipe={RECIPE}\ngo={_go_version(go)}\n".encode())
    for path in _hashed_inputs():
        digest.update(str(path.relative_to(HACK_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"k8s-{K8S_VERSION}-etcd-{ETCD_VERSION}-kwok-{KWOK_VERSION}-{digest.hexdigest()[:12]}"


def _ldflags() -> str:
    major, minor = K8S_VERSION.lstrip("v").split(".")[:2]
    date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    flags = ["-s", "-w"]
    for pkg in VERSION_PACKAGES:
        flags += [
            f"-X {pkg}.gitVersion={K8S_VERSION}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=archive",
            f"-X {pkg}.buildDate={date}",
        ]
    return " ".join(flags)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Static binaries like the upstream release; ignore any go.work above the module and any
    # GOFLAGS from the caller that could change what gets built (for example -mod=vendor).
    env.update({"CGO_ENABLED": "0", "GOWORK": "off", "GOFLAGS": "-mod=readonly"})
    return env


def _run(argv: list[str], cwd: Path, log: Path, env: dict[str, str]) -> None:
    with open(log, "ab") as fh:
        fh.write(f"\n$ (cd {cwd} && {' '.join(argv)})\n".encode())
        fh.flush()
        result = subprocess.run(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        from .procs import tail

        raise BuildError(
            f"command failed (exit {result.returncode}) in {cwd}:\n  {' '.join(argv)}\n"
            f"--- last lines of {log} ---\n{tail(log, 60)}"
        )


def _check_versions(bin_dir: Path) -> dict[str, str]:
    """Ask every binary for its version so a bad build never lands in the cache."""
    checks = {
        "kube-apiserver": ["--version"],
        "kube-controller-manager": ["--version"],
        "kube-scheduler": ["--version"],
        "kubelet": ["--version"],
        "kube-proxy": ["--version"],
        "etcd": ["--version"],
        "kwok": ["--version"],
        "coredns": ["-version"],
        "pause": ["-v"],
    }
    versions: dict[str, str] = {}
    for name, args in checks.items():
        out = subprocess.run([str(bin_dir / name), *args], capture_output=True, text=True)
        text = (out.stdout + out.stderr).strip()
        versions[name] = text.splitlines()[0] if text else ""
    expected = {
        "kube-apiserver": K8S_VERSION,
        "kube-controller-manager": K8S_VERSION,
        "kube-scheduler": K8S_VERSION,
        "kubelet": K8S_VERSION,
        "kube-proxy": K8S_VERSION,
        "etcd": ETCD_VERSION.lstrip("v"),
        "kwok": KWOK_VERSION.lstrip("v"),
        "coredns": COREDNS_VERSION.lstrip("v"),
        "pause": "rtdetr-pause",
    }
    for name, want in expected.items():
        if want not in versions[name]:
            raise BuildError(f"{name} reports {versions[name]!r}, expected {want}")
    return versions


def _build_into(tmp: Path, go: str, jobs: int) -> dict[str, object]:
    bin_dir = tmp / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp / "build.log"
    env = _go_env()
    started = time.monotonic()
    common = ["-p", str(jobs), "-trimpath"]
    _run(
        [
            go,
            "build",
            *common,
            "-ldflags",
            _ldflags(),
            "-o",
            f"{bin_dir}/",
            *K8S_PACKAGES,
            *LOCAL_PACKAGES,
        ],
        MODULE_DIR,
        log,
        env,
    )
    k8s_seconds = time.monotonic() - started
    # kwok is a normal module without replace directives, so a plain module-aware install
    # works; run it from the temp dir so no surrounding go.mod is consulted.
    kwok_env = dict(env, GOBIN=str(bin_dir), GOFLAGS="")
    _run(
        [go, "install", *common, "-ldflags", "-s -w", f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}"],
        tmp,
        log,
        kwok_env,
    )
    _run(
        [go, "build", *common, "-ldflags", "-s -w", "-o", f"{bin_dir}/coredns", "."],
        COREDNS_DIR,
        log,
        env,
    )
    # Static, so the sandbox image needs nothing but this one file.
    _run(
        ["gcc", "-static", "-Os", "-s", "-o", str(bin_dir / "pause"), str(PAUSE_SOURCE)],
        tmp,
        log,
        env,
    )
    versions = _check_versions(bin_dir)
    return {
        "kubernetes": K8S_VERSION,
        "etcd": ETCD_VERSION,
        "kwok": KWOK_VERSION,
        "coredns": COREDNS_VERSION,
        "go": _go_version(go),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(time.monotonic() - started, 1),
        "kubernetes_build_seconds": round(k8s_seconds, 1),
        "parallelism": jobs,
        "versions": versions,
    }


def _complete(entry: Path) -> bool:
    """A cache entry is usable when its manifest and every binary are present."""
    if not (entry / "manifest.json").exists():
        return False
    return all(os.access(entry / "bin" / name, os.X_OK) for name in BINARIES)


def ensure_binaries(quiet: bool = False) -> Path:
    """Return the cached bin directory, building it first if this key has never been built."""
    go = os.environ.get("GO", "go")
    if shutil.which(go) is None:
        raise BuildError(f"Go toolchain not found ({go!r}); install Go 1.26+ to build the cluster")
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key(go)
    final = root / key
    if _complete(final):
        return final / "bin"
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(final):  # another builder finished while we waited
            return final / "bin"
        jobs = int(os.environ.get("RTDETR_CLUSTER_BUILD_JOBS", "2"))
        if not quiet:
            print(
                f"building control-plane binaries into {final} (-p {jobs}); with cold Go "
                "caches this takes 4-12 minutes on 2 cores",
                file=sys.stderr,
                flush=True,
            )
        tmp = root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            manifest = _build_into(tmp, go, jobs)
            write_atomic(tmp / "manifest.json", json.dumps(manifest, indent=2) + "\n")
            shutil.rmtree(final, ignore_errors=True)
            tmp.rename(final)
        except BaseException:
            keep = root / f"failed-{key}.log"
            if (tmp / "build.log").exists():
                shutil.copyfile(tmp / "build.log", keep)
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if not quiet:
            print(f"built in {manifest['build_seconds']}s", file=sys.stderr, flush=True)
    return final / "bin"


def manifest(bin_dir: Path) -> dict[str, object]:
    try:
        data: dict[str, object] = json.loads((bin_dir.parent / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}
    return data
