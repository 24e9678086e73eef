"""A real S3 server for tests: SeaweedFS's ``weed``, built once and cached outside the repository.

``python hack/s3server.py build`` builds ``github.com/seaweedfs/seaweedfs/weed`` of VERSION into
``<cache>/seaweedfs-<version>-<go version>/bin`` (the cache root of the local cluster tools,
``~/.cache/rtdetr-operator``; clusterkit/gomodule.py), under a lock so concurrent builds do not
collide; a finished build is reused. :func:`start` runs ``weed server -s3`` on loopback ports
with a fresh data folder and an S3 identity file (access key and secret), and waits until the
S3 port answers.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(HACK_DIR))

from clusterkit.gomodule import GoProgram, free_port  # noqa: E402

ROOT_MODULE = "github.com/seaweedfs/seaweedfs"
MODULE = f"{ROOT_MODULE}/weed"
VERSION = "v0.0.0-20261109003541-7506e5f91cd6"


#: `go install .../weed@VERSION` refuses this module (its go.mod has replace directives): built
#: from the downloaded module's source instead (clusterkit/gomodule.py).
WEED = GoProgram("seaweedfs", ROOT_MODULE, VERSION, "weed", "weed")


@dataclass
class S3Server:
    proc: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start(
    data: Path, access_key: str, secret_key: str, timeout: float = 60, host: str = "127.0.0.1"
) -> S3Server:
    """``weed server -s3`` on ``host`` (loopback; the node's address when pods must reach it),
    storing under ``data``; returns when S3 answers."""
    weed = WEED.ensure()
    data.mkdir(parents=True, exist_ok=True)
    identity = {
        "identities": [
            {
                "name": "tests",
                "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    config = data / "s3.json"
    config.write_text(json.dumps(identity))
    # gRPC ports default to port + 10000, which may not exist: every port is given.
    s3, master, volume, filer, iam, *grpc = (free_port() for _ in range(9))
    cmd = [
        str(weed),
        "server",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-dir={data}",
        f"-master.port={master}",
        f"-volume.port={volume}",
        f"-filer.port={filer}",
        "-s3",
        f"-s3.port={s3}",
        f"-master.port.grpc={grpc[0]}",
        f"-volume.port.grpc={grpc[1]}",
        f"-filer.port.grpc={grpc[2]}",
        f"-s3.port.grpc={grpc[3]}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-iam.port={iam}",
        f"-s3.config={config}",
        "-volume.max=4",
    ]
    log = (data / "weed.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited {proc.returncode}: {(data / 'weed.log').read_text()}")
        try:
            with socket.create_connection((host, s3), timeout=1):
                return S3Server(proc, f"http://{host}:{s3}", access_key, secret_key)
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"weed's S3 port {s3} did not open in {timeout}s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("command", choices=["build", "path"])
    args = p.parse_args(argv)
    print(WEED.ensure() if args.command == "build" else WEED.path())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
