"""Benchmark: ``rtdetr dataset convert mtmc`` memory as a scene's frame count grows.

    .venv/bin/python bench/mtmc_convert.py                  # 1080p, 2 cameras, 300/1200/4800 frames
    .venv/bin/python bench/mtmc_convert.py --frames 300,1200 --gt-frames 2000,8000
    .venv/bin/python bench/mtmc_convert.py --quick          # seconds: 160x96, a few frames

Two parts, each measured in fresh processes:

* conversion: synthetic scenes (real H.264 videos from :mod:`rtdetr_trainer.data.mtmc.synth`,
  cached under ``--cache`` keyed by their configuration) of growing length go through the CLI
  (``python -m rtdetr_trainer.cli dataset convert mtmc ... --no-progress``). The harness samples
  ``VmRSS``/``VmHWM`` of the whole process tree from ``/proc`` every ``--interval`` seconds: the
  main process, each camera worker (a process seen holding a ``.h5.partial`` file open), the
  other helpers (multiprocessing's resource tracker), and the summed RSS of the tree (shared
  pages are counted once per process, so the sum overstates). The kernel's own ``ru_maxrss`` of the
  conversion (``os.wait4``: the same figure ``getrusage(RUSAGE_CHILDREN)`` gives, for this child
  alone) is the cross-check: the largest single process's peak.
* ground-truth index: ``ground_truth.json`` files of growing size (frames x objects x cameras,
  no video) through ``build_index`` alone, the part that would grow if streaming broke, and the
  same files through ``json.load`` (what a converter that loads the file does) for contrast.
  ``json.load`` runs under an address-space limit (``--json-load-limit-gib``) so it cannot take
  the machine down; a run that hits it is reported as such.

Prints one JSON object, then the Markdown tables for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CACHE = Path.home() / ".cache" / "rtdetr-operator" / "bench-mtmc"
MIB = 1024 * 1024
VERSIONS = (
    "import av, h5py, json; print(json.dumps({'pyav': av.__version__, 'h5py': h5py.__version__, "
    "'libavcodec': '.'.join(map(str, av.library_versions['libavcodec']))}))"
)


def _mib(kib: int | float) -> float:
    return round(kib / 1024, 1)


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if "model name" in ln), ""
    )
    meminfo = dict(ln.split(":", 1) for ln in Path("/proc/meminfo").read_text().splitlines())
    versions = subprocess.run(  # not imported here: the harness stays small (see run_tree)
        [sys.executable, "-c", VERSIONS], capture_output=True, text=True, check=True
    ).stdout
    return {
        "cpu_model": model or platform.processor(),
        "cpus": len(os.sched_getaffinity(0)),
        "ram_gib": round(int(meminfo["MemTotal"].split()[0]) / MIB, 1),
        "load_avg_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        **json.loads(versions),
    }


# --- inputs, cached ----------------------------------------------------------------------------


def _cached(cache: Path, key: str, make: Any) -> tuple[Path, float, bool]:
    """``make(tmp_dir)`` once per key; returns (dir, seconds it took, whether it was cached)."""
    final = cache / key
    meta = final / "bench-meta.json"
    if meta.is_file():
        return final, json.loads(meta.read_text())["seconds"], True
    tmp = cache / f"{key}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    start = time.monotonic()
    make(tmp)
    seconds = round(time.monotonic() - start, 2)
    (tmp / "bench-meta.json").write_text(json.dumps({"seconds": seconds}))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final, seconds, False


def scene(cache: Path, args: argparse.Namespace, frames: int) -> tuple[Path, float, bool]:
    """A synthetic scene, written by a child process (the harness must not grow: run_tree)."""
    synth = REPO / "trainer" / "rtdetr_trainer" / "data" / "mtmc" / "synth.py"
    code = hashlib.sha256(synth.read_bytes()).hexdigest()[:8]
    cfg = [args.cameras, frames, args.width, args.height, args.objects]
    key = "scene-{}cam-{}f-{}x{}-{}obj-".format(*cfg) + code

    def make(d: Path) -> None:
        cmd = [sys.executable, __file__, "--child", "scene", "--child-input", str(d)]
        cmd += ["--child-scene", json.dumps(cfg)]
        subprocess.run(cmd, cwd=REPO, check=True)

    return _cached(cache, key, make)


def write_scene(root: Path, cfg: list[int]) -> None:
    from rtdetr_trainer.data.mtmc import synth

    cameras, frames, width, height, objects = cfg
    synth.write_scene(root, synth.SceneConfig(cameras, frames, width, height, objects=objects))


def write_ground_truth(path: Path, frames: int, objects: int, cameras: int) -> None:
    """An MTMC-shaped ground truth: every object visible in every camera on every frame."""
    cams = [f"Camera_{c:02d}" for c in range(cameras)]
    types = ["Person", "Forklift", "Pallet", "Transporter", "NovaCarter"]
    with open(path, "w") as f:
        f.write("{")
        for frame in range(frames):
            objs = []
            for k in range(objects):
                x = (frame * 3 + k * 41) % 1700
                boxes = {
                    c: [x + i, 100.0 + k, x + i + 120.5, 400.25 + k] for i, c in enumerate(cams)
                }
                objs.append(
                    {
                        "object type": types[k % len(types)],
                        "object id": k,
                        "3d location": [k * 0.5, frame / 30, 0.0],
                        "3d bounding box scale": [0.6, 0.6, 1.7],
                        "3d bounding box rotation": [0.0, 0.0, 0.1],
                        "2d bounding box visible": boxes,
                        "2d bounding box": boxes,
                    }
                )
            f.write(("," if frame else "") + f'"{frame}": ' + json.dumps(objs))
        f.write("}\n")


def ground_truth(cache: Path, frames: int, objects: int, cameras: int) -> tuple[Path, float, bool]:
    key = f"gt-{frames}f-{objects}obj-{cameras}cam"
    d, seconds, cached = _cached(
        cache, key, lambda d: write_ground_truth(d / "ground_truth.json", frames, objects, cameras)
    )
    return d / "ground_truth.json", seconds, cached


# --- process-tree memory -----------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    role: str
    peak_kib: int = 0
    #: (seconds since start, VmRSS KiB) for workers: is memory flat within one camera's run?
    samples: list[tuple[float, int]] = field(default_factory=list)


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(d.name))
    return out


def _tree(root: int) -> list[int]:
    kids, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def _memory(pid: int) -> tuple[int, int] | None:
    """(VmRSS, VmHWM) in KiB; None once the process is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = dict(ln.split(":", 1) for ln in text.splitlines() if ":" in ln)
    if "VmRSS" not in fields:
        return None
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _holds_partial_h5(pid: int) -> bool:
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
        return any(fd.readlink().name.endswith(".h5.partial") for fd in fds)
    except OSError:
        return False


