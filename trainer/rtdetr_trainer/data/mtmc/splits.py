"""Train/val/test splits of a converted scene: by camera, or by time.

Frames of one video a few frames apart are near-duplicates, so a random frame split leaks the
validation set into training. Splitting by camera holds out whole viewpoints; splitting by time
holds out the end of the timeline for every camera at once (the same moment seen from another
camera never lands in another split), with an optional gap of dropped frames at each boundary.
Splits are assigned when annotations are written, so changing them never re-decodes video.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rtdetr_trainer.errors import DataError

Mode = Literal["none", "camera", "time"]


@dataclass(frozen=True)
class SplitPlan:
    """How images are assigned to splits.

    Attributes:
        mode: ``none`` (one annotation file), ``camera`` or ``time``.
        val, test: camera ids (mode ``camera``) or fractions of the timeline (mode ``time``).
        gap: frames dropped before each time boundary (mode ``time``).
    """

    mode: Mode = "none"
    val: tuple[str, ...] | float = ()
    test: tuple[str, ...] | float = ()
    gap: int = 0

    def names(self, scene: str) -> list[str]:
        if self.mode == "none":
            return [scene]
        names = ["train"]
        if self.val:
            names.append("val")
        if self.test:
            names.append("test")
        return names


def parse_split(
    mode: str, val: str | None, test: str | None, gap: int, cameras: list[str]
) -> SplitPlan:
    """Validate ``--split/--val/--test/--gap`` against the scene's selected cameras."""
    if mode not in ("none", "camera", "time"):
        raise DataError(f"--split {mode!r}: expected none, camera or time")
    if mode == "none":
        if val or test or gap:
            raise DataError("--val/--test/--gap need --split camera or --split time")
        return SplitPlan()
    if not (val or test):
        raise DataError(f"--split {mode} needs --val and/or --test")
    if gap < 0:
        raise DataError(f"--gap {gap}: must be >= 0")
    if mode == "camera":
        if gap:
            raise DataError("--gap applies to --split time only")
        held: dict[str, tuple[str, ...]] = {}
        for flag, value in (("--val", val), ("--test", test)):
            ids = tuple(c.strip() for c in (value or "").split(",") if c.strip())
            unknown = [c for c in ids if c not in cameras]
            if unknown:
                raise DataError(
                    f"{flag}: camera(s) {', '.join(unknown)} are not among the converted "
                    f"cameras ({', '.join(cameras)})"
                )
            held[flag] = ids
        both = set(held["--val"]) & set(held["--test"])
        if both:
            raise DataError(f"--val and --test both name {', '.join(sorted(both))}")
        if not set(cameras) - set(held["--val"]) - set(held["--test"]):
            raise DataError("--split camera: every camera is held out; none is left to train on")
        return SplitPlan("camera", held["--val"], held["--test"])
    fractions = []
    for flag, value in (("--val", val), ("--test", test)):
        try:
            f = float(value) if value else 0.0
        except ValueError:
            raise DataError(f"{flag} {value!r}: --split time takes a fraction, e.g. 0.2") from None
        if not 0 <= f < 1:
            raise DataError(f"{flag} {f}: must be in [0, 1)")
        fractions.append(f)
    if sum(fractions) >= 1:
        raise DataError(f"--val + --test = {sum(fractions)}: leaves nothing to train on")
    return SplitPlan("time", fractions[0], fractions[1], gap)


class SplitAssigner:
    """``assign(camera, frame)`` -> split name, or None for a frame inside a time gap."""

    def __init__(self, plan: SplitPlan, scene: str, first: int, last: int) -> None:
        self.plan, self.scene = plan, scene
        span = last - first + 1
        val = float(plan.val) if plan.mode == "time" else 0.0  # type: ignore[arg-type]
        test = float(plan.test) if plan.mode == "time" else 0.0  # type: ignore[arg-type]
        self.train_end = first + round(span * (1 - val - test))
        self.val_end = self.train_end + round(span * val)

    def assign(self, camera: str, frame: int) -> str | None:
        plan = self.plan
        if plan.mode == "none":
            return self.scene
        if plan.mode == "camera":
            if camera in plan.val:  # type: ignore[operator]
                return "val"
            return "test" if camera in plan.test else "train"  # type: ignore[operator]
        for end, name in ((self.train_end, "train"), (self.val_end, "val")):
            if frame < end:
                return name if frame < end - plan.gap else None
        return "test"
