"""``rtdetr dataset ...``: validate a spec's data, synthesise a dataset, convert between formats.

rtdetr dataset validate -e SPEC.yaml [--task train|evaluate] [key=value ...]
rtdetr dataset synth --output DIR [--num-images N] [--format coco|h5] ...
rtdetr dataset convert mtmc --scene DIR --output DIR ...   (rtdetr_trainer.data.mtmc)
rtdetr dataset convert kitti|coco2h5|h52coco ...
"""

from __future__ import annotations

import argparse

from rtdetr_spec import SpecError
from rtdetr_spec.cli_help import add_no_progress
from rtdetr_trainer.data.mtmc.cli import add_mtmc_parser, run_mtmc
from rtdetr_trainer.errors import EXIT_OK
from rtdetr_trainer.spec_args import add_spec_args, load_spec


def add_dataset_parser(parser: argparse.ArgumentParser) -> None:
    """Add the dataset tools' sub-commands to ``rtdetr dataset``."""
    ds = parser.add_subparsers(dest="tool", required=True)
    val = ds.add_parser("validate", help="run every dataset check of a task without training")
    add_spec_args(val)
    val.add_argument(
        "--task",
        choices=("train", "evaluate"),
        default="train",
        help="whose data to check: train (train and val sources) or evaluate (test source)",
    )
    syn = ds.add_parser("synth", help="write a synthetic 7-class warehouse dataset")
    syn.add_argument("--output", required=True, help="folder to write the dataset to")
    _overwrite_flag(syn)
    syn.add_argument("--num-images", type=int, default=60, help="images in all splits together")
    syn.add_argument(
        "--format",
        choices=("coco", "h5", "mtmc"),
        default="coco",
        help="mtmc: a scene folder (videos, ground truth, calibration) for `convert mtmc`; "
        "--num-images is then frames per camera",
    )
    syn.add_argument("--image-size", default="256x256", help="WIDTHxHEIGHT")
    syn.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    syn.add_argument("--h5-arrays", action="store_true", help="H5 frames as BGR arrays")
    syn.add_argument("--cameras", type=int, default=3, help="H5 files to spread frames over")
    syn.add_argument(
        "--scenes",
        choices=("default", "cpu-demo"),
        default="default",
        help="cpu-demo: at most 3 large objects per image and 80/10/10 splits, what a few CPU "
        "epochs learn (make demo, examples/local)",
    )
    conv = ds.add_parser("convert", help="convert datasets").add_subparsers(
        dest="kind", required=True
    )
    add_mtmc_parser(conv)
    add_convert_parsers(conv)


def run_dataset_tool(args: argparse.Namespace) -> int:
    if args.tool == "validate":
        from rtdetr_trainer.data.validate import validate

        spec = load_spec(args.spec, args.overrides, args.task)
        print(validate(spec, args.task))
        return EXIT_OK
    if args.tool == "synth":
        from rtdetr_trainer.data.synth import SynthConfig, generate

        try:
            w, h = (int(v) for v in args.image_size.lower().split("x"))
        except ValueError:
            raise SpecError(f"--image-size {args.image_size!r}: expected WIDTHxHEIGHT") from None
        if args.num_images < 1 or w < 32 or h < 32:
            raise SpecError("--num-images must be >= 1 and --image-size at least 32x32")
        if args.format == "mtmc":
            from rtdetr_trainer.data.mtmc.synth import SceneConfig, write_scene

            if w % 2 or h % 2:
                raise SpecError(f"--image-size {w}x{h}: H.264 video needs even sizes")
            scene = SceneConfig(
                cameras=args.cameras, frames=args.num_images, width=w, height=h, seed=args.seed
            )
            print(f"scene: {write_scene(args.output, scene)}")
            return EXIT_OK
        from rtdetr_trainer.data.synth import CPU_DEMO_SCENES

        scenes = CPU_DEMO_SCENES if args.scenes == "cpu-demo" else {}
        cfg = SynthConfig(
            num_images=args.num_images,
            width=w,
            height=h,
            seed=args.seed,
            format=args.format,
            h5_arrays=args.h5_arrays,
            cameras=args.cameras,
            **scenes,  # type: ignore[arg-type]
        )
        for split, path in generate(args.output, cfg, overwrite=args.overwrite).items():
            print(f"{split}: {path}")
        return EXIT_OK
    if args.kind == "mtmc":
        run_mtmc(args)
        return EXIT_OK
    return run_convert(args)


