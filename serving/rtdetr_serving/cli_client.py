"""``rtdetr-serve infer`` and ``rtdetr-serve bench``: the commands that talk to a running Triton.

Both build the same :class:`~rtdetr_serving.client.RTDETRClient` from their flags; ``bench``
exits :data:`EXIT_TARGET_MISSED` when the stream target did not hold.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rtdetr_serving.catalog import load_catalog
from rtdetr_serving.cli_types import outputs_spare_inputs

EXIT_TARGET_MISSED = 3


def write_output(text: str, path: str | None) -> None:
    """``text`` to ``path`` (temp file, then rename) or to stdout."""
    from rtdetr_spec.artifacts import atomic_write_text

    if path:
        atomic_write_text(path, text)
    else:
        sys.stdout.write(text)


def _client(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from rtdetr_serving.client import RTDETRClient

    return RTDETRClient(
        args.url,
        args.protocol,
        args.model,
        timeout_s=args.timeout,
        retries=args.retries,
        manifest=args.manifest,
        threshold=getattr(args, "threshold", 0.5),
    )


def _detect_all(client: Any, args: argparse.Namespace) -> list[Any]:
    """All images' results; in chunks under a progress bar when a person watches."""
    from rtdetr_spec.cli_help import progress, progress_wanted

    kw = {"batch_size": args.batch, "concurrency": args.concurrency}
    if not progress_wanted(args.no_progress) or len(args.images) <= INFER_CHUNK:
        return list(client.detect(args.images, **kw))
    chunks = [args.images[i : i + INFER_CHUNK] for i in range(0, len(args.images), INFER_CHUNK)]
    results: list[Any] = []
    for chunk in progress(chunks, desc="infer", unit=f"x{INFER_CHUNK} images"):
        results += client.detect(chunk, **kw)
    return results


#: Images per progress step of ``infer`` (a multiple of every usual batch size).
INFER_CHUNK = 64


def cmd_infer(args: argparse.Namespace) -> int:
    from rtdetr_serving.client import results_json

    outputs_spare_inputs(args.images, args.output, args.annotate)
    client = _client(args)
    results = _detect_all(client, args)
    m = client.manifest
    text = results_json(
        results,
        url=args.url,
        protocol=args.protocol,
        model=args.model,
        onnx_sha256=m.onnx_sha256,
        class_names=m.detectable_classes(),
        threshold=args.threshold,
    )
    write_output(text, args.output)
    if args.output:
        n = sum(len(r.detections) for r in results)
        print(f"{args.output}: {len(results)} images, {n} detections", file=sys.stderr)
    if args.annotate:
        from rtdetr_serving.annotate import annotate_results

        written = annotate_results(results, Path(args.annotate), m.detectable_classes())
        print(f"{args.annotate}: {written} annotated images", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from rtdetr_serving.bench import check_load, run_bench

    check_load(args.streams, args.fps, args.duration, load_catalog(args.catalog or []))
    if args.perf_analyzer:
        from rtdetr_serving.perf_analyzer import PerfAnalyzerLoad, render

        contract = _client(args).contract
        load = PerfAnalyzerLoad(
            url=args.url,
            protocol=args.protocol,
            model=args.model,
            input_name=contract.input.name,
            input_dims=contract.input.dims,
            streams=args.streams,
            fps=args.fps,
            duration_s=args.duration,
        )
        print(render(load), end="")
        return 0
    report = run_bench(
        _client(args),
        streams=args.streams,
        fps=args.fps,
        duration_s=args.duration,
        image=args.image,
        deadline_ms=args.deadline_ms,
        tolerance=args.tolerance,
        max_in_flight=args.max_in_flight,
        progress_every_s=args.progress_s,
    )
    if args.json:
        write_output(report.model_dump_json(indent=2) + "\n", args.output)
    else:
        lat = report.latency_ms
        ps = report.per_stream_fps
        print(
            f"{report.streams} streams x {report.fps:g} FPS for {report.duration_s:g}s: "
            f"{report.completed}/{report.scheduled} answered ({report.late} late, "
            f"{report.dropped} dropped, {report.errors} errors)\n"
            f"throughput {report.throughput_fps:.1f} FPS; per stream min {min(ps):.2f} / "
            f"max {max(ps):.2f} FPS\n"
            f"latency ms p50 {lat.p50} p90 {lat.p90} p99 {lat.p99} max {lat.max}\n"
            + ("target holds" if report.holds else "target NOT met: " + "; ".join(report.reasons))
        )
    return 0 if report.holds else EXIT_TARGET_MISSED
