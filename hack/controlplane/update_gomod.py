#!/usr/bin/env python3
"""Point the control-plane wrapper module at another Kubernetes release.

k8s.io/kubernetes requires its staging modules (k8s.io/api, k8s.io/client-go, ...) at v0.0.0
and resolves them through local replace directives, which do not apply to a module that
depends on it. The wrapper therefore replaces each of them with the published v0.<minor>.<patch>
tag. This script derives that list from the go.mod the module proxy serves for the release,
so a bump cannot miss a newly added staging module, pins etcd to the version Kubernetes
selects, updates the version constants of the Python tooling and runs ``go mod tidy``.

    python3 hack/controlplane/update_gomod.py v1.36.4
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
GO_MOD = HERE / "go.mod"
VERSIONS = HERE.parent / "clusterkit" / "__init__.py"
PROXY = os.environ.get("GOPROXY", "https://proxy.golang.org").split(",")[0].rstrip("/")


def upstream_mod(version: str) -> str:
    url = f"{PROXY}/k8s.io/kubernetes/@v/{version}.mod"
    with urllib.request.urlopen(url, timeout=60) as resp:
        return str(resp.read().decode())


def staging_modules(mod: str) -> list[str]:
    """Every requirement pinned at exactly v0.0.0 is a staging module."""
    return sorted(set(re.findall(r"^\s+(k8s\.io/\S+) v0\.0\.0$", mod, flags=re.MULTILINE)))


def required_version(mod: str, module: str) -> str:
    match = re.search(rf"^\s+{re.escape(module)} (v\S+)", mod, flags=re.MULTILINE)
    if not match:
        raise SystemExit(f"{module} not found in the upstream go.mod")
    return match.group(1)


def rewrite(version: str) -> None:
    mod = upstream_mod(version)
    staging_version = "v0." + version.removeprefix("v1.")
    etcd = required_version(mod, "go.etcd.io/etcd/server/v3")
    go_directive = re.search(r"^go (\S+)$", mod, flags=re.MULTILINE)
    text = GO_MOD.read_text()
    if go_directive:
        text = re.sub(r"^go \S+$", f"go {go_directive.group(1)}", text, flags=re.MULTILINE)
    text = re.sub(r"(?m)^(\s+k8s\.io/kubernetes) v\S+", rf"\1 {version}", text)
    text = re.sub(r"(?m)^(\s+go\.etcd\.io/etcd/server/v3) v\S+", rf"\1 {etcd}", text)
    replaces = "".join(f"\t{m} => {m} {staging_version}\n" for m in staging_modules(mod))
    text = re.sub(r"replace \(\n.*?\n\)", f"replace (\n{replaces})", text, flags=re.DOTALL)
    GO_MOD.write_text(text)

    consts = VERSIONS.read_text()
    consts = re.sub(r'K8S_VERSION = "[^"]*"', f'K8S_VERSION = "{version}"', consts)
    consts = re.sub(r'ETCD_VERSION = "[^"]*"', f'ETCD_VERSION = "{etcd}"', consts)
    VERSIONS.write_text(consts)

    env = dict(os.environ, GOWORK="off", GOFLAGS="-mod=mod")
    subprocess.run(["go", "mod", "tidy"], cwd=HERE, env=env, check=True)
    print(f"k8s.io/kubernetes {version}, staging modules {staging_version}, etcd {etcd}")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not re.fullmatch(r"v1\.\d+\.\d+", sys.argv[1]):
        raise SystemExit(__doc__)
    rewrite(sys.argv[1])
