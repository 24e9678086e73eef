"""A synthetic scene in the MTMC layout: H.264 videos, ground truth and calibration.

The real scenes are hundreds of GB behind a licence; the converter's tests, its benchmark and
anyone trying the command need a scene that has the same files and fields. Objects are the
the model card's seven classes drawn by :mod:`rtdetr_trainer.data.synth` (so a converted scene
trains),
moving in straight lines across each camera's static background. Boxes reaching past the frame
have a smaller visible box than their unoccluded one, like the real ``2d bounding box`` /
``2d bounding box visible`` pair.

``stamp=True`` writes each frame's number in binary as black/white blocks in the top-left
corner, so a test can read back which video frame an H5 image came from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from PIL import Image, ImageDraw

from rtdetr_trainer.data.synth import ASPECTS, HEIGHT_SCALE
from rtdetr_trainer.data.synth_draw import RENDERERS
from rtdetr_trainer.data.synth_draw import background as draw_background

#: scene object types (as the MTMC ground truth names them) -> model card class.
SCENE_TYPES: dict[str, str] = {
    "Person": "person",
    "AgilityDigit": "agility_digit",
    "FourierGR1T2": "gr1_t2",
    "NovaCarter": "nova_carter",
    "Transporter": "transporter",
    "Forklift": "forklift",
    "Pallet": "pallet",
}
STAMP_BITS = 14
STAMP_BLOCK = 8


@dataclass(frozen=True)
class SceneConfig:
    cameras: int = 3
    frames: int = 60
    width: int = 320
    height: int = 192
    fps: int = 30
    objects: int = 7
    seed: int = 0
    stamp: bool = True
    #: x264 constant rate factor: 18 is visually lossless.
    crf: int = 18
    #: whether objects carry the unoccluded "2d bounding box" next to the visible one.
    full_boxes: bool = True


def camera_ids(n: int) -> list[str]:
    """The 2025 scenes' naming: ``Camera``, ``Camera_01``, ``Camera_02``, ..."""
    return ["Camera"] + [f"Camera_{i:02d}" for i in range(1, n)]


@dataclass
class _Track:
    kind: str
    object_id: int
    cam: int
    size: tuple[float, float]
    start: tuple[float, float]
    velocity: tuple[float, float]

    def box(self, frame: int) -> tuple[float, float, float, float]:
        x = self.start[0] + self.velocity[0] * frame
        y = self.start[1] + self.velocity[1] * frame
        return (x, y, x + self.size[0], y + self.size[1])


def _tracks(cfg: SceneConfig, cam: int, rng: np.random.Generator) -> list[_Track]:
    kinds = list(SCENE_TYPES)
    tracks = []
    for k in range(cfg.objects):
        kind = kinds[k % len(kinds)]
        name = SCENE_TYPES[kind]
        h = cfg.height * rng.uniform(0.25, 0.5) * HEIGHT_SCALE.get(name, 1.0)
        w = min(h * rng.uniform(*ASPECTS[name]), cfg.width * 0.6)
        x0 = rng.uniform(-0.2 * w, cfg.width - 0.8 * w)
        y0 = rng.uniform(STAMP_BLOCK * 2, cfg.height - h)
        speed = cfg.width / max(cfg.frames, 1) * rng.uniform(0.3, 1.0)
        v = (speed * rng.choice([-1.0, 1.0]), rng.uniform(-0.2, 0.2) * speed)
        tracks.append(_Track(kind, k, cam, (w, h), (x0, y0), v))
    return tracks


def _stamp(draw: ImageDraw.ImageDraw, frame: int) -> None:
    for bit in range(STAMP_BITS):
        on = (frame >> bit) & 1
        x = bit * STAMP_BLOCK
        draw.rectangle(
            [x, 0, x + STAMP_BLOCK - 1, STAMP_BLOCK - 1], fill=(255, 255, 255) if on else (0, 0, 0)
        )


def read_stamp(image: Image.Image) -> int:
    """The frame number :func:`_stamp` wrote into an (approximately decoded) image."""
    gray = np.asarray(image.convert("L"), dtype=np.float32)
    value = 0
    for bit in range(STAMP_BITS):
        x = bit * STAMP_BLOCK
        block = gray[2 : STAMP_BLOCK - 2, x + 2 : x + STAMP_BLOCK - 2]
        value |= int(block.mean() > 128) << bit
    return value


