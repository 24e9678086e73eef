"""``rtdetr dataset convert mtmc``: an MTMC scene -> per-camera H5 files + COCO annotations.

Order of work, cheapest checks first so bad input fails before any decoding:

1. the folder (videos, ground truth, calibration agree; :mod:`.scene`);
2. every video opens and has the declared size (container headers only);
3. the ground truth streams into an index (:mod:`.groundtruth`); unknown object types, boxes for
   cameras without a video, and filters the file cannot support are errors here;
4. cameras convert in parallel, each resumable (:mod:`.worker`);
5. annotations are written per split (:mod:`.annotations`), then ``conversion.json``.

``conversion.json`` is written last and removed first: while it is absent the output is not a
finished dataset, and a rerun with the same options redoes only the cameras that did not finish.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Empty
from typing import Any

from rtdetr_spec.artifacts import atomic_write_text
from rtdetr_trainer.data.mtmc.annotations import (
    AnnotationBuilder,
    AnnotationCounts,
    BoxFilters,
    CameraFragment,
)
from rtdetr_trainer.data.mtmc.classes import ClassMapping
from rtdetr_trainer.data.mtmc.groundtruth import GroundTruthStats, build_index
from rtdetr_trainer.data.mtmc.progress import ConvertProgress
from rtdetr_trainer.data.mtmc.scene import Scene, open_scene
from rtdetr_trainer.data.mtmc.splits import SplitAssigner, SplitPlan
from rtdetr_trainer.data.mtmc.video import VideoInfo, probe
from rtdetr_trainer.data.mtmc.worker import CameraJob, CameraResult, convert_camera, finished
from rtdetr_trainer.errors import DataError

REPORT = "conversion.json"
WORK_DIR = ".convert"
FORMAT = "rtdetr-mtmc-convert/v1"


@dataclass(frozen=True)
class MtmcOptions:
    scene: Path
    output: Path
    frame_stride: int = 1
    cameras: list[str] | None = None
    class_map: ClassMapping = field(default_factory=ClassMapping)
    split: SplitPlan = field(default_factory=SplitPlan)
    filters: BoxFilters = field(default_factory=BoxFilters)
    #: parallel camera processes (0: one per available CPU, at most one per camera).
    workers: int = 0
    jpeg_quality: int = 95
    skip_missing_cameras: bool = False
    tolerate_decode_errors: bool = False
    progress: bool = True


@dataclass
class ConversionReport:
    """What ``conversion.json`` holds (and what the CLI prints)."""

    scene: str
    output: str
    annotations: dict[str, str]
    cameras: list[CameraResult]
    ground_truth: GroundTruthStats
    counts: AnnotationCounts
    warnings: list[str]
    seconds: float


def _check_ground_truth(opts: MtmcOptions, scene: Scene, stats: GroundTruthStats) -> list[str]:
    """Errors for what would silently shrink the dataset; returns warnings for the rest."""
    if not stats.sampled_frames:
        raise DataError(
            f"{scene.ground_truth}: no frame is a multiple of --frame-stride {opts.frame_stride}"
        )
    unknown = {t: n for t, n in stats.boxes_by_type.items() if not opts.class_map.resolve(t)[0]}
    if unknown:
        listed = ", ".join(f"{t!r} ({n} boxes)" for t, n in sorted(unknown.items()))
        raise DataError(
            f"{scene.ground_truth}: object type(s) with no class: {listed}; map them with "
            "--class-map TYPE=CLASS, or drop them explicitly with --class-map TYPE="
        )
    videos = set(scene.video_ids)
    selected = set(scene.camera_ids())
    warnings = []
    orphans = {c: n for c, n in stats.boxes_by_camera.items() if c not in videos}
    if orphans:
        listed = ", ".join(f"{c} ({n} boxes)" for c, n in sorted(orphans.items()))
        message = f"{scene.ground_truth}: boxes for camera id(s) with no video: {listed}"
        if not opts.skip_missing_cameras:
            raise DataError(message + " (pass --skip-missing-cameras to leave them out)")
        warnings.append(message + "; left out")
    unselected = sum(n for c, n in stats.boxes_by_camera.items() if c in videos - selected)
    if unselected:
        warnings.append(f"{unselected} boxes belong to cameras not selected with --cameras")
    if opts.filters.min_visibility and stats.boxes_without_full_box:
        raise DataError(
            f"--min-visibility needs the unoccluded '2d bounding box' of every box; "
            f"{scene.ground_truth} lacks it for {stats.boxes_without_full_box} boxes"
        )
    return warnings


def _probe_all(scene: Scene) -> dict[str, VideoInfo]:
    infos, problems = {}, []
    for cam in scene.cameras:
        try:
            info = probe(cam.video)
        except DataError as e:
            problems.append(str(e))
            continue
        if cam.width and cam.height and (info.width, info.height) != (cam.width, cam.height):
            problems.append(
                f"{cam.video}: frames are {info.width}x{info.height} but calibration.json "
                f"declares {cam.width}x{cam.height}; the boxes would not fit the frames"
            )
        infos[cam.id] = info
    if problems:
        raise DataError(problems)
    return infos


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota.

    ``os.cpu_count()`` is the node's count; in a pod limited to 4 CPUs on a 64-core node it would
    start 64 decoders that share 4 CPUs (and 64 times the memory).
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus


def _fingerprint(opts: MtmcOptions, video: Path, index_db: Path) -> str:
    st, gt = video.stat(), index_db.stat()
    key = [FORMAT, st.st_size, st.st_mtime_ns, gt.st_size, gt.st_mtime_ns, opts.frame_stride]
    key += [opts.jpeg_quality, opts.tolerate_decode_errors]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def _forget_previous(out: Path) -> None:
    """Un-finish an earlier run before touching anything: its report and annotation files."""
    report = out / REPORT
    if not report.is_file():
        return
    try:
        previous = json.loads(report.read_text())
    except json.JSONDecodeError:
        previous = {}
    report.unlink()
    for name in (previous.get("annotations") or {}).values():
        (out / name).unlink(missing_ok=True)


def _run_jobs(jobs: list[CameraJob], workers: int, progress: ConvertProgress) -> list[CameraResult]:
    if workers <= 1:
        return [convert_camera(job, progress.advance) for job in jobs]
    ctx = multiprocessing.get_context("spawn")  # no inherited h5py/sqlite handles
    queue = ctx.Queue()  # handed to workers at start-up: a plain Queue cannot be a task argument
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)
    ) as pool:
        futures: dict[Future[CameraResult], CameraJob] = {
            pool.submit(_queued, job): job for job in jobs
        }
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.5)
            _drain(queue, progress)
            if any(f.exception() for f in done):
                for f in pending:
                    f.cancel()
        _drain(queue, progress)
        failed = [f for f in futures if _failed(f)]
        for f in failed:  # a bug or a full disk is not bad input: raise it as it is
            if not isinstance(f.exception(), DataError):
                raise f.exception()  # type: ignore[misc]
        if failed:
            raise DataError([f"{futures[f].camera}: {f.exception()}" for f in failed])
        return [f.result() for f in futures]


def _drain(queue: Any, progress: ConvertProgress) -> None:
    while True:
        try:
            progress.advance(*queue.get_nowait())
        except Empty:
            return


def _failed(f: Future[CameraResult]) -> bool:
    return not f.cancelled() and f.exception() is not None


_PROGRESS_QUEUE: Any = None


def _init_worker(queue: Any) -> None:
    global _PROGRESS_QUEUE
    _PROGRESS_QUEUE = queue


def _queued(job: CameraJob) -> CameraResult:
    return convert_camera(job, lambda camera, frames: _PROGRESS_QUEUE.put((camera, frames)))


def convert_mtmc(opts: MtmcOptions) -> ConversionReport:
    """Convert a scene; returns the report also written to ``<output>/conversion.json``."""
    start = time.monotonic()
    if opts.frame_stride < 1:
        raise DataError(f"--frame-stride {opts.frame_stride}: must be >= 1")
    if not 1 <= opts.jpeg_quality <= 100:
        raise DataError(f"--jpeg-quality {opts.jpeg_quality}: must be in 1..100")
    scene = open_scene(
        opts.scene, cameras=opts.cameras, skip_missing_cameras=opts.skip_missing_cameras
    )
    out = opts.output.resolve()
    infos = _probe_all(scene)
    work = out / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DataError(f"--output {out}: another conversion is writing there") from None
        return _convert_locked(opts, scene, infos, out, work, start)


def _convert_locked(
    opts: MtmcOptions,
    scene: Scene,
    infos: dict[str, VideoInfo],
    out: Path,
    work: Path,
    start: float,
) -> ConversionReport:
    _forget_previous(out)
    index_db = work / "groundtruth.sqlite"
    stats = build_index(scene.ground_truth, index_db, stride=opts.frame_stride)
    warnings = list(scene.warnings) + _check_ground_truth(opts, scene, stats)
    workers = min(len(scene.cameras), opts.workers or available_cpus())
    jobs, results = [], {}
    for cam in scene.cameras:
        job = CameraJob(
            camera=cam.id,
            video=str(cam.video),
            index_db=str(index_db),
            output_dir=str(out),
            work_dir=str(work),
            stride=opts.frame_stride,
            jpeg_quality=opts.jpeg_quality,
            fingerprint=_fingerprint(opts, cam.video, index_db),
            width=cam.width,
            height=cam.height,
            tolerate_decode_errors=opts.tolerate_decode_errors,
        )
        earlier = finished(job)
        if earlier is not None:
            results[cam.id] = earlier
        else:
            jobs.append(job)
    total = sum(infos[j.camera].frames or 0 for j in jobs)
    progress = ConvertProgress(total, enabled=opts.progress)
    try:
        for result in _run_jobs(jobs, min(workers, len(jobs)), progress):
            results[result.camera] = result
    finally:
        progress.close()
    cameras = [results[c] for c in scene.camera_ids()]
    for r in cameras:
        if r.frames_without_ground_truth:
            warnings.append(
                f"{r.camera}: {r.frames_without_ground_truth} sampled frame(s) have no "
                "ground-truth entry and were not written (unlabelled is not empty)"
            )
        if r.decode_errors:
            warnings.append(
                f"{r.camera}: kept {len(r.damaged_frames)} frame(s) FFmpeg reported "
                f"{r.decode_errors} decoding error(s) in (--tolerate-decode-errors)"
            )
    fragments = [
        CameraFragment(r.camera, work / f"{r.camera}.jsonl", r.width, r.height) for r in cameras
    ]
    first, last = stats.first_frame or 0, stats.last_frame or 0
    builder = AnnotationBuilder(
        fragments,
        opts.class_map,
        opts.filters,
        SplitAssigner(opts.split, scene.name, first, last),
    )
    counts = builder.count()
    if counts.clipped:
        warnings.append(f"{counts.clipped} boxes reached past the frame and were clipped")
    for reason in ("degenerate", "outside_frame"):
        if counts.dropped[reason]:
            warnings.append(f"{counts.dropped[reason]} boxes dropped: {reason.replace('_', ' ')}")
    info = {"description": f"MTMC scene {scene.name}", "frame_stride": opts.frame_stride}
    annotations = {}
    for split in opts.split.names(scene.name):
        rel = f"annotations/{split}.json"
        builder.write_split(split, out / rel, {**info, "split": split})
        annotations[split] = rel
    report = ConversionReport(
        scene=str(scene.root),
        output=str(out),
        annotations=annotations,
        cameras=cameras,
        ground_truth=stats,
        counts=counts,
        warnings=warnings,
        seconds=round(time.monotonic() - start, 3),
    )
    record = {
        "format": FORMAT,
        "options": {
            "frame_stride": opts.frame_stride,
            "cameras": scene.camera_ids(),
            "class_map": opts.class_map.to_json(),
            "split": asdict(opts.split),
            "filters": asdict(opts.filters),
            "jpeg_quality": opts.jpeg_quality,
        },
        "categories": opts.class_map.categories(),
        **{k: v for k, v in asdict(report).items() if k != "counts"},
        "counts": counts.to_json(),
    }
    atomic_write_text(out / REPORT, json.dumps(record, indent=2) + "\n")
    return report
