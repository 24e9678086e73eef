"""Convert one camera: decode its sampled frames into ``<camera>.h5``, its boxes into a fragment.

One call per camera, in its own process when cameras run in parallel. Memory is one decoded
frame plus one frame's boxes, whatever the video's length. Outputs are written under
``.partial`` names and renamed in order (H5 file, box fragment, then the ``done`` record), so a
camera either has all three current files or is converted again on the next run.

Fragment format (``<work>/<camera>.jsonl``), one line per written image::

    {"frame": 120, "key": "rgb_00120.jpg",
     "boxes": [[type, object id, x1, y1, x2, y2, [fx1, fy1, fx2, fy2] | null], ...]}
"""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import numpy as np

from rtdetr_spec.artifacts import atomic_write_text, commit_file
from rtdetr_trainer.data.h5 import RGB_GROUP
from rtdetr_trainer.data.mtmc.groundtruth import GroundTruthIndex
from rtdetr_trainer.data.mtmc.video import DecodeReport, sampled_frames
from rtdetr_trainer.errors import DataError

#: how many frames between two progress reports.
PROGRESS_EVERY = 10
#: images between two returns of freed heap memory to the system (see :func:`_release_heap`).
TRIM_EVERY = 32
#: HDF5 metadata cache bounds: one dataset per image would otherwise let it grow to 32 MiB.
METADATA_CACHE = (1 << 20, 4 << 20)


@dataclass(frozen=True)
class CameraJob:
    camera: str
    video: str
    index_db: str
    output_dir: str
    work_dir: str
    stride: int
    jpeg_quality: int
    #: everything that, when changed, makes an earlier conversion of this camera stale.
    fingerprint: str
    #: frame size from calibration (the ground truth's pixel space), when declared.
    width: int | None = None
    height: int | None = None
    tolerate_decode_errors: bool = False


@dataclass
class CameraResult:
    camera: str
    width: int = 0
    height: int = 0
    images: int = 0
    boxes: int = 0
    frames_decoded: int = 0
    #: sampled frames the ground truth has no entry for: not written (unlabelled != empty).
    frames_without_ground_truth: int = 0
    decode_errors: int = 0
    damaged_frames: list[int] = field(default_factory=list)
    seconds: float = 0.0
    resumed: bool = False


def frame_key(frame: int) -> str:
    """The H5 key of a frame, in the model card's style: ``rgb_00120.jpg``."""
    return f"rgb_{frame:05d}.jpg"


def paths(job: CameraJob) -> tuple[Path, Path, Path]:
    """(H5 file, box fragment, done record) of a camera."""
    work = Path(job.work_dir)
    return (
        Path(job.output_dir) / f"{job.camera}.h5",
        work / f"{job.camera}.jsonl",
        work / f"{job.camera}.done.json",
    )


def finished(job: CameraJob) -> CameraResult | None:
    """The earlier result of this exact job, when all its files are there (resume)."""
    h5_path, fragment, done = paths(job)
    if not (h5_path.is_file() and fragment.is_file() and done.is_file()):
        return None
    try:
        record = json.loads(done.read_text())
    except json.JSONDecodeError:
        return None
    if record.get("fingerprint") != job.fingerprint:
        return None
    result = CameraResult(**record["result"])
    result.resumed = True
    return result


def _jpeg(image: object, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)  # type: ignore[attr-defined]
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def convert_camera(
    job: CameraJob, progress: Callable[[str, int], None] | None = None
) -> CameraResult:
    """Decode, encode and index one camera; returns its counts. Raises DataError on damage."""
    start = time.monotonic()
    h5_path, fragment, done = paths(job)
    for stale in (h5_path, fragment, done):
        stale.unlink(missing_ok=True)
    tmp_h5 = h5_path.with_name(h5_path.name + ".partial")
    tmp_fragment = fragment.with_name(fragment.name + ".partial")
    result = CameraResult(camera=job.camera)
    report = DecodeReport()
    index = GroundTruthIndex(Path(job.index_db))
    pending = 0
    try:
        with h5py.File(tmp_h5, "w") as h5, open(tmp_fragment, "w") as lines:
            _bound_metadata_cache(h5)
            group = h5.create_group(RGB_GROUP)
            group.attrs["source"] = Path(job.video).name
            group.attrs["frame_stride"] = job.stride
            for frame, image in sampled_frames(Path(job.video), stride=job.stride, report=report):
                if not result.width:
                    result.width, result.height = image.size
                    _check_size(job, image.size)
                pending += job.stride
                if progress and pending >= PROGRESS_EVERY:
                    progress(job.camera, pending)
                    pending = 0
                if not index.has_frame(frame):
                    result.frames_without_ground_truth += 1
                    continue
                key = frame_key(frame)
                group.create_dataset(key, data=_jpeg(image, job.jpeg_quality))
                boxes = index.boxes(job.camera, frame)
                lines.write(json.dumps({"frame": frame, "key": key, "boxes": boxes}) + "\n")
                result.images += 1
                result.boxes += len(boxes)
                if result.images % TRIM_EVERY == 0:
                    _release_heap()
        result.frames_decoded = report.decoded
        result.decode_errors = len(report.errors)
        result.damaged_frames = report.damaged_frames()
        if report.errors and not job.tolerate_decode_errors:
            frame, message = report.errors[0]
            raise DataError(
                f"{job.video}: FFmpeg reported {len(report.errors)} decoding error(s) in "
                f"{len(result.damaged_frames)} frame(s), first at frame {frame}: {message!r}; "
                "the video is damaged (pass --tolerate-decode-errors to keep concealed frames)"
            )
        after, last = index.frames_after(report.decoded - 1)
        if after:
            raise DataError(
                f"{job.video}: the video ends at frame {report.decoded - 1} but the ground truth "
                f"has {after} sampled frame(s) after it (up to {last}); the video is truncated "
                "or belongs to another scene"
            )
    except BaseException:
        tmp_h5.unlink(missing_ok=True)
        tmp_fragment.unlink(missing_ok=True)
        raise
    finally:
        index.close()
    commit_file(tmp_h5, h5_path)
    commit_file(tmp_fragment, fragment)
    result.seconds = round(time.monotonic() - start, 3)
    atomic_write_text(done, json.dumps({"fingerprint": job.fingerprint, "result": asdict(result)}))
    if progress and pending:
        progress(job.camera, pending)
    return result


def _bound_metadata_cache(h5: h5py.File) -> None:
    config = h5.id.get_mdc_config()
    config.set_initial_size = True
    config.initial_size, config.max_size = METADATA_CACHE
    config.min_size = METADATA_CACHE[0]
    h5.id.set_mdc_config(config)


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def _release_heap() -> None:
    """Hand freed heap pages back to the system (glibc's ``malloc_trim``).

    Each frame allocates and frees several 6 MiB buffers (1080p RGB) between HDF5's small
    long-lived allocations; glibc keeps the freed space, so without this a worker's RSS climbs
    about 20 KiB per image (docs/benchmarks.md). Trimming every few dozen images costs nothing
    measurable. Elsewhere than glibc this does nothing.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _check_size(job: CameraJob, size: tuple[int, int]) -> None:
    if job.width and job.height and size != (job.width, job.height):
        raise DataError(
            f"{job.video}: frames are {size[0]}x{size[1]} but calibration.json declares "
            f"{job.width}x{job.height} for {job.camera}; the ground-truth boxes are in the "
            "declared size, so they would not fit these frames"
        )
