"""A full or unwritable volume: one line naming the path and the cause, exit 3, nothing torn.

"Disk full" is the kernel's own ENOSPC: the temp file a writer opens is swapped for
``/dev/full`` (every write to it fails with ENOSPC, for root too). Unwritable folders are real:
``/sys`` refuses new files even to root, and a chmod'ed folder refuses them to anyone else.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
import torch

from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_spec.storage import OutputWriteError
from rtdetr_trainer.cli import main
from rtdetr_trainer.engine.checkpoint import atomic_torch_save, save_checkpoint
from rtdetr_trainer.errors import EXIT_STORAGE, StorageError, storage_failure
from rtdetr_trainer.export.staging import StagedFiles, check_writable
from tests.trainer.trainer_fixtures import tiny_checkpoint

DEV_FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not DEV_FULL.exists(), reason="no /dev/full on this system")


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch):
    """Temp files whose name starts with one of the given prefixes write to /dev/full."""
    real = tempfile.mkstemp
    prefixes: list[str] = []

    def mkstemp(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        if any(Path(name).name.startswith(p) for p in prefixes):
            os.close(fd)
            fd = os.open(DEV_FULL, os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return prefixes


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder where creating a file fails for real (EACCES/EPERM), or skip."""
    if os.geteuid() != 0:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):
            return Path("/sys")
        pytest.skip(f"/sys refuses files with {errno.errorcode.get(e.errno)}, not EACCES")
    os.close(fd)
    Path(name).unlink()
    pytest.skip("running as root and /sys is writable here: no real unwritable folder")


@needs_dev_full
def test_checkpoint_on_a_full_disk_names_the_file_and_keeps_the_old_one(
    tmp_path: Path, full_disk: list[str]
) -> None:
    old = {"state_dict": {"w": torch.ones(3)}, "epoch": 1}
    path = save_checkpoint(old, tmp_path)
    full_disk.append(f".{path.name}.")
    with pytest.raises(OutputWriteError) as err:
        atomic_torch_save({"state_dict": {"w": torch.zeros(100_000)}, "epoch": 1}, path)
    assert err.value.errno == errno.ENOSPC
    assert str(err.value).startswith(f"cannot write {path}: No space left on device (ENOSPC)")
    assert torch.load(path, weights_only=True)["state_dict"]["w"].tolist() == [1.0, 1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, "rtdetr_model_latest.pth"]
    storage = storage_failure(err.value)
    assert storage is not None and storage.exit_code == EXIT_STORAGE == 3


def test_torch_wrapped_enospc_is_recognised_along_the_chain(tmp_path: Path) -> None:
    """torch.save into a Python file object raises RuntimeError with the OSError as context."""
    enospc = OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".m.pth.ab12_x.tmp"))
    wrapped = RuntimeError("[enforce fail at inline_container.cc:671] . unexpected pos")
    wrapped.__context__ = enospc
    storage = storage_failure(wrapped)
    assert storage is not None
    assert str(storage).startswith(f"cannot write {tmp_path / 'm.pth'}: No space left on device")
    # a permission error of a read is the input's problem, not the storage's
    assert (
        storage_failure(PermissionError(errno.EACCES, "Permission denied", "/data/a.jpg")) is None
    )


def test_json_summary_into_an_unwritable_folder_names_it(tmp_path: Path) -> None:
    folder = _unwritable_folder(tmp_path)
    target = folder / "rtdetr-results" / "metrics.json"
    with pytest.raises(OutputWriteError) as err:
        atomic_write_text(target, "{}")
    assert err.value.errno in (errno.EACCES, errno.EPERM)
    assert f"cannot write {folder / 'rtdetr-results'}" in str(err.value)
    assert not target.parent.exists()


def test_export_folder_that_cannot_be_written_is_a_storage_error(tmp_path: Path) -> None:
    folder = _unwritable_folder(tmp_path)
    with pytest.raises(StorageError, match=r"export\.onnx_file: cannot write"):
        check_writable(folder / "export", "export.onnx_file")


def test_staged_export_into_an_unwritable_folder_names_the_final_file(tmp_path) -> None:
    folder = _unwritable_folder(tmp_path)
    with pytest.raises(OutputWriteError) as err, StagedFiles() as staged:
        staged.write_text(folder / "m.manifest.json", "{}")
    assert str(err.value).startswith(f"cannot write {folder / 'm.manifest.json'}: ")
    assert not (folder / "m.manifest.json").exists()


@needs_dev_full
def test_evaluate_on_a_full_disk_exits_3_with_one_line(tmp_path, full_disk, capsys) -> None:
    spec_file, ckpt, _ = tiny_checkpoint(tmp_path)
    full_disk.append(".metrics.json.")
    code = main(["evaluate", "-e", str(spec_file), f"evaluate.checkpoint={ckpt}"])
    err = capsys.readouterr().err
    assert code == 3, err[-2000:]
    line = (
        f"rtdetr evaluate: error: cannot write {tmp_path / 'results' / 'evaluate' / 'metrics.json'}"
    )
    assert line + ": No space left on device (ENOSPC)" in err
    assert "Traceback" not in err


def test_train_into_an_unwritable_results_dir_exits_3(tmp_path, capsys) -> None:
    folder = _unwritable_folder(tmp_path)
    spec_file, _, _ = tiny_checkpoint(tmp_path)
    code = main(["train", "-e", str(spec_file), f"results_dir={folder / 'rtdetr-results'}"])
    err = capsys.readouterr().err
    assert code == 3, err[-2000:]
    assert f"rtdetr train: error: cannot write {folder / 'rtdetr-results'}" in err
    assert "Traceback" not in err
