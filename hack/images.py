#!/usr/bin/env python3
"""Build the project's container images without a Docker daemon and import them into containerd.

A Debian bookworm rootfs (mmdebstrap), the hash-pinned locks installed by uv into a venv on
Debian's python3, and our wheel, as deterministic OCI layers in the user's cache; imported with
Debian's ``ctr``. The recipes mirror Dockerfile.operator, Dockerfile.trainer (CPU flavour) and
Dockerfile.triton-cpu (see docs/images.md, "Building without Docker"). Needs root and the tools
of hack/node/install-packages.sh. Standard library only, like localcluster.py.

Command line:
    images.py build  [--refresh-base] [--archive DIR] [NAME...]
        build what is missing (default: every image); print each reference and digest
    images.py import --address SOCKET [--namespace k8s.io] [--snapshotter NAME] [NAME...]
        build if needed, then import into that containerd, skipping images it already has
    images.py list   what the cache holds: bases, dependency trees, images, blobs; sizes, keys
    images.py prune  remove cache entries that today's recipes, locks and sources no longer use

Names: operator, trainer-cpu, triton-cpu.

Python API (put hack/ on sys.path, as tests/e2e/cluster.py does for localcluster):
    from images import BuiltImage, ensure_images, import_images
    built = ensure_images(["operator"])  # [BuiltImage(name, references, layout, digest, size,
                                         #              key, layers)], built or from the cache
    import_images(built, "/run/containerd/containerd.sock", namespace="k8s.io")
                                         # -> [ImportResult(name, action, seconds, bytes_sent)]
    built[0].write_archive(Path("operator.tar"))  # one OCI archive for another machine

Each image has two references: ``localhost/rtdetr-operator:0.1.0`` (trainer and triton:
``localhost/rtdetr-trainer:0.1.0-cpu``, ``localhost/rtdetr-triton:0.1.0-cpu``) and the same tag
with ``-<key12>`` appended, where the key hashes everything the image is made of, so a caller
can pin exactly the build it asked for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imagekit import inventory
from imagekit.build import BuiltImage, ensure_images
from imagekit.containerd import ImportResult, PrivateContainerd, import_images
from imagekit.keys import images_root
from imagekit.recipe import RECIPES
from imagekit.rootfs import BuildError

__all__ = [
    "BuildError",
    "BuiltImage",
    "ImportResult",
    "PrivateContainerd",
    "ensure_images",
    "images_root",
    "import_images",
]


def _mb(size: int) -> str:
    return f"{size / 1e6:,.0f} MB"


def _cmd_build(args: argparse.Namespace) -> int:
    for image in ensure_images(args.names or None, refresh_base=args.refresh_base):
        print(f"{image.name}: {' '.join(image.references)}")
        print(f"  digest {image.digest}  {_mb(image.size)}  {image.layout}")
        if args.archive:
            args.archive.mkdir(parents=True, exist_ok=True)
            path = image.write_archive(args.archive / f"{image.name}.tar")
            print(f"  archive {path}")
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    built = ensure_images(args.names or None)
    for result in import_images(built, args.address, args.namespace, args.snapshotter):
        image = next(i for i in built if i.name == result.name)
        sent = f", {_mb(result.bytes_sent)} sent" if result.bytes_sent else ""
        print(
            f"{result.name}: {result.action} {image.reference} {image.digest} "
            f"({result.seconds:.1f}s{sent})"
        )
    return 0


def _cmd_list(_args: argparse.Namespace) -> int:
    print(f"cache: {images_root()}")
    for entry in inventory.entries():
        mark = "*" if entry.current else " "
        print(f"{mark} {entry.kind:5} {entry.name:40} {_mb(entry.size):>10}  {entry.detail}")
    print("(* = what today's recipes, locks and sources use)")
    return 0


def _cmd_prune(_args: argparse.Namespace) -> int:
    removed = inventory.prune()
    print("\n".join(removed) if removed else "nothing to prune")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    names = {"nargs": "*", "metavar": "NAME", "help": f"images (default all: {', '.join(RECIPES)})"}

    build = sub.add_parser("build", help="build what is missing; print references and digests")
    build.add_argument("names", **names)  # type: ignore[arg-type]
    build.add_argument(
        "--refresh-base",
        action="store_true",
        help="rebuild the Debian base rootfs (picks up Debian updates)",
    )
    build.add_argument(
        "--archive",
        type=Path,
        metavar="DIR",
        help="also write each image as DIR/NAME.tar (an OCI archive)",
    )
    build.set_defaults(func=_cmd_build)

    imp = sub.add_parser("import", help="build if needed, import into a containerd")
    imp.add_argument("names", **names)  # type: ignore[arg-type]
    imp.add_argument("--address", required=True, help="containerd socket path")
    imp.add_argument("--namespace", default="k8s.io", help="containerd namespace (default k8s.io)")
    imp.add_argument("--snapshotter", default=None, help="snapshotter to unpack with")
    imp.set_defaults(func=_cmd_import)

    sub.add_parser("list", help="what the cache holds").set_defaults(func=_cmd_list)
    sub.add_parser("prune", help="remove unused cache entries").set_defaults(func=_cmd_prune)

    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except BuildError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
