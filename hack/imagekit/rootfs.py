"""The Debian base rootfs, and build steps run inside it without touching the host.

The base comes from ``mmdebstrap --mode=unshare --variant=essential`` (no apt, no init: the
essential packages plus ``recipe.BASE_PACKAGES``), extracted once into the cache.

A build step runs a shell script as root in a chroot whose root is an overlay: the cached
trees below (read-only lower layers) and an empty upper directory that receives every change,
so the upper directory *is* the new layer and the cached trees never change. All mounts (the
overlay, /proc, /dev, the staging folder, the uv cache, the host's resolv.conf and CA bundle)
are made inside ``unshare --mount --pid --fork --kill-child``: they vanish with the step, and
so does any process it started. Nothing is copied into the tree but what the script writes.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .keys import REPO_ROOT, write_json
from .oci import EPOCH, BlobStore, tree_entries
from .recipe import BASE_PACKAGES, MIRRORS, SUITE, VENV

STAGE = "/run/rtdetr-build"
UV_CACHE = "/var/cache/uv"
CA_FILE = "/run/rtdetr-ca.crt"
# Passed through to uv in the chroot so it reaches the same index, through the same proxy.
_PASS_ENV = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "all_proxy", "UV_INDEX_URL", "UV_DEFAULT_INDEX", "UV_EXTRA_INDEX_URL",
    "UV_INDEX", "UV_INSECURE_HOST", "UV_HTTP_TIMEOUT", "UV_NATIVE_TLS", "UV_CONCURRENT_DOWNLOADS",
)  # fmt: skip


class BuildError(RuntimeError):
    """A build step failed; the message names the step and carries the tail of its log."""


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def find_uv() -> Path:
    """The uv that locked the requirements: RTDETR_UV, then the repo's .venv, then PATH.

    The project's Makefile installs a pinned uv into .venv, and its download cache already
    holds the locked wheels (the dev lock is a superset of every image lock), so the images
    reuse both rather than fetching a second uv and a second copy of torch.
    """
    candidates = [os.environ.get("RTDETR_UV"), str(REPO_ROOT / ".venv" / "bin" / "uv")]
    candidates.append(shutil.which("uv"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise BuildError("uv not found: run `make venv` (or set RTDETR_UV to a uv binary)")


def _uv_cache(uv: Path) -> Path:
    out = subprocess.run([str(uv), "cache", "dir"], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    path.mkdir(parents=True, exist_ok=True)
    return path


def require_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        raise BuildError("building images needs root (mmdebstrap, overlay mounts, chroot)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise BuildError(
            f"missing {', '.join(missing)}: run hack/node/install-packages.sh (as root)"
        )


def build_base(dest: Path, store: BlobStore, log: Path) -> dict[str, object]:
    """mmdebstrap -> rootfs/ (extracted, cleaned) -> base layer blob; returns base.json data."""
    require_tools("mmdebstrap", "unshare", "tar")
    started = time.monotonic()
    tar = dest / "debian.tar"
    argv = ["mmdebstrap", "--mode=unshare", "--variant=essential"]
    argv += [f"--include={','.join(BASE_PACKAGES)}", "--format=tar", SUITE, str(tar), *MIRRORS]
    _run(argv, log, env={**os.environ, "SOURCE_DATE_EPOCH": str(EPOCH)}, what="mmdebstrap")
    rootfs = dest / "rootfs"
    rootfs.mkdir()
    # Device nodes are the runtime's business; hostname and resolv.conf are the build host's.
    _run(["tar", "--numeric-owner", "-xpf", str(tar), "-C", str(rootfs), "--exclude=./dev/*"], log)
    tar.unlink()
    for name in ("etc/hostname", "etc/resolv.conf"):
        (rootfs / name).unlink(missing_ok=True)
    packages = installed_packages(rootfs)
    (dest / "packages.txt").write_text("".join(f"{n}={v}\n" for n, v in sorted(packages.items())))
    layer = store.put_tree(tree_entries(rootfs))
    meta = {
        "digest": layer.digest,
        "size": layer.size,
        "suite": SUITE,
        "packages": len(packages),
        "python3": packages.get("python3.11", "?"),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(dest / "meta.json", meta)
    return meta


def installed_packages(rootfs: Path) -> dict[str, str]:
    """Package -> version from the rootfs's dpkg status file (what the base really holds)."""
    out: dict[str, str] = {}
    for block in (rootfs / "var/lib/dpkg/status").read_text().split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " "
        )
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            out[fields["Package"]] = fields.get("Version", "")
    return out


