"""Start, identify and stop the cluster's processes.

Every component runs in its own session (and therefore its own process group) so it survives
the command that started it and can be signalled as a unit. A pid alone is not proof of
identity: after a reboot, or long after a crash, the same pid can belong to an unrelated
process. Each record therefore also stores the kernel boot id and the process start time, and
every spawned process carries an environment marker naming its state directory, which lets
``down`` find survivors even when the pid files are gone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MARKER_ENV = "RTDETR_LOCALCLUSTER_STATE"

# Popen objects of children started by this process, so that they can be reaped (a zombie
# still has a /proc entry and would otherwise look alive until the parent exits).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class ProcRecord:
    """What we need to recognise and stop one component later, possibly from another process."""

    name: str
    pid: int
    start_ticks: int
    boot_id: str
    argv: list[str]
    log: str

    def save(self, run_dir: Path) -> None:
        write_atomic(run_dir / f"{self.name}.json", json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> ProcRecord | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


def write_atomic(path: Path, text: str, mode: int = 0o644) -> None:
    """Write via a temporary file and rename, so readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.chmod(mode)
    tmp.replace(path)


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is parenthesised and may itself contain spaces or parentheses.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def _is_zombie(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)


def is_alive(rec: ProcRecord) -> bool:
    """True only if the recorded process itself (not a pid reuse) is still running."""
    _reap(rec.pid)
    if rec.boot_id != boot_id():
        return False
    if start_ticks(rec.pid) != rec.start_ticks:
        return False
    return not _is_zombie(rec.pid)


def spawn(
    name: str,
    argv: list[str],
    log_path: Path,
    state_dir: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcRecord:
    """Start ``argv`` detached in a new session with output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ if env is None else env)
    full_env[MARKER_ENV] = str(state_dir)
    with open(log_path, "ab") as log:
        log.write(f"==> {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=full_env,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    ticks = start_ticks(child.pid)
    return ProcRecord(
        name=name,
        pid=child.pid,
        start_ticks=ticks or -1,
        boot_id=boot_id(),
        argv=argv,
        log=str(log_path),
    )


def exited(rec: ProcRecord) -> int | None:
    """Exit status of a child we started in this process, if it has exited."""
    child = _CHILDREN.get(rec.pid)
    if child is not None:
        return child.poll()
    return None if is_alive(rec) else -1


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def terminate(records: list[ProcRecord], grace: float = 10.0) -> list[str]:
    """SIGTERM each live record's group, SIGKILL what is left after ``grace``; return names."""
    live = [r for r in records if is_alive(r)]
    for rec in live:
        _signal_group(rec.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(r) for r in live):
        time.sleep(0.1)
    for rec in live:
        if is_alive(rec):
            _signal_group(rec.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(is_alive(r) for r in live):
        time.sleep(0.05)
    return [r.name for r in live]


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        fields = _stat_fields(pid)
        if not fields:
            break
        pid = int(fields[1])
    return pids


def marked_processes(state_dir: Path) -> list[int]:
    """Pids of live processes that carry this state directory's marker in their environment."""
    needle = f"{MARKER_ENV}={state_dir}".encode()
    skip = _ancestors()
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid in skip or _is_zombie(pid):
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(pid)
    return found


def kill_marked(state_dir: Path, grace: float = 5.0) -> list[int]:
    """Stop every process still marked with ``state_dir`` (survivors of lost pid records)."""
    pids = marked_processes(state_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marked_processes(state_dir):
        time.sleep(0.1)
    for pid in marked_processes(state_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and marked_processes(state_dir):
        time.sleep(0.05)
    for pid in list(_CHILDREN):
        _reap(pid)
    return pids


def tail(path: Path | str, lines: int = 40) -> str:
    """Last ``lines`` lines of a log file, for error messages."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError as err:
        return f"(cannot read {path}: {err})"
    return "\n".join(data.splitlines()[-lines:])


# klog error/fatal lines, Go error returns ("Error: ..."), zap/slog JSON errors, panics.
_ERROR_LINE = re.compile(
    r'^[EF]\d{4} |^Error:|^panic:|"level":"(error|fatal|ERROR)"|^[a-z-]+: .*failed'
)


def error_lines(path: Path | str, limit: int = 10) -> str:
    """The first few lines of a log that look like errors; usage text often buries them."""
    try:
        with open(path, errors="replace") as fh:
            found = [line.rstrip() for line in fh if _ERROR_LINE.search(line)]
    except OSError:
        return ""
    return "\n".join(found[:limit])
