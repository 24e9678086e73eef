"""``rtdetr dataset ...``: validate a spec's data, synthesise a dataset, convert between formats.

rtdetr dataset validate -e SPEC.yaml [--task train|evaluate] [key=value ...]
rtdetr dataset synth --output DIR [--num-images N] [--format coco|h5] ...
rtdetr dataset convert mtmc --scene DIR --output DIR ...   (rtdetr_trainer.data.mtmc)
rtdetr dataset convert coco-to-h5|kitti-to-coco ...
"""

from __future__ import annotations

import argparse

from rtdetr_spec import SpecError
from rtdetr_trainer.data.mtmc.cli import add_mtmc_parser, run_mtmc
from rtdetr_trainer.errors import EXIT_OK
from rtdetr_trainer.spec_args import add_spec_args, load_spec


def add_dataset_parser(parser: argparse.ArgumentParser) -> None:
    """Add the dataset tools' sub-commands to ``rtdetr dataset``."""
    ds = parser.add_subparsers(dest="tool", required=True)
    val = ds.add_parser("validate", help="run every dataset check of a task without training")
    add_spec_args(val)
    val.add_argument("--task", choices=("train", "evaluate"), default="train")
    syn = ds.add_parser("synth", help="write a synthetic 7-class warehouse dataset")
    syn.add_argument("--output", required=True)
    syn.add_argument("--num-images", type=int, default=60)
    syn.add_argument("--format", choices=("coco", "h5"), default="coco")
    syn.add_argument("--image-size", default="256x256", help="WIDTHxHEIGHT (default 256x256)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--h5-arrays", action="store_true", help="H5 frames as BGR arrays")
    syn.add_argument("--cameras", type=int, default=3, help="H5 files to spread frames over")
    conv = ds.add_parser("convert", help="convert datasets").add_subparsers(
        dest="kind", required=True
    )
    add_mtmc_parser(conv)
    c2h = conv.add_parser("coco-to-h5", help="COCO image folder -> per-camera H5 files")
    c2h.add_argument("--image-dir", required=True)
    c2h.add_argument("--json-file", required=True)
    c2h.add_argument("--output", required=True)
    c2h.add_argument("--arrays", action="store_true", help="store BGR arrays, not JPEG bytes")
    c2h.add_argument(
        "--camera",
        choices=("folder", "single"),
        default="folder",
        help="one H5 per image sub-folder (default) or one for all",
    )
    k2c = conv.add_parser("kitti-to-coco", help="KITTI labels -> COCO JSON (TAO dataset convert)")
    k2c.add_argument("--image-dir", required=True)
    k2c.add_argument("--label-dir", required=True)
    k2c.add_argument("--output", required=True)
    k2c.add_argument("--val-split", type=float, default=0.0, help="percent of images for val")
    k2c.add_argument("--num-shards", type=int, default=1)
    k2c.add_argument("--mapping", help='JSON file {"kitti class": "target class"}')
    k2c.add_argument("--seed", type=int, default=42)


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
        cfg = SynthConfig(
            num_images=args.num_images,
            width=w,
            height=h,
            seed=args.seed,
            format=args.format,
            h5_arrays=args.h5_arrays,
            cameras=args.cameras,
        )
        for split, path in generate(args.output, cfg).items():
            print(f"{split}: {path}")
        return EXIT_OK
    if args.kind == "mtmc":
        run_mtmc(args)
        return EXIT_OK
    from rtdetr_trainer.data import convert

    if args.kind == "coco-to-h5":
        out = convert.coco_to_h5(
            args.image_dir, args.json_file, args.output, arrays=args.arrays, camera=args.camera
        )
        print(f"wrote {out}")
    else:
        for path in convert.kitti_to_coco(
            args.image_dir,
            args.label_dir,
            args.output,
            val_split=args.val_split,
            num_shards=args.num_shards,
            mapping=args.mapping,
            seed=args.seed,
        ):
            print(f"wrote {path}")
    return EXIT_OK