#: earlier names of the converters, kept as aliases so existing commands keep working.
CONVERT_ALIASES = {"kitti-to-coco": "kitti", "coco-to-h5": "coco2h5"}


def add_convert_parsers(conv: argparse._SubParsersAction) -> None:
    """``rtdetr dataset convert kitti|coco2h5|h52coco`` (image datasets; see data/kitti.py etc.)."""
    kit = conv.add_parser(
        "kitti",
        aliases=["kitti-to-coco"],
        help="KITTI image/label folders -> COCO JSON (TAO dataset convert)",
    )
    kit.add_argument(
        "--images", "--image-dir", dest="images", required=True, help="folder of the images"
    )
    kit.add_argument(
        "--labels",
        "--label-dir",
        dest="labels",
        required=True,
        help="folder of KITTI label files (<image stem>.txt)",
    )
    kit.add_argument(
        "--output",
        required=True,
        help="FILE.json (split/shard files are named after its stem) or a folder",
    )
    kit.add_argument("--val-split", type=float, default=0.0, help="percent of images for val")
    kit.add_argument("--num-shards", type=int, default=1, help="COCO files per split")
    kit.add_argument(
        "--class-map",
        "--mapping",
        dest="class_map",
        help="JSON/YAML file {kitti_class: target} or inline kitti_class=target,...; "
        "an empty target drops the class",
    )
    kit.add_argument("--seed", type=int, default=42, help="seed of the train/val split")
    kit.add_argument(
        "--allow-unmatched",
        action="store_true",
        help="keep images without a label file as empty images and ignore label files "
        "without an image (warned), instead of failing",
    )
    c2h = conv.add_parser(
        "coco2h5", aliases=["coco-to-h5"], help="COCO image folder -> per-camera H5 files"
    )
    c2h.add_argument("--image-dir", required=True, help="folder of the COCO file's images")
    c2h.add_argument("--json-file", required=True, help="COCO annotation file")
    c2h.add_argument(
        "--output", required=True, help="folder for the H5 files and the rewritten COCO file"
    )
    _overwrite_flag(c2h)
    c2h.add_argument("--arrays", action="store_true", help="store BGR arrays, not JPEG bytes")
    c2h.add_argument(
        "--camera",
        choices=("folder", "single"),
        default="folder",
        help="one H5 per image sub-folder (default) or one for all",
    )
    c2h.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="do not decode each image before storing it (faster; only its header is checked)",
    )
    add_no_progress(c2h)
    h2c = conv.add_parser("h52coco", help="H5 frames named by a COCO file -> COCO image folder")
    h2c.add_argument("--image-dir", required=True, help="folder of the H5 files")
    h2c.add_argument("--json-file", required=True, help="COCO file with h5:// names")
    add_no_progress(h2c)
    h2c.add_argument(
        "--output", required=True, help="folder for the decoded images and the COCO file"
    )
    _overwrite_flag(h2c)


def _overwrite_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files an earlier run (or another dataset) left in --output; the command's "
        "own input files are never replaced",
    )


def run_convert(args: argparse.Namespace) -> int:
    kind = CONVERT_ALIASES.get(args.kind, args.kind)
    if kind == "kitti":
        from rtdetr_trainer.data.kitti import kitti_to_coco

        summary = kitti_to_coco(
            args.images,
            args.labels,
            args.output,
            val_split=args.val_split,
            num_shards=args.num_shards,
            class_map=args.class_map,
            seed=args.seed,
            allow_unmatched=args.allow_unmatched,
        )
        print(summary.report())
    elif kind == "coco2h5":
        from rtdetr_trainer.data.h5pack import coco_to_h5

        print(
            coco_to_h5(
                args.image_dir,
                args.json_file,
                args.output,
                arrays=args.arrays,
                camera=args.camera,
                verify=args.verify,
                overwrite=args.overwrite,
            ).report()
        )
    elif kind == "h52coco":
        from rtdetr_trainer.data.h5unpack import h5_to_coco

        summary = h5_to_coco(args.image_dir, args.json_file, args.output, overwrite=args.overwrite)
        print(summary.report())
    else:
        raise SpecError(f"unknown converter {args.kind!r}")
    return EXIT_OK
