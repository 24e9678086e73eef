"""``rtdetr dataset convert mtmc``: arguments, and the summary printed at the end."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtdetr_trainer.data.mtmc.annotations import BoxFilters
from rtdetr_trainer.data.mtmc.classes import parse_class_map
from rtdetr_trainer.data.mtmc.convert import REPORT, ConversionReport, MtmcOptions, convert_mtmc
from rtdetr_trainer.data.mtmc.scene import open_scene
from rtdetr_trainer.data.mtmc.splits import parse_split
from rtdetr_trainer.errors import DataError


def add_mtmc_parser(convert: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = convert.add_parser(
        "mtmc",
        help="an MTMC scene (videos/, ground_truth.json, calibration.json) -> H5 + COCO",
        description=(
            "Decode every Nth frame of every camera video into <output>/<camera>.h5 and write "
            "COCO annotations with h5://<camera>:<key> names under <output>/annotations/ "
            "(train with image_dir=<output>). Reruns resume finished cameras."
        ),
    )
    p.add_argument("--scene", required=True, help="scene folder (videos/, ground_truth.json)")
    p.add_argument("--output", required=True, help="output folder (the training image_dir)")
    p.add_argument("--frame-stride", type=int, default=1, help="keep every Nth frame (default 1)")
    p.add_argument("--cameras", help="comma-separated camera ids to convert (default: all)")
    p.add_argument(
        "--split",
        default="none",
        choices=("none", "camera", "time"),
        help="none: annotations/<scene>.json; camera or time: train/val/test files",
    )
    p.add_argument("--val", help="held-out cameras (--split camera) or timeline fraction (time)")
    p.add_argument("--test", help="like --val, for a test split")
    p.add_argument("--gap", type=int, default=0, help="frames dropped before each time boundary")
    p.add_argument(
        "--class-map",
        help="object type -> class: a JSON/YAML file or TYPE=CLASS,...; TYPE= drops a type",
    )
    p.add_argument(
        "--min-box-size", type=float, default=0.0, help="drop boxes under PX (short side)"
    )
    p.add_argument(
        "--min-visibility",
        type=float,
        default=0.0,
        help="drop boxes less than this fraction visible (needs '2d bounding box')",
    )
    p.add_argument("--workers", type=int, default=0, help="parallel cameras (default: CPUs)")
    p.add_argument(
        "--jpeg-quality", type=int, default=95, help="JPEG quality of the extracted frames, 1-100"
    )
    p.add_argument(
        "--skip-missing-cameras",
        action="store_true",
        help="cameras in calibration/ground truth without a video are a warning, not an error",
    )
    p.add_argument(
        "--tolerate-decode-errors",
        action="store_true",
        help="keep frames FFmpeg had to conceal damage in (default: a damaged video is an error)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def options_from_args(args: argparse.Namespace) -> MtmcOptions:
    cameras = [c.strip() for c in args.cameras.split(",") if c.strip()] if args.cameras else None
    if not 0 <= args.min_visibility <= 1:
        raise DataError(f"--min-visibility {args.min_visibility}: must be in [0, 1]")
    if args.min_box_size < 0:
        raise DataError(f"--min-box-size {args.min_box_size}: must be >= 0")
    selected = cameras
    if args.split == "camera" and selected is None:
        selected = open_scene(args.scene, skip_missing_cameras=True).camera_ids()
    return MtmcOptions(
        scene=Path(args.scene),
        output=Path(args.output),
        frame_stride=args.frame_stride,
        cameras=cameras,
        class_map=parse_class_map(args.class_map),
        split=parse_split(args.split, args.val, args.test, args.gap, selected or []),
        filters=BoxFilters(args.min_box_size, args.min_visibility),
        workers=args.workers,
        jpeg_quality=args.jpeg_quality,
        skip_missing_cameras=args.skip_missing_cameras,
        tolerate_decode_errors=args.tolerate_decode_errors,
        progress=not args.no_progress,
    )


def summary(report: ConversionReport) -> str:
    cams = report.cameras
    resumed = sum(c.resumed for c in cams)
    lines = [
        f"converted scene {Path(report.scene).name}: {len(cams)} camera(s) "
        f"({resumed} resumed), {sum(c.images for c in cams)} images, "
        f"{report.ground_truth.boxes} ground-truth boxes in {report.seconds:.1f}s",
    ]
    for split, rel in report.annotations.items():
        per_class = report.counts.boxes.get(split, {})
        classes = ", ".join(f"{n} {c}" for n, c in per_class.items()) or "no boxes"
        lines.append(f"  {rel}: {report.counts.images[split]} images; {classes}")
    dropped = {k: v for k, v in report.counts.dropped.items() if v}
    if dropped:
        lines.append("  dropped boxes: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    if report.counts.frames_in_gaps:
        lines.append(f"  {report.counts.frames_in_gaps} images fell in split gaps (not written)")
    lines.append(f"  image_dir: {report.output}   report: {Path(report.output) / REPORT}")
    return "\n".join(lines)


def run_mtmc(args: argparse.Namespace) -> None:
    report = convert_mtmc(options_from_args(args))
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(summary(report))
