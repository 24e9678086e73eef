"""Container images of this project built without a Docker daemon.

A Debian rootfs from ``mmdebstrap`` plus the hash-pinned locks and our own wheel, written as
deterministic OCI layers and imported into containerd with Debian's ``ctr``. The recipes in
``recipe.py`` mirror the Dockerfiles at the repository root (a test keeps them in step), so the
images a Docker user builds and the ones the local node runs hold the same packages.

Standard library only, like ``clusterkit``: it runs before any virtual environment exists.

Modules:
    recipe      what goes into each image (locks, sources, user, ENV, entrypoint, checks)
    keys        cache locations and the content keys that decide what is rebuilt
    oci         deterministic layer tars, config/manifest/index JSON, image layouts
    rootfs      the Debian base (mmdebstrap) and build steps in an overlay + chroot
    userland    the config layer: passwd/group entries, home directory, extra files
    build       ensure_images(): base -> dependency layer -> app layer -> config layer
    containerd  import_images() through ``ctr``, and a private containerd for tests
    inventory   what the cache holds (``images.py list``) and ``prune``
"""

from __future__ import annotations

# Bump when the build changes in a way the hashed inputs (locks, sources, recipe fields,
# base digest) do not capture; every key below includes it, so old cache entries go stale.
RECIPE_VERSION = "1"