def _clip(box: tuple[float, ...], w: int, h: int) -> list[float] | None:
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[2], float(w)), min(box[3], float(h))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return [round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2)]


def write_scene(root: str | Path, cfg: SceneConfig) -> Path:
    """Write ``videos/``, ``ground_truth.json`` and ``calibration.json`` under ``root``."""
    root = Path(root)
    (root / "videos").mkdir(parents=True, exist_ok=True)
    cams = camera_ids(cfg.cameras)
    per_cam = [_tracks(cfg, c, np.random.default_rng([cfg.seed, c])) for c in range(cfg.cameras)]
    for c, cam in enumerate(cams):
        _write_video(root / "videos" / f"{cam}.mp4", cfg, c, per_cam[c])
    with open(root / "ground_truth.json", "w") as f:
        f.write("{")
        for frame in range(cfg.frames):
            objects = []
            for k in range(cfg.objects):
                visible: dict[str, list[float]] = {}
                full: dict[str, list[float]] = {}
                kind = per_cam[0][k].kind
                for c, cam in enumerate(cams):
                    box = per_cam[c][k].box(frame)
                    vis = _clip(box, cfg.width, cfg.height)
                    if vis is not None:
                        visible[cam] = vis
                        full[cam] = [round(v, 2) for v in box]
                obj: dict[str, Any] = {
                    "object type": kind,
                    "object id": k,
                    "3d location": [float(k), float(frame) / cfg.fps, 0.0],
                    "3d bounding box scale": [0.6, 0.6, 1.7],
                    "3d bounding box rotation": [0.0, 0.0, 0.0],
                    "2d bounding box visible": visible,
                }
                if cfg.full_boxes:
                    obj["2d bounding box"] = full
                objects.append(obj)
            f.write(("," if frame else "") + f'"{frame}": ' + json.dumps(objects))
        f.write("}\n")
    sensors = []
    for cam in cams:
        fx = cfg.width * 0.8
        k = [[fx, 0.0, cfg.width / 2], [0.0, fx, cfg.height / 2], [0.0, 0.0, 1.0]]
        e = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 10.0]]
        sensors.append(
            {
                "type": "camera",
                "id": cam,
                "intrinsicMatrix": k,
                "extrinsicMatrix": e,
                "cameraMatrix": (np.asarray(k) @ np.asarray(e)).tolist(),
                "attributes": [
                    {"name": "fps", "value": cfg.fps},
                    {"name": "frameWidth", "value": cfg.width},
                    {"name": "frameHeight", "value": cfg.height},
                ],
            }
        )
    (root / "calibration.json").write_text(json.dumps({"sensors": sensors}, indent=1))
    return root


def render_frame(
    background: Image.Image, tracks: list[_Track], frame: int, seed: int, stamp: bool
) -> Image.Image:
    img = background.copy()
    draw = ImageDraw.Draw(img)
    for t in sorted(tracks, key=lambda t: t.box(frame)[3]):  # far (higher up) first
        x1, y1, x2, y2 = (round(v) for v in t.box(frame))
        # the same object looks the same in every frame: its renderer's colours are seeded.
        RENDERERS[SCENE_TYPES[t.kind]](
            draw, (x1, y1, x2, y2), np.random.default_rng([seed, t.cam, t.object_id])
        )
    if stamp:
        _stamp(draw, frame)
    return img


def _write_video(path: Path, cfg: SceneConfig, cam: int, tracks: list[_Track]) -> None:
    background = draw_background(cfg.width, cfg.height, np.random.default_rng([cfg.seed, cam, 99]))
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=cfg.fps)
        stream.width, stream.height, stream.pix_fmt = cfg.width, cfg.height, "yuv420p"
        stream.options = {"crf": str(cfg.crf), "preset": "veryfast"}
        for frame in range(cfg.frames):
            img = render_frame(background, tracks, frame, cfg.seed, cfg.stamp)
            for packet in stream.encode(av.VideoFrame.from_image(img)):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
