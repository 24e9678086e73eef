"""An MTMC scene folder: which cameras it has, and what is wrong with it before any decoding.

Layout (NVIDIA PhysicalAI-SmartSpaces, MTMC tracking 2025)::

    <scene>/videos/<camera id>.mp4     one 1080p 30 FPS video per camera
    <scene>/ground_truth.json          {"<frame>": [{"object type", "object id",
                                         "2d bounding box visible": {<camera id>: [x1,y1,x2,y2]},
                                         "2d bounding box": {...} (optional, unoccluded),
                                         "3d location", ...}, ...], ...}
    <scene>/calibration.json           {"sensors": [{"id": <camera id>, "attributes":
                                         [{"name": "frameWidth", "value": 1920}, ...], ...}]}

Camera ids join the three: a video's file stem, a sensor's ``id`` and the keys of the 2D boxes.
Every check that needs only the folder runs here, so a typo'd path or a missing camera fails in
milliseconds rather than an hour into decoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_trainer.errors import DataError

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi")


@dataclass(frozen=True)
class Camera:
    """One camera: its id, its video and the frame size calibration declares (if any)."""

    id: str
    video: Path
    width: int | None = None
    height: int | None = None


@dataclass
class Scene:
    root: Path
    cameras: list[Camera]
    ground_truth: Path
    calibration: Path | None
    #: every camera id with a video, selected or not.
    video_ids: list[str] = field(default_factory=list)
    #: calibration sensors (camera ids) that have no video, kept for the ground-truth checks.
    sensors_without_video: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.root.name

    def camera_ids(self) -> list[str]:
        return [c.id for c in self.cameras]


def _attributes(sensor: dict[str, Any]) -> dict[str, Any]:
    attrs = sensor.get("attributes") or []
    if isinstance(attrs, dict):
        return attrs
    return {str(a.get("name")): a.get("value") for a in attrs if isinstance(a, dict)}


def read_calibration(path: Path) -> dict[str, tuple[int | None, int | None]]:
    """Camera sensor id -> (frameWidth, frameHeight) from ``calibration.json``."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    sensors = data.get("sensors") if isinstance(data, dict) else None
    if not isinstance(sensors, list):
        raise DataError(f"{path}: expected an object with a 'sensors' list")
    out: dict[str, tuple[int | None, int | None]] = {}
    for n, sensor in enumerate(sensors):
        if not isinstance(sensor, dict) or not isinstance(sensor.get("id"), str):
            raise DataError(f"{path}: sensors[{n}] has no string 'id'")
        if str(sensor.get("type", "camera")).lower() != "camera":
            continue
        attrs = _attributes(sensor)
        size = []
        for key in ("frameWidth", "frameHeight"):
            value = attrs.get(key)
            try:
                size.append(int(value) if value is not None else None)
            except (TypeError, ValueError):
                raise DataError(
                    f"{path}: sensor {sensor['id']}: {key} {value!r} is not a number"
                ) from None
        if sensor["id"] in out:
            raise DataError(f"{path}: sensor id {sensor['id']!r} appears twice")
        out[sensor["id"]] = (size[0], size[1])
    return out


def open_scene(
    root: str | Path, *, cameras: list[str] | None = None, skip_missing_cameras: bool = False
) -> Scene:
    """Find the scene's cameras and check that videos, calibration and the selection agree.

    Args:
        root: the scene folder.
        cameras: convert only these camera ids (default: every video).
        skip_missing_cameras: a calibrated camera without a video is a warning, not an error.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"--scene {root}: not a directory")
    videos_dir = root / "videos"
    if not videos_dir.is_dir():
        raise DataError(f"--scene {root}: has no videos/ folder (expected videos/<camera>.mp4)")
    videos = {p.stem: p for p in sorted(videos_dir.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES}
    if not videos:
        raise DataError(f"{videos_dir}: no videos ({', '.join(VIDEO_SUFFIXES)})")
    ground_truth = root / "ground_truth.json"
    if not ground_truth.is_file():
        raise DataError(f"--scene {root}: has no ground_truth.json")
    scene = Scene(
        root=root, cameras=[], ground_truth=ground_truth, calibration=None, video_ids=list(videos)
    )
    sizes: dict[str, tuple[int | None, int | None]] = {}
    calibration = root / "calibration.json"
    if calibration.is_file():
        scene.calibration = calibration
        sizes = read_calibration(calibration)
        scene.sensors_without_video = sorted(set(sizes) - set(videos))
        if scene.sensors_without_video:
            missing = ", ".join(scene.sensors_without_video)
            message = (
                f"{calibration} lists {len(scene.sensors_without_video)} camera(s) with no video "
                f"in {videos_dir}: {missing}"
            )
            wanted = set(cameras or sizes)
            if not skip_missing_cameras and wanted & set(scene.sensors_without_video):
                raise DataError(
                    message + " (restore the videos, select cameras with --cameras, or pass "
                    "--skip-missing-cameras to convert the rest)"
                )
            scene.warnings.append(message)
        extra = sorted(set(videos) - set(sizes))
        if extra:
            scene.warnings.append(
                f"{len(extra)} video(s) have no sensor in {calibration.name}: {', '.join(extra)}"
            )
    else:
        scene.warnings.append(
            f"{root} has no calibration.json: cameras missing from videos/ cannot be detected"
        )
    selected = list(videos) if cameras is None else cameras
    unknown = [c for c in selected if c not in videos]
    if unknown:
        raise DataError(
            f"--cameras: {', '.join(unknown)} not in {videos_dir} (has {', '.join(videos)})"
        )
    for cam in selected:
        width, height = sizes.get(cam, (None, None))
        scene.cameras.append(Camera(cam, videos[cam], width, height))
    return scene
