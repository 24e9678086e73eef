"""Atomic writes of artifacts (manifests, status files, summaries): readers never see a torn file,
a failed write keeps the old one, and files are readable by other users (pods of other tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr_spec.artifacts import atomic_write, atomic_write_text, commit_file, umask


def test_write_replaces_with_the_umask_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "status.json"
    atomic_write_text(target, "one\n")
    atomic_write_text(target, "two\n")
    assert target.read_text() == "two\n"
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask()  # not mkstemp's 0600
    assert [p.name for p in target.parent.iterdir()] == ["status.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    atomic_write_text(target, "complete\n")

    def half(f) -> None:
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, half)
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_commit_file_puts_a_library_written_file_in_place(tmp_path: Path) -> None:
    final = tmp_path / "Camera.h5"
    final.write_bytes(b"old")
    tmp = tmp_path / "Camera.h5.partial"
    tmp.write_bytes(b"new frames")
    tmp.chmod(0o600)  # as mkstemp leaves it
    commit_file(tmp, final)
    assert final.read_bytes() == b"new frames" and not tmp.exists()
    assert final.stat().st_mode & 0o777 == 0o666 & ~umask()
