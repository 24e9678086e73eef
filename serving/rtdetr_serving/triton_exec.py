"""``rtdetr-serve tritonserver ARGS...``: nvidia-pytriton's tritonserver as a container command.

Why: a CPU serving image built on nvidia-pytriton (the python backend only) ships
``/usr/local/bin/tritonserver`` as a two-line shim running ``rtdetr-serve tritonserver "$@"``,
so Kubernetes pods start it exactly like NGC's tritonserver (``command: [tritonserver]``, the
operator's flags as ``args``). This command does the set-up :mod:`rtdetr_serving.triton_local`
does for ``rtdetr-serve local`` (a backends folder holding this Python's python-backend stub,
copied somewhere writable, also in a read-only image; ``LD_LIBRARY_PATH`` with Python's LIBDIR
and ``nvidia_pytriton.libs``; ``RTDETR_TRITON_SITE_DIRS``) and then *replaces itself* with
tritonserver (``execve``): tritonserver gets the process id, so as a pod's PID 1 it receives
SIGTERM from the kubelet directly and drains, with no launcher in between to lose signals.

ARGS are tritonserver's own flags, passed through unchanged; ``--backend-directory`` is added
only when ARGS do not name one.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rtdetr_serving.triton_local import TritonInstall, find_triton, prepare_backends, server_env

BACKEND_DIRECTORY = "--backend-directory"


def names_backend_directory(args: Sequence[str]) -> bool:
    return any(a == BACKEND_DIRECTORY or a.startswith(f"{BACKEND_DIRECTORY}=") for a in args)


def tritonserver_argv(
    install: TritonInstall, backends: Path | None, args: Sequence[str]
) -> list[str]:
    """``[binary, (--backend-directory=...), *args]`` (no backend folder when ARGS name one)."""
    argv = [str(install.binary)]
    if backends is not None and not names_backend_directory(args):
        argv.append(f"{BACKEND_DIRECTORY}={backends}")
    return argv + list(args)


def exec_tritonserver(args: Sequence[str]) -> NoReturn:
    """Set up nvidia-pytriton's tritonserver and exec it with ``args`` (never returns)."""
    install = find_triton()
    backends = None if names_backend_directory(args) else prepare_backends(install)
    argv = tritonserver_argv(install, backends, args)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, server_env(install))
