"""``rtdetr-serve``'s command line: every subcommand's arguments, kept apart from what the
commands do (:mod:`rtdetr_serving.cli`) so each reads on its own."""

from __future__ import annotations

import argparse

from rtdetr_serving import cli_types as t
from rtdetr_serving.catalog import CATALOG_ENV
from rtdetr_spec.cli_help import add_no_progress, add_version, finish_parser

EPILOG = """exit codes: 0 success, 1 error, 2 usage, 3 bench target not met.
`rtdetr-serve <command> --help` shows each command's examples."""

#: Examples shown under each sub-command's --help.
EXAMPLES = {
    "catalog": "example:\n  rtdetr-serve catalog --json",
    "plan": "examples:\n  rtdetr-serve plan --fps 30 --streams 40\n"
    "  rtdetr-serve plan --gpu L4 --fps 15 --streams 100 --latency-ms 12.5 --batch 8",
    "build-engine": "examples:\n"
    "  rtdetr-serve build-engine --onnx rtdetr.onnx --gpu L4 --output engines/\n"
    "  rtdetr-serve build-engine --onnx rtdetr.onnx --gpu H100 --output engines/ --trtexec "
    "--print-command",
    "repository": "examples:\n  rtdetr-serve repository --onnx rtdetr.onnx --gpu L4 --gpu H100 "
    "--output repo/\n  rtdetr-serve repository --onnx rtdetr.onnx --flavor cpu --output repo/",
    "local": "example:\n  rtdetr-serve local --model-repository repo/ --http-port 8000",
    "infer": "examples:\n"
    "  rtdetr-serve infer --url localhost:8000 frames/*.jpg --output dets.json\n"
    "  rtdetr-serve infer --url localhost:8001 --protocol grpc a.jpg --annotate annotated/",
    "bench": "example:\n  rtdetr-serve bench --url localhost:8000 --streams 8 --fps 30 "
    "--duration 30",
}


def _connection_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url", type=t.endpoint, required=True, help="HOST:PORT of Triton's HTTP or gRPC endpoint"
    )
    p.add_argument(
        "--protocol", choices=["http", "grpc"], default="http", help="Triton client protocol"
    )
    p.add_argument("--model", default="rtdetr", help="model name in the Triton repository")
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
    ap = argparse.ArgumentParser(prog="rtdetr-serve", description=description, epilog=EPILOG)
    add_version(ap)
    ap.add_argument(
        "--catalog",
        type=t.input_file,
        action="append",
        metavar="FILE",
        help=f"extra GPU catalog YAML merged over the built-in one (also ${CATALOG_ENV})",
    )
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("catalog", help="list the GPU catalog")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")

    p = sub.add_parser("plan", help="GPUs/replicas for N streams at F FPS")
    p.add_argument("--gpu", help="GPU type (all types when omitted)")
    p.add_argument("--fps", type=t.fps, required=True, help="frames per second of each stream")
    p.add_argument(
        "--streams", type=t.int_in(1, t.MAX_STREAMS), required=True, help="camera streams"
    )
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
    p.add_argument("--json", action="store_true", help="JSON instead of a table")

    p = sub.add_parser("build-engine", help="build a TensorRT FP16 plan on this GPU")
    p.add_argument("--onnx", required=True, help="exported ONNX model (rtdetr export)")
    p.add_argument("--gpu", required=True, help="GPU type of this machine, as in the catalog")
    p.add_argument(
        "--output",
        type=t.output_dir,
        required=True,
        help="folder for model.<GPU>.plan and its sidecar",
    )
    p.add_argument(
        "--trtexec", action="store_true", help="build with trtexec instead of the Python API"
    )
    p.add_argument("--trtexec-path", default="trtexec", help="trtexec executable (with --trtexec)")
    p.add_argument(
        "--print-command", action="store_true", help="print the trtexec command and exit"
    )
    p.add_argument(
        "--opt-batch", type=t.batch, help="batch the plan is tuned for (default: catalog)"
    )
    p.add_argument("--max-batch", type=t.batch, help="largest batch (default: catalog)")
    p.add_argument(
        "--workspace-gib",
        type=t.float_in(0.0, 1024.0, lo_open=True),
        help="builder workspace in GiB (default: catalog)",
    )
    p.add_argument(
        "--timing-cache", type=t.output_file, help="TensorRT timing cache file, read and updated"
    )
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
    p.add_argument(
        "--no-time",
        dest="time",
        action="store_false",
        help="do not time the plan with TensorRT's runtime after building it (the timing, "
        "latency percentiles and images/s per profile batch size, goes into the task summary)",
    )

    p = sub.add_parser("repository", help="write a Triton model repository")
    p.add_argument("--onnx", required=True, help="exported ONNX model (rtdetr export)")
    p.add_argument("--output", type=t.output_dir, required=True, help="model repository folder")
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
    p.add_argument("--model-name", default="rtdetr", help="model folder name in the repository")
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
    p.add_argument(
        "--model-repository",
        type=t.input_dir,
        action="append",
        required=True,
        help="model repository folder (repeatable)",
    )
    p.add_argument("--http-port", type=t.port, default=8000, help="HTTP endpoint port")
    p.add_argument("--grpc-port", type=t.port, default=8001, help="gRPC endpoint port")
    p.add_argument("--metrics-port", type=t.port, help="Prometheus metrics port (default: off)")
    p.add_argument(
        "--model-control-mode",
        choices=["none", "explicit", "poll"],
        default="none",
        help="tritonserver's model control mode",
    )
    p.add_argument("--load-model", action="append", help="model to load at start (explicit mode)")
    p.add_argument("--model-config-name", help="load configs/<name>.pbtxt (e.g. h100)")
    p.add_argument("--address", default="127.0.0.1", help="address the endpoints listen on")
    p.add_argument(
        "--log-verbose", type=t.int_in(0, 10), default=0, help="tritonserver's verbose log level"
    )
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
    p.add_argument("images", type=t.input_file, nargs="+", help="image files")
    p.add_argument("--output", type=t.output_file, help="results JSON (stdout when omitted)")
    p.add_argument(
        "--batch", type=t.batch, help="images per request (default: min(max_batch_size, 8))"
    )
    p.add_argument(
        "--concurrency", type=t.int_in(1, 256), default=1, help="requests in flight at once"
    )
    p.add_argument("--threshold", type=t.probability, default=0.5, help="minimum score, 0..1")
    p.add_argument(
        "--annotate",
        type=t.output_dir,
        metavar="DIR",
        help="also write each image with its detections drawn to DIR (same file names)",
    )
    add_no_progress(p)

    p = sub.add_parser("bench", help="simulate camera streams (open loop) and check the target")
    _connection_args(p)
    p.add_argument(
        "--streams", type=t.int_in(1, t.MAX_STREAMS), required=True, help="camera streams"
    )
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
    p.add_argument(
        "--max-in-flight",
        type=t.int_in(1, 1024),
        help="requests in flight at most (default: 2 per stream, 4 to 64)",
    )
    p.add_argument(
        "--progress-s",
        type=t.float_in(0.0, 3600.0, lo_open=True),
        default=5.0,
        help="seconds between progress lines on stderr",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--output", type=t.output_file, help="write the JSON report here")
    p.add_argument(
        "--perf-analyzer",
        action="store_true",
        help="print the equivalent perf_analyzer commands for this model and load, send nothing",
    )
    for name, sp in sub.choices.items():
        sp.epilog = sp.epilog or EXAMPLES.get(name)
    return finish_parser(ap)
