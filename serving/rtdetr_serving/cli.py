"""``rtdetr-serve``: GPU catalog, capacity plans, engines, Triton repositories, a local Triton,
inference and load generation.

Exit codes: 0 success; 1 an error (bad input, server or model not ready, contract mismatch, a
failed write; the message names the file, field or model); 2 command-line usage (refused before
any work); 3 ``bench`` ran but the target did not hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from rtdetr_serving.catalog import GpuCatalog, GpuType, load_catalog
from rtdetr_serving.cli_args import build_parser
from rtdetr_serving.cli_client import cmd_bench, cmd_infer, write_output
from rtdetr_serving.cli_types import distinct_ports
from rtdetr_serving.errors import PlanningError, ServingError, UsageError
from rtdetr_serving.planner import CapacityPlan, Measurement, plan_all, plan_replicas
from rtdetr_serving.preprocess import NotAnImageError

EXIT_ERROR, EXIT_USAGE = 1, 2


def _catalog(args: argparse.Namespace) -> GpuCatalog:
    return load_catalog(args.catalog or [])


# -- catalog / plan --------------------------------------------------------------------------
def cmd_catalog(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    if args.json:
        write_output(cat.model_dump_json(indent=2) + "\n", None)
        return 0
    print(f"{'GPU':<28} {'CC':>5} {'GiB':>5} {'@30':>5} {'@15':>5}  batch(opt/max) inst  labels")
    for g in cat.gpus:
        e = g.engine
        print(
            f"{g.name:<28} {g.compute_capability:>5} {g.memory_gib:>5g} "
            f"{_streams(g.streams.fps30, g):>5} {_streams(g.streams.fps15, g):>5}  "
            f"{e.opt_batch:>5}/{e.max_batch:<8} {e.instances:>4}  "
            f"{', '.join(g.gpu_product_labels) or '-'}"
        )
    c = cat.cpu.serving
    # No compute capability, memory or streams: a CPU has no engine and no capacity figure.
    print(
        f"{cat.cpu.name:<28} {'-':>5} {'-':>5} {'-':>5} {'-':>5}  {'-':>5}/{c.max_batch:<8} "
        f"{c.instances:>4}  - (onnxruntime, no engine)"
    )
    return 0


def _streams(value: int | None, gpu: GpuType) -> str:
    """A capacity figure; ``~`` marks an estimate (not measured on this GPU type)."""
    if value is None:
        return "-"
    return f"~{value}" if gpu.estimate is not None else str(value)


def _plan_line(p: CapacityPlan) -> str:
    return (
        f"{p.gpu:<28} {p.streams_per_replica:>8} {p.replicas:>9} {p.capacity_streams:>9} "
        f"{p.images_per_second_per_replica:>12.0f} {p.utilisation:>7.1%}  {p.source}"
    )


def cmd_plan(args: argparse.Namespace) -> int:
    cat = _catalog(args)
    measurement = None
    if (args.latency_ms is None) != (args.batch is None):
        raise PlanningError("--latency-ms and --batch go together")
    if args.latency_ms is not None:
        if not args.gpu:
            raise PlanningError("--latency-ms/--batch describe one GPU: give --gpu")
        measurement = Measurement(latency_ms=args.latency_ms, batch=args.batch)
    if args.gpu:
        plans: list[CapacityPlan | PlanningError] = [
            plan_replicas(
                cat.get(args.gpu),
                args.fps,
                args.streams,
                measurement=measurement,
                headroom=args.headroom,
            )
        ]
    else:
        plans = plan_all(cat, args.fps, args.streams, headroom=args.headroom)
    if args.json:
        doc = {
            "fps": args.fps,
            "streams": args.streams,
            "headroom": args.headroom,
            "measurement": measurement.model_dump() if measurement else None,
            "plans": [
                p.model_dump() if isinstance(p, CapacityPlan) else {"error": str(p)} for p in plans
            ],
        }
        write_output(json.dumps(doc, indent=2) + "\n", None)
        return 0
    print(
        f"{args.streams} streams at {args.fps:g} FPS"
        + (f", headroom {args.headroom:g}" if args.headroom else "")
    )
    print(
        f"{'GPU':<28} {'streams/':>8} {'replicas':>9} {'capacity':>9} {'images/s per':>12} "
        f"{'util':>7}  source"
    )
    print(f"{'':<28} {'replica':>8} {'(GPUs)':>9} {'(streams)':>9} {'replica':>12}")
    for p in plans:
        print(_plan_line(p) if isinstance(p, CapacityPlan) else f"  impossible: {p}")
    return 0


# -- engines / repositories ------------------------------------------------------------------
@contextmanager
def _reported(task: Literal["repository", "gen_trt_engine"], gpus: list[str]) -> Iterator[None]:
    """On failure, leave a FAILURE summary as the termination message (then fail as usual)."""
    try:
        yield
    except (ServingError, FileNotFoundError, ValueError) as e:
        from rtdetr_serving.task_summary import ServingTaskSummary, write_summary

        write_summary(ServingTaskSummary(task=task, status="FAILURE", message=str(e), gpus=gpus))
        raise


def cmd_build_engine(args: argparse.Namespace) -> int:
    with _reported("gen_trt_engine", [args.gpu]):
        return _build_engine(args)


def _build_engine(args: argparse.Namespace) -> int:
    from rtdetr_serving.engine_build import build_or_reuse
    from rtdetr_serving.engine_spec import build_spec, trtexec_command
    from rtdetr_serving.task_summary import EngineFacts, ServingTaskSummary, revision_of
    from rtdetr_serving.task_summary import write_summary as write_task_summary
    from rtdetr_spec.artifacts import ExportManifest

    gpu = _catalog(args).get(args.gpu)
    try:
        manifest = ExportManifest.read(args.onnx)
    except FileNotFoundError as e:
        raise ServingError(str(e)) from None
    spec = build_spec(
        gpu,
        manifest,
        args.onnx,
        args.output,
        opt_batch=args.opt_batch,
        max_batch=args.max_batch,
        workspace_gib=args.workspace_gib,
        timing_cache=args.timing_cache,
    )
    if args.print_command:
        print(" ".join(trtexec_command(spec, args.trtexec_path)))
        return 0
    sidecar, reused = build_or_reuse(
        spec,
        gpu,
        method="trtexec" if args.trtexec else "tensorrt",
        trtexec=args.trtexec_path,
        allow_same_cc=args.allow_same_cc,
        device_index=args.device,
        expect_tensorrt=args.tensorrt_version,
        reuse=args.reuse,
    )
    verb = "reused" if reused else "built"
    message = (
        f"{verb} {spec.plan_path} (TensorRT {sidecar.tensorrt_version}, "
        f"{sidecar.gpu_device_name}, cc {sidecar.compute_capability}, "
        f"{sidecar.build_seconds:.1f}s)"
    )
    timing = None
    if args.time:
        from rtdetr_serving.engine_timing import time_plan

        timing = time_plan(spec.plan_path, spec.profile, device_index=args.device)
        best = timing.best
        message += (
            f"; timed: {best.throughput_ips:.0f} images/s at batch {best.batch} "
            f"(p50 {best.p50_ms:.2f} ms, p99 {best.p99_ms:.2f} ms)"
        )
    write_task_summary(
        ServingTaskSummary(
            task="gen_trt_engine",
            status="SUCCESS",
            message=message,
            revision=revision_of(spec.onnx_sha256),
            onnx_sha256=spec.onnx_sha256,
            gpus=[gpu.name],
            artifacts={"plan": str(spec.plan_path), "sidecar": str(spec.sidecar_path)},
            engine=EngineFacts.from_sidecar(sidecar),
            reused=reused,
            timing=timing,
        )
    )
    print(message)
    return 0


def cmd_repository(args: argparse.Namespace) -> int:
    with _reported("repository", list(args.gpu or [])):
        return _repository(args)


def _repository(args: argparse.Namespace) -> int:
    from rtdetr_serving.repository import RepositoryIndex, write_repository
    from rtdetr_serving.task_summary import ServingTaskSummary, revision_of, write_summary
    from rtdetr_spec.artifacts import ExportManifest, sha256_file

    cat = _catalog(args)
    gpus, cpu = cat.select_devices(args.gpu or [])
    devices = [g.name for g in gpus] + ([cpu.name] if cpu else [])
    output = Path(args.output)
    if args.by_revision:
        try:
            digest = ExportManifest.read(args.onnx).onnx_sha256
        except FileNotFoundError:  # no manifest: described from the graph (graph_contract.py)
            digest = sha256_file(args.onnx) if Path(args.onnx).is_file() else "missing"
        output = output / revision_of(digest)
    model_dir = write_repository(
        args.onnx,
        output,
        gpus=gpus,
        cpu=cpu,
        flavor=args.flavor,
        model_name=args.model_name,
        force=args.force,
        cpu_max_batch=args.cpu_max_batch,
        cpu_threads=args.cpu_threads,
        class_names=args.class_names,
    )
    index = RepositoryIndex.read(model_dir)
    write_summary(
        ServingTaskSummary(
            task="repository",
            status="SUCCESS",
            message=f"prepared {model_dir} for {', '.join(devices) or args.flavor}",
            revision=revision_of(index.onnx_sha256),
            onnx_sha256=index.onnx_sha256,
            gpus=devices,
            artifacts={
                "repository": str(output),
                "model": str(model_dir),
                "onnx": str(model_dir / index.onnx_file),
                "index": str(model_dir / "repository.json"),
            },
        )
    )
    print(f"{model_dir} ({args.flavor}" + (f": {', '.join(devices)}" if devices else "") + ")")
    return 0


# -- local triton / client / bench -----------------------------------------------------------
def cmd_local(args: argparse.Namespace) -> int:
    from rtdetr_serving.triton_local import TritonOptions, run_foreground

    distinct_ports(http=args.http_port, grpc=args.grpc_port, metrics=args.metrics_port)

    return run_foreground(
        TritonOptions(
            model_repository=[Path(p).resolve() for p in args.model_repository],
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            model_control_mode=args.model_control_mode,
            load_models=args.load_model or [],
            model_config_name=args.model_config_name,
            address=args.address,
            log_verbose=args.log_verbose,
            exit_timeout_s=args.exit_timeout,
        )
    )


def cmd_tritonserver(triton_args: list[str]) -> int:
    """Exec nvidia-pytriton's tritonserver with ``triton_args`` (returns only on failure)."""
    from rtdetr_serving.triton_exec import exec_tritonserver

    exec_tritonserver(triton_args)


COMMANDS = {
    "catalog": cmd_catalog,
    "plan": cmd_plan,
    "build-engine": cmd_build_engine,
    "repository": cmd_repository,
    "local": cmd_local,
    "infer": cmd_infer,
    "bench": cmd_bench,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["tritonserver"]:
        # tritonserver's flags pass through untouched (argparse would take them for ours).
        try:
            return cmd_tritonserver(argv[1:])
        except (ServingError, OSError) as e:
            print(f"rtdetr-serve tritonserver: error: {e}", file=sys.stderr)
            return EXIT_ERROR
    args = build_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    try:
        return int(COMMANDS[args.command](args))
    except UsageError as e:
        print(f"rtdetr-serve {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (ServingError, NotAnImageError, OSError, ValueError) as e:
        # OSError: an output unwritable since parsing, or a full disk (it names path and cause).
        print(f"rtdetr-serve {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
