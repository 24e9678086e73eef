"""``python -m bench [--quick]``: run every section and write docs/benchmarks.md (+ .json).

Each cell runs in its own subprocess; a failing cell is recorded with its error and the run goes
on. ``--baseline REF`` also measures our eager inference and training cells on the model code of
git revision REF (extracted with ``git archive`` into the cache and put first on PYTHONPATH), in
the same run and under the same load, for the report's before/after table.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import env, plan, report

CODE_PATHS = ("trainer/rtdetr_trainer", "spec/rtdetr_spec", "serving/rtdetr_serving")


def _log(msg: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def extract_code(ref: str) -> tuple[str, list[str]]:
    """The project's packages at ``ref`` in the cache; returns (commit, PYTHONPATH entries)."""
    commit = subprocess.run(
        ["git", "rev-parse", ref], cwd=env.REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = env.cache_root() / f"bench-code-{commit[:12]}"
    if not (dest / ".complete").exists():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", commit, *CODE_PATHS], cwd=env.REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        (dest / ".complete").write_text("ok\n")
    return commit, [str(dest / p.split("/")[0]) for p in CODE_PATHS]


def run_module(
    module: str, spec: dict[str, Any], extra_path: list[str] | None = None, timeout: float = 3600
) -> dict[str, Any]:
    """Run ``python -m <module> <spec>`` and return its BENCH-RESULT (or an ``error``)."""
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join([*(extra_path or []), str(env.REPO)])
    cmd = [sys.executable, "-m", module, json.dumps(spec)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            cwd=env.REPO,
            env=child_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"spec": spec, "error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            result = json.loads(line[len("BENCH-RESULT ") :])
            result["cell_wall_s"] = time.perf_counter() - t0
            return result
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    return {"spec": spec, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


def _section(name: str, results: dict[str, Any], fn: Any) -> None:
    _log(f"section {name}: load {os.getloadavg()[0]:.2f}")
    start = os.getloadavg()
    t0 = time.perf_counter()
    body = fn()
    results["sections"][name] = {
        "load_start": start,
        "load_end": os.getloadavg(),
        "seconds": time.perf_counter() - t0,
        **body,
    }


def _cells(cells: list[dict], extra_path: list[str] | None = None, tag: str = "") -> list[dict]:
    out = []
    for cell in cells:
        label = f"{cell['kind']} {cell['impl']} {cell['precision']} b{cell['batch']}{tag}"
        _log(f"  {label} ...")
        res = run_module("bench.cells", cell, extra_path)
        if "error" in res:
            _log(f"  {label} FAILED: {res['error']}")
        res["tag"] = tag
        out.append(res)
    return out


def wait_for_load(limit: float, max_wait: float) -> None:
    deadline = time.monotonic() + max_wait
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        _log(f"load {os.getloadavg()[0]:.2f} > {limit}; waiting")
        time.sleep(30)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="fewer iterations (CPU)")
    g.add_argument("--micro", action="store_true", help="smoke test: R18, 64x64, 1 iteration")
    p.add_argument(
        "--sections",
        default=",".join(plan.SECTIONS),
        help=f"comma-separated subset of {','.join(plan.SECTIONS)}",
    )
    p.add_argument("--baseline", metavar="REF", help="also measure our model code at REF")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--output", type=Path, default=env.REPO / "docs" / "benchmarks.md")
    p.add_argument("--json", type=Path, help="raw results (default: --output with .json)")
    p.add_argument(
        "--wait-load",
        type=float,
        metavar="L",
        help="before starting, wait (up to 30 min) for the 1-minute load below L",
    )
    p.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only re-render --output from the raw results of an earlier run",
    )
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(plan.SECTIONS)
    if unknown:
        p.error(f"--sections: unknown {sorted(unknown)}; choose from {list(plan.SECTIONS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.render:
        args.output.write_text(report.render(json.loads(args.render.read_text())))
        _log(f"wrote {args.output} from {args.render}")
        return 0
    mode = plan.MODES["micro" if args.micro else "quick" if args.quick else "full"]
    sections = args.sections.split(",")
    if args.wait_load:
        wait_for_load(args.wait_load, 1800)
    peers = env.ensure_peers()
    os.environ[env.PEERS_ENV] = str(peers)
    env.activate_peers()
    results: dict[str, Any] = {
        "command": "python -m bench " + " ".join(shlex.quote(a) for a in argv),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode.name,
        "threads": args.threads,
        "device": args.device,
        "git": env.git_commit(),
        "machine": env.machine_info(),
        "load_start": os.getloadavg(),
        "sections": {},
        "skipped": plan.skipped(mode) if "inference" in sections else [],
    }
    baseline_path: list[str] | None = None
    if args.baseline:
        commit, baseline_path = extract_code(args.baseline)
        results["baseline"] = {"ref": args.baseline, "commit": commit}
    t, dev = args.threads, args.device

    with tempfile.TemporaryDirectory(prefix="rtdetr-bench-") as tmp:
        if "inference" in sections:

            def inference() -> dict[str, Any]:
                onnx = str(Path(tmp) / "ours.onnx")
                exp = run_module(
                    "bench.export",
                    {"depth": mode.depth, "size": mode.size, "queries": mode.queries, "path": onnx},
                )
                cells = plan.inference_cells(mode, dev, t, None if "error" in exp else onnx)
                body: dict[str, Any] = {"export": exp, "cells": _cells(cells)}
                if baseline_path:
                    old = [c for c in cells if c["impl"] == "ours"]
                    body["baseline_cells"] = _cells(old, baseline_path, " (baseline)")
                return body

            _section("inference", results, inference)
        if "training" in sections:

            def training() -> dict[str, Any]:
                cells = plan.training_cells(mode, dev, t)
                body: dict[str, Any] = {"cells": _cells(cells)}
                if baseline_path:
                    old = [c for c in cells if c["impl"] == "ours"]
                    body["baseline_cells"] = _cells(old, baseline_path, " (baseline)")
                return body

            _section("training", results, training)
    if "data" in sections:
        _section("data", results, lambda: {"result": run_module("bench.data", mode.data)})
    if "evaluation" in sections:
        spec = {"images": mode.eval_images, "repeats": mode.eval_repeats}
        _section("evaluation", results, lambda: {"result": run_module("bench.evaluation", spec)})
    if "ddp" in sections and dev == "cpu":
        _section(
            "ddp",
            results,
            lambda: {"runs": [run_module("bench.ddp", s) for s in plan.ddp_specs(mode, t)]},
        )
    if "profile" in sections:
        _section("profile", results, lambda: {"cells": _cells(plan.profile_cells(mode, dev, t))})
    results["load_end"] = os.getloadavg()
    results["finished"] = datetime.now(UTC).isoformat(timespec="seconds")

    out_json = args.json or args.output.with_suffix(".json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1) + "\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.render(results))
    _log(f"wrote {args.output} and {out_json}")
    failed = [c for s in results["sections"].values() for c in s.get("cells", []) if "error" in c]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