def chroot_env(ca_file: bool) -> dict[str, str]:
    env = {
        "PATH": f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        # Bytecode only where compileall writes it, and identical from one build to the next.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "SOURCE_DATE_EPOCH": str(EPOCH),
        "UV_CACHE_DIR": UV_CACHE,
        "UV_LINK_MODE": "copy",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
    }
    env.update({k: os.environ[k] for k in _PASS_ENV if k in os.environ})
    if ca_file:
        env["SSL_CERT_FILE"] = CA_FILE
    return env


def run_step(
    lowers: Sequence[Path], upper: Path, stage: Path, script: str, log: Path, what: str
) -> None:
    """Run ``script`` as root in a chroot of ``upper`` over ``lowers``, ``stage`` at STAGE."""
    require_tools("unshare", "mount", "chroot")
    uv = find_uv()
    shutil.copy2(uv, stage / "uv")
    (stage / "step.sh").write_text(script)
    work, merged = upper.with_name(upper.name + ".work"), upper.with_name(upper.name + ".merged")
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    paths = [*lowers, upper, work]
    if any(c in str(p) for p in paths for c in ",:"):
        raise BuildError(f"overlay paths must not contain ',' or ':': {paths}")
    host_ca = os.environ.get("SSL_CERT_FILE", "")
    binds = [(stage, STAGE, "d"), (_uv_cache(uv), UV_CACHE, "d")]
    if Path("/etc/resolv.conf").exists():
        binds.append((Path("/etc/resolv.conf"), "/etc/resolv.conf", "f"))
    if host_ca and Path(host_ca).is_file():
        binds.append((Path(host_ca), CA_FILE, "f"))
    q = shlex.quote
    lines = [
        "set -eu",
        f"mount -t overlay overlay -o lowerdir={':'.join(map(str, lowers))},upperdir={upper},"
        f"workdir={work} {q(str(merged))}",
        f"mount -t proc proc {q(str(merged / 'proc'))}",
        f"mount --rbind /dev {q(str(merged / 'dev'))}",
    ]
    for host, target, kind in binds:
        inside = q(str(merged) + target)
        make = (
            f"mkdir -p {inside}" if kind == "d" else f"mkdir -p $(dirname {inside}); touch {inside}"
        )
        lines += [make, f"mount --bind {q(str(host))} {inside}"]
    env = [f"{k}={v}" for k, v in chroot_env(host_ca != "" and Path(host_ca).is_file()).items()]
    lines.append(
        f"exec chroot {q(str(merged))} /usr/bin/env -i {' '.join(map(q, env))} "
        f"/bin/sh -eu {STAGE}/step.sh"
    )
    argv = ["unshare", "--mount", "--pid", "--fork", "--kill-child", "--propagation", "private"]
    try:
        _run([*argv, "sh", "-c", "\n".join(lines)], log, what=what)
    finally:
        from .keys import remove_tree

        remove_tree(work)
        merged.rmdir()


def _run(argv: list[str], log: Path, env: dict[str, str] | None = None, what: str = "") -> None:
    with open(log, "ab") as fh:
        fh.write(f"\n$ {shlex.join(argv[:6])}{' ...' if len(argv) > 6 else ''}\n".encode())
        fh.flush()
        result = subprocess.run(
            argv, stdout=fh, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
        )
    if result.returncode != 0:
        raise BuildError(
            f"{what or argv[0]} failed (exit {result.returncode}), end of {log}:\n{tail(log)}"
        )