def run_tree(
    cmd: list[str], log: Path, interval: float, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``cmd``; sample its process tree's memory until it exits."""
    start = time.monotonic()
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **(env or {})}
        )
    procs: dict[int, Proc] = {popen.pid: Proc(popen.pid, "main")}
    tree_peak = 0
    while True:
        pid, status, usage = os.wait4(popen.pid, os.WNOHANG)
        if pid:
            break
        now, total = time.monotonic() - start, 0
        for p in _tree(popen.pid):
            mem = _memory(p)
            if mem is None:
                continue
            rec = procs.setdefault(p, Proc(p, "other"))
            if rec.role == "other" and _holds_partial_h5(p):
                rec.role = "worker"
            rec.peak_kib = max(rec.peak_kib, *mem)
            if rec.role == "worker":
                rec.samples.append((round(now, 2), mem[0]))
            total += mem[0]
        tree_peak = max(tree_peak, total)
        time.sleep(interval)
    popen.returncode = os.waitstatus_to_exitcode(status)
    workers = []
    for rec in procs.values():
        if rec.role != "worker":
            continue
        rss = [kib for _, kib in rec.samples]
        at = {
            f"rss_at_{q}pct_mib": _mib(rss[min(len(rss) - 1, len(rss) * q // 100)])
            for q in (25, 50, 75)
        }
        workers.append({"pid": rec.pid, "peak_mib": _mib(rec.peak_kib), **at, "samples": len(rss)})
    return {
        "returncode": popen.returncode,
        "wall_s": round(time.monotonic() - start, 2),
        "main_peak_mib": _mib(procs[popen.pid].peak_kib),
        "workers": workers,
        "other_peak_mib": [_mib(r.peak_kib) for r in procs.values() if r.role == "other"],
        "tree_rss_sum_peak_mib": _mib(tree_peak),
        "ru_maxrss_mib": _mib(usage.ru_maxrss),
    }


# --- the two measurements ----------------------------------------------------------------------


def convert(scene_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mtmc-out-", dir=args.work) as tmp:
        out = Path(tmp) / "out"
        cmd = [sys.executable, "-m", "rtdetr_trainer.cli", "dataset", "convert", "mtmc"]
        cmd += ["--scene", str(scene_dir), "--output", str(out), "--no-progress"]
        cmd += ["--frame-stride", str(args.stride), "--workers", str(args.workers)]
        env = dict(kv.split("=", 1) for kv in args.env)
        res = run_tree(cmd, Path(tmp) / "log.txt", args.interval, env)
        if res["returncode"]:
            raise SystemExit(f"conversion failed:\n{(Path(tmp) / 'log.txt').read_text()[-3000:]}")
        report = json.loads((out / "conversion.json").read_text())
        h5 = sum(p.stat().st_size for p in out.glob("*.h5"))
        total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    images = sum(c["images"] for c in report["cameras"])
    return {
        **res,
        "images": images,
        "boxes": sum(c["boxes"] for c in report["cameras"]),
        "frames_per_s": round(images / res["wall_s"], 1),
        "h5_mib": round(h5 / MIB, 1),
        "output_mib": round(total / MIB, 1),
    }


def child(mode: str, path: Path, limit_gib: float) -> dict[str, Any]:
    """Runs in its own process: peak RSS of indexing or loading one ground-truth file."""

    def peak() -> int:
        # VmHWM, not ru_maxrss: Linux carries the forking parent's peak across exec into the
        # child's ru_maxrss, the process's own page tables start afresh.
        status = Path("/proc/self/status").read_text()
        return int(status.split("VmHWM:", 1)[1].split()[0])

    base, start = peak(), time.monotonic()
    if mode == "index":
        from rtdetr_trainer.data.mtmc.groundtruth import build_index

        base = peak()
        with tempfile.TemporaryDirectory(prefix="bench-mtmc-index-") as tmp:
            stats = build_index(path, Path(tmp) / "gt.sqlite", stride=1)
            extra = {"frames": stats.frames, "boxes": stats.boxes}
            extra["index_mib"] = round((Path(tmp) / "gt.sqlite").stat().st_size / MIB, 1)
    else:
        limit = int(limit_gib * 1024**3)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        try:
            with open(path) as f:
                extra = {"frames": len(json.load(f))}
        except MemoryError:
            extra = {"memory_error": f"over the {limit_gib} GiB address-space limit"}
    seconds = round(time.monotonic() - start, 2)
    return {"baseline_mib": _mib(base), "peak_mib": _mib(peak()), "seconds": seconds, **extra}


def index_size(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"file_mib": round(path.stat().st_size / MIB, 1)}
    for mode in ("index", "json_load"):
        cmd = [sys.executable, __file__, "--child", mode, "--child-input", str(path)]
        cmd += ["--json-load-limit-gib", str(args.json_load_limit_gib)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)
        if proc.returncode:
            raise SystemExit(f"{mode} of {path} failed:\n{proc.stderr[-3000:]}")
        out[mode] = json.loads(proc.stdout)
    return out


# --- report ------------------------------------------------------------------------------------


def tables(res: dict[str, Any]) -> str:
    c = res["config"]
    lines = [
        f"Conversion: {c['cameras']} cameras, {c['width']}x{c['height']} H.264, {c['objects']} "
        f"objects, --frame-stride {c['stride']}, --workers {c['workers'] or 'default'}"
        + (f", environment {' '.join(c['env'])}" if c["env"] else ""),
        "",
        "| frames/camera | images | wall | images/s | main peak | worker peak (each) "
        "| worker RSS at 25/50/75% of its run | tree RSS sum peak | ru_maxrss | H5 size |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["conversion"]:
        w = r["workers"]
        quart = "; ".join("/".join(str(x[f"rss_at_{q}pct_mib"]) for q in (25, 50, 75)) for x in w)
        lines.append(
            f"| {r['frames']} | {r['images']} | {r['wall_s']} s | {r['frames_per_s']} "
            f"| {r['main_peak_mib']} MiB | {', '.join(str(x['peak_mib']) for x in w)} MiB "
            f"| {quart} MiB | {r['tree_rss_sum_peak_mib']} MiB | {r['ru_maxrss_mib']} MiB "
            f"| {r['h5_mib']} MiB |"
        )
    if not res["ground_truth"]:
        return "\n".join(lines)
    lines += [
        "",
        f"Ground truth alone: {c['gt_objects']} objects x {c['gt_cameras']} cameras per frame",
        "",
        "| frames | boxes | file | build_index peak RSS (after imports) | build_index time "
        "| json.load peak RSS (after imports) | json.load time |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["ground_truth"]:
        ix, jl = r["index"], r["json_load"]
        loaded = jl.get("memory_error") or f"{jl['peak_mib']} MiB ({jl['baseline_mib']} MiB)"
        lines.append(
            f"| {r['frames']} | {ix['boxes']} | {r['file_mib']} MiB "
            f"| {ix['peak_mib']} MiB ({ix['baseline_mib']} MiB) | {ix['seconds']} s "
            f"| {loaded} | {jl['seconds']} s |"
        )
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=_sizes, default=[300, 1200, 4800], help="frames per camera")
    p.add_argument("--cameras", type=int, default=2)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--height", type=int, default=1080)
    p.add_argument("--objects", type=int, default=7, help="objects drawn per camera")
    p.add_argument("--stride", type=int, default=1, help="--frame-stride of the conversion")
    p.add_argument("--workers", type=int, default=0, help="--workers (0: the converter's default)")
    p.add_argument("--gt-frames", type=_sizes, default=[2000, 8000, 32000])
    p.add_argument("--gt-objects", type=int, default=40)
    p.add_argument("--gt-cameras", type=int, default=4)
    p.add_argument("--json-load-limit-gib", type=float, default=2.5)
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment of the conversion (e.g. glibc's MALLOC_ARENA_MAX=1)",
    )
    p.add_argument("--interval", type=float, default=0.05, help="seconds between /proc samples")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="generated inputs")
    p.add_argument("--work", type=Path, help="where outputs go while measured (default: /tmp)")
    p.add_argument("--json-out", type=Path, help="also write the JSON here")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run in seconds")
    p.add_argument("--child", choices=("index", "json_load", "scene"), help=argparse.SUPPRESS)
    p.add_argument("--child-input", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-scene", type=json.loads, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child == "scene":
        write_scene(args.child_input, args.child_scene)
        return 0
    if args.child:
        print(json.dumps(child(args.child, args.child_input, args.json_load_limit_gib)))
        return 0
    if args.quick:
        args.frames, args.width, args.height, args.objects = [4, 8], 160, 96, 3
        args.gt_frames, args.gt_objects, args.gt_cameras = [20, 80], 4, 2
        args.interval = min(args.interval, 0.02)
    args.cache.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if not k.startswith("child")}
    res: dict[str, Any] = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in config.items()},
        "machine": machine(),
        "conversion": [],
        "ground_truth": [],
    }
    for frames in args.frames:
        d, gen_s, cached = scene(args.cache, args, frames)
        row = {"frames": frames, "scene": str(d), "generate_s": gen_s, "generate_cached": cached}
        res["conversion"].append({**row, **convert(d, args)})
        print(f"converted {frames} frames/camera", file=sys.stderr)
    for frames in args.gt_frames:
        path, gen_s, cached = ground_truth(args.cache, frames, args.gt_objects, args.gt_cameras)
        row = {"frames": frames, "generate_s": gen_s, "generate_cached": cached}
        res["ground_truth"].append({**row, **index_size(path, args)})
        print(f"indexed {frames} ground-truth frames", file=sys.stderr)
    text = json.dumps(res, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n")
    print(text)
    print()
    print(tables(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
