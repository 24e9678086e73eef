"""``rtdetr-serve``'s command line: every subcommand's arguments, kept apart from what the
commands do (:mod:`rtdetr_serving.cli`) so each reads on its own."""

from __future__ import annotations

import argparse

from rtdetr_serving import cli_types as t
from rtdetr_serving.catalog import CATALOG_ENV


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", type=t.endpoint, required=True, help="HOST:PORT of Triton's HTTP or gRPC endpoint"
    )
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    p.add_argument("--model", default="rtdetr")
    p.add_argument(
        "--manifest",
        type=t.input_file,
        help="export manifest, if the model config does not embed one",
    )
    p.add_argument("--timeout", type=t.seconds, default=30.0, help="seconds per request")
    p.add_argument(
        "--retries", type=t.int_in(0, 100), default=3, help="retries of transient failures"
    )


def build_parser(description: str) -> argparse.ArgumentParser:
    """The parser; ``args.command`` names the subcommand, which :mod:`rtdetr_serving.cli` runs."""
    ap = argparse.ArgumentParser(prog="rtdetr-serve", description=description)
    ap.add_argument(
        "--catalog",
        type=t.input_file,
        action="append",
        metavar="FILE",
        help=f"extra GPU catalog YAML merged over the built-in one (also ${CATALOG_ENV})",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("catalog", help="list the GPU catalog")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("plan", help="GPUs/replicas for N streams at F FPS")
    p.add_argument("--gpu", help="GPU type (all types when omitted)")
    p.add_argument("--fps", type=t.fps, required=True, help="frames per second of each stream")
    p.add_argument("--streams", type=t.int_in(1, t.MAX_STREAMS), required=True)
    p.add_argument(
        "--latency-ms",
        type=t.float_in(0.0, 1e6, lo_open=True),
        help="measured latency of one batch (with --batch)",
    )
    p.add_argument("--batch", type=t.batch, help="batch size of the --latency-ms measurement")
    p.add_argument(
        "--headroom",
        type=t.float_in(0.0, 1.0, hi_open=True),
        default=0.0,
        help="fraction of each replica kept free",
    )
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("build-engine", help="build a TensorRT FP16 plan on this GPU")
    p.add_argument("--onnx", required=True)
    p.add_argument("--gpu", required=True)
    p.add_argument(
        "--output",
        type=t.output_dir,
        required=True,
        help="folder for model.<GPU>.plan and its sidecar",
    )
    p.add_argument(
        "--trtexec", action="store_true", help="build with trtexec instead of the Python API"
    )
    p.add_argument("--trtexec-path", default="trtexec")
    p.add_argument(
        "--print-command", action="store_true", help="print the trtexec command and exit"
    )
    p.add_argument("--opt-batch", type=t.batch)
    p.add_argument("--max-batch", type=t.batch)
    p.add_argument("--workspace-gib", type=t.float_in(0.0, 1024.0, lo_open=True))
    p.add_argument("--timing-cache", type=t.output_file)
    p.add_argument("--device", type=t.int_in(0, 1023), default=0, help="CUDA device index")
    p.add_argument(
        "--allow-same-cc",
        action="store_true",
        help="accept another GPU product of the same compute capability",
    )
    p.add_argument(
        "--tensorrt-version",
        help="TensorRT version the serving Triton image has (e.g. 10.13.3): refuse to build "
        "with any other",
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="keep an existing plan built from the same ONNX, GPU, TensorRT and profile",
    )

    p = sub.add_parser("repository", help="write a Triton model repository")
    p.add_argument("--onnx", required=True)
    p.add_argument("--output", type=t.output_dir, required=True)
    p.add_argument(
        "--gpu",
        action="append",
        help="device type (repeat): a GPU type, or CPU for the onnxruntime/python CPU configs; "
        "required for tensorrt",
    )
    p.add_argument(
        "--flavor",
        choices=["tensorrt", "cpu"],
        default="tensorrt",
        help="cpu: a CPU-only repository whose config.pbtxt is the python backend's",
    )
    p.add_argument("--model-name", default="rtdetr")
    p.add_argument(
        "--cpu-max-batch", type=t.batch, help="CPU configs' max batch (default: catalog)"
    )
    p.add_argument(
        "--cpu-threads",
        type=t.int_in(0, 1024),
        help="onnxruntime intra-op threads (default: catalog, 0: all)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing model folder")
    p.add_argument(
        "--class-name",
        action="append",
        dest="class_names",
        help="class name of each logit column, in order (repeat), for an ONNX without "
        "<stem>.manifest.json and without labels.txt next to it",
    )
    p.add_argument(
        "--by-revision",
        action="store_true",
        help="write into OUTPUT/<revision>/, the revision being the first 12 hex digits of the "
        "ONNX's sha256 (one repository per model version)",
    )

    p = sub.add_parser(
        "local", help="run the real tritonserver (nvidia-pytriton) in the foreground"
    )
    p.add_argument("--model-repository", type=t.input_dir, action="append", required=True)
    p.add_argument("--http-port", type=t.port, default=8000)
    p.add_argument("--grpc-port", type=t.port, default=8001)
    p.add_argument("--metrics-port", type=t.port)
    p.add_argument("--model-control-mode", choices=["none", "explicit", "poll"], default="none")
    p.add_argument("--load-model", action="append", help="model to load at start (explicit mode)")
    p.add_argument("--model-config-name", help="load configs/<name>.pbtxt (e.g. h100)")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--log-verbose", type=t.int_in(0, 10), default=0)
    p.add_argument(
        "--exit-timeout",
        type=t.int_in(0, 3600),
        default=30,
        help="seconds tritonserver waits for connections/requests when stopping",
    )

    sub.add_parser(
        "tritonserver",
        help="exec nvidia-pytriton's tritonserver with the given tritonserver flags (a "
        "container command: backends, libraries and Python paths set up, signals go to it)",
        description="Every argument after 'tritonserver' is passed to tritonserver unchanged.",
    )

    p = sub.add_parser("infer", help="detect objects in images with a served model")
    _connection_args(p)
    p.add_argument("images", type=t.input_file, nargs="+")
    p.add_argument("--output", type=t.output_file, help="results JSON (stdout when omitted)")
    p.add_argument(
        "--batch", type=t.batch, help="images per request (default: min(max_batch_size, 8))"
    )
    p.add_argument("--concurrency", type=t.int_in(1, 256), default=1)
    p.add_argument("--threshold", type=t.probability, default=0.5, help="minimum score, 0..1")
    p.add_argument(
        "--annotate",
        type=t.output_dir,
        metavar="DIR",
        help="also write each image with its detections drawn to DIR (same file names)",
    )

    p = sub.add_parser("bench", help="simulate camera streams (open loop) and check the target")
    _connection_args(p)
    p.add_argument("--streams", type=t.int_in(1, t.MAX_STREAMS), required=True)
    p.add_argument("--fps", type=t.fps, required=True, help="frames per second of each stream")
    p.add_argument(
        "--duration", type=t.float_in(0.0, 3600.0, lo_open=True), default=10.0, help="seconds"
    )
    p.add_argument("--image", type=t.input_file, help="frame to send (default: a grey frame)")
    p.add_argument(
        "--deadline-ms",
        type=t.float_in(0.0, 1e6, lo_open=True),
        help="late after this (default: one frame period)",
    )
    p.add_argument(
        "--tolerance", type=t.probability, default=0.01, help="allowed share of late+dropped"
    )
    p.add_argument("--max-in-flight", type=t.int_in(1, 1024))
    p.add_argument(
        "--progress-s",
        type=t.float_in(0.0, 3600.0, lo_open=True),
        default=5.0,
        help="seconds between progress lines on stderr",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--output", type=t.output_file, help="write the JSON report here")
    return ap
