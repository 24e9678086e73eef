"""Stream a scene's ``ground_truth.json`` into an on-disk index the camera workers query.

A scene's ground truth is one JSON object keyed by frame (9000 frames x tens of objects x up to
dozens of cameras: hundreds of MB). Loading it would make memory grow with the scene, and every
camera needs a different slice of it. So it is parsed once, streaming (ijson, one frame's list in
memory at a time), into SQLite: one row per (camera, sampled frame, object) with the visible box
and, when the file has it, the unoccluded box. Workers then look up ``(camera, frame)`` through
an index. The index keeps the raw object type: class mapping and filters run when annotations
are written, so changing them never means decoding the videos again.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ijson

from rtdetr_trainer.errors import DataError

INDEX_VERSION = 1
MAX_SHOWN = 20
VISIBLE = "2d bounding box visible"
FULL = "2d bounding box"

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE frame(frame INTEGER PRIMARY KEY);
CREATE TABLE box(
    camera TEXT NOT NULL, frame INTEGER NOT NULL, type TEXT NOT NULL, object_id TEXT,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL,
    fx1 REAL, fy1 REAL, fx2 REAL, fy2 REAL
);
"""


@dataclass
class GroundTruthStats:
    """What the sampled part of the ground truth holds (counts are over sampled frames)."""

    frames: int = 0
    sampled_frames: int = 0
    first_frame: int | None = None
    last_frame: int | None = None
    boxes_by_type: dict[str, int] = field(default_factory=dict)
    boxes_by_camera: dict[str, int] = field(default_factory=dict)
    boxes_without_full_box: int = 0

    @property
    def boxes(self) -> int:
        return sum(self.boxes_by_type.values())


def _fingerprint(path: Path, stride: int) -> str:
    st = path.stat()
    return json.dumps(
        {"version": INDEX_VERSION, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "stride": stride}
    )


def _box(value: Any) -> tuple[float, float, float, float] | None:
    if not isinstance(value, list | tuple) or len(value) != 4:
        return None
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in out):
        return None
    return out  # type: ignore[return-value]


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.total = 0

    def add(self, line: str) -> None:
        self.total += 1
        if len(self.lines) < MAX_SHOWN:
            self.lines.append(line)


def _rows(
    frame: int, objects: Any, where: str, problems: _Problems, stats: GroundTruthStats
) -> list[tuple[Any, ...]]:
    if not isinstance(objects, list):
        problems.add(f"{where}: frame {frame}: expected a list of objects")
        return []
    rows = []
    for n, obj in enumerate(objects):
        label = f"{where}: frame {frame}, object [{n}]"
        if not isinstance(obj, dict):
            problems.add(f"{label}: not an object")
            continue
        if "object id" in obj:
            label = f"{where}: frame {frame}, object id {obj['object id']}"
        kind = obj.get("object type")
        if not isinstance(kind, str) or not kind.strip():
            problems.add(f"{label}: no 'object type'")
            continue
        visible = obj.get(VISIBLE, {})
        full = obj.get(FULL) or {}
        if not isinstance(visible, dict) or not isinstance(full, dict):
            problems.add(f"{label}: '{VISIBLE}' must map camera ids to boxes")
            continue
        object_id = None if obj.get("object id") is None else str(obj["object id"])
        for camera, value in visible.items():
            box = _box(value)
            if box is None:
                problems.add(f"{label}: camera {camera}: box {value!r} is not 4 finite numbers")
                continue
            full_box = _box(full.get(camera)) if camera in full else None
            if full_box is None:
                stats.boxes_without_full_box += 1
            rows.append((camera, frame, kind, object_id, *box, *(full_box or (None,) * 4)))
            stats.boxes_by_type[kind] = stats.boxes_by_type.get(kind, 0) + 1
            stats.boxes_by_camera[camera] = stats.boxes_by_camera.get(camera, 0) + 1
    return rows


def build_index(ground_truth: Path, db_path: Path, *, stride: int) -> GroundTruthStats:
    """Index every ``stride``-th frame of ``ground_truth`` into ``db_path`` (reused when current).

    The database is built under a temporary name and renamed, so an interrupted build is redone
    rather than trusted.
    """
    fingerprint = _fingerprint(ground_truth, stride)
    if db_path.is_file():
        try:
            with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
                meta = dict(db.execute("SELECT key, value FROM meta"))
            if meta.get("fingerprint") == fingerprint:
                return GroundTruthStats(**json.loads(meta["stats"]))
        except sqlite3.DatabaseError:
            pass  # unreadable or from another version: rebuild
    tmp = db_path.with_name(db_path.name + f".partial-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    stats = GroundTruthStats()
    problems = _Problems()
    where = str(ground_truth)
    db = sqlite3.connect(tmp)
    try:
        db.executescript(SCHEMA)
        with open(ground_truth, "rb") as f:
            try:
                for key, objects in ijson.kvitems(f, "", use_float=True):
                    try:
                        frame = int(key)
                    except ValueError:
                        problems.add(f"{where}: top-level key {key!r} is not a frame number")
                        continue
                    if frame < 0:
                        problems.add(f"{where}: frame {frame} is negative")
                        continue
                    stats.frames += 1
                    if frame % stride:
                        continue
                    stats.sampled_frames += 1
                    first, last = stats.first_frame, stats.last_frame
                    stats.first_frame = frame if first is None else min(first, frame)
                    stats.last_frame = frame if last is None else max(last, frame)
                    try:
                        db.execute("INSERT INTO frame VALUES (?)", (frame,))
                    except sqlite3.IntegrityError:
                        problems.add(f"{where}: frame {frame} appears twice")
                        continue
                    rows = _rows(frame, objects, where, problems, stats)
                    db.executemany("INSERT INTO box VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            except ijson.JSONError as e:
                raise DataError(f"{where}: not valid JSON ({e})") from None
        if problems.total:
            raise DataError(problems.lines, total=problems.total)
        if not stats.frames:
            raise DataError(f"{where}: no frames (expected an object keyed by frame number)")
        db.execute("CREATE INDEX box_camera_frame ON box(camera, frame)")
        db.executemany(
            "INSERT INTO meta VALUES (?, ?)",
            [("fingerprint", fingerprint), ("stats", json.dumps(asdict(stats)))],
        )
        db.commit()
    except BaseException:
        db.close()
        tmp.unlink(missing_ok=True)
        raise
    db.close()
    tmp.replace(db_path)
    return stats


class GroundTruthIndex:
    """Read side of the index, opened once per worker process."""

    def __init__(self, db_path: Path) -> None:
        self.db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)

    def has_frame(self, frame: int) -> bool:
        row = self.db.execute("SELECT 1 FROM frame WHERE frame = ?", (frame,)).fetchone()
        return row is not None

    def boxes(self, camera: str, frame: int) -> list[tuple[Any, ...]]:
        """(type, object id, x1, y1, x2, y2, full box or None) of one camera's frame."""
        rows = self.db.execute(
            "SELECT type, object_id, x1, y1, x2, y2, fx1, fy1, fx2, fy2 FROM box "
            "WHERE camera = ? AND frame = ? ORDER BY rowid",
            (camera, frame),
        )
        return [(*r[:6], None if r[6] is None else tuple(r[6:])) for r in rows]

    def frames_after(self, frame: int) -> tuple[int, int | None]:
        """(count, last) of sampled ground-truth frames after ``frame``."""
        count, last = self.db.execute(
            "SELECT COUNT(*), MAX(frame) FROM frame WHERE frame > ?", (frame,)
        ).fetchone()
        return int(count), last

    def close(self) -> None:
        self.db.close()
