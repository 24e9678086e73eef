"""Render the raw results of one run as docs/benchmarks.md.

Every figure in the document comes from the results dict of that run; the fixed prose
(:mod:`bench.notes`) carries no numbers. Missing or failed cells are shown as such.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

from bench import notes

IMPL_NAMES = {
    "ours": "ours, PyTorch eager",
    "ours-compile": "ours, torch.compile (inductor, freezing)",
    "ort": "ours, onnxruntime CPU (exported ONNX)",
    "hf": "transformers RTDetrForObjectDetection, eager",
}
TARGET = 1.5


def _med(times: list[float]) -> float:
    return statistics.median(times)


def _rate(cell: dict[str, Any]) -> float | None:
    if "error" in cell or not cell.get("times"):
        return None
    return cell["spec"]["batch"] / _med(cell["times"])


def _load(v: Iterable[float] | None) -> str:
    return "n/a" if v is None else " / ".join(f"{x:.2f}" for x in v)


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _section_load(sec: dict[str, Any]) -> str:
    return (
        f"Load average (1/5/15 min) at section start {_load(sec.get('load_start'))}, "
        f"end {_load(sec.get('load_end'))}; section wall time {sec.get('seconds', 0):.0f} s."
    )


def _cell_rows(cells: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for c in cells:
        s = c["spec"]
        name = IMPL_NAMES.get(s["impl"], s["impl"]) + c.get("tag", "")
        if s.get("channels_last") and s["impl"] == "hf":
            name += ", channels_last"
        if s.get("cuda_graphs"):
            name += ", CUDA graph"
        if "error" in c:
            rows.append(
                [
                    name,
                    s["precision"],
                    str(s["batch"]),
                    "failed: " + c["error"][:160],
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        t = c["times"]
        rows.append(
            [
                name,
                s["precision"],
                str(s["batch"]),
                f"{s['warmup']}+{s['iters']}",
                f"{1000 * _med(t):.0f}",
                f"{1000 * min(t):.0f}",
                f"{1000 * max(t):.0f}",
                f"{_rate(c):.2f}",
                f"{c.get('peak_rss_gib', float('nan')):.1f}",
            ]
        )
    return rows


def _find(
    cells: list[dict[str, Any]], impl: str, precision: str, batch: int, cl: bool = False
) -> dict | None:
    """The cell of an implementation; ``cl`` selects the peer run channels_last."""
    for c in cells:
        s = c["spec"]
        key = (s["impl"], s["precision"], s["batch"], bool(s.get("channels_last")))
        if key == (impl, precision, batch, cl) and not s.get("cuda_graphs"):
            return c
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _verdict(r: float | None, target: float = TARGET) -> str:
    if r is None:
        return "not measured"
    return "met" if r >= target else "missed"


def inference_summary(cells: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    batches = sorted({c["spec"]["batch"] for c in cells})
    for precision in ("fp32", "bf16"):
        for b in batches:
            hf = _find(cells, "hf", precision, b)
            if hf is None:
                continue
            hf_rate = _rate(hf)
            eager = _rate(_find(cells, "ours", precision, b) or {"error": 1})
            best_name, best = "ours eager", eager
            for impl in ("ours-compile", "ort"):
                c = _find(cells, impl, precision, b)
                if c is not None and (r := _rate(c)) is not None and (best is None or r > best):
                    best_name, best = IMPL_NAMES[impl].removeprefix("ours, "), r
            r_eager, r_best = _ratio(eager, hf_rate), _ratio(best, hf_rate)
            hf_cl = _find(cells, "hf", precision, b, cl=True)
            r_cl = _ratio(eager, _rate(hf_cl) if hf_cl else None)
            rows.append(
                [
                    precision,
                    str(b),
                    _f(hf_rate),
                    _f(eager),
                    _f(r_eager) + "x",
                    f"{best_name}: {_f(best)}",
                    _f(r_best) + "x",
                    _verdict(r_eager) + " / " + _verdict(r_best),
                    _f(r_cl) + "x",
                ]
            )
    return rows


def training_summary(cells: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for precision in ("fp32", "bf16"):
        for c in cells:
            s = c["spec"]
            if s["impl"] != "ours" or s["precision"] != precision:
                continue
            hf = _find(cells, "hf", precision, s["batch"])
            hf_cl = _find(cells, "hf", precision, s["batch"], cl=True)
            r = _ratio(_rate(c), _rate(hf) if hf else None)
            r_cl = _ratio(_rate(c), _rate(hf_cl) if hf_cl else None)
            rows.append(
                [
                    precision,
                    str(s["batch"]),
                    _f(_rate(hf) if hf else None, 3),
                    _f(_rate(c), 3),
                    _f(r) + "x",
                    _verdict(r),
                    _f(r_cl) + "x",
                ]
            )
    return rows


def before_after(current: list[dict], baseline: list[dict], base: str, now: str) -> list[str]:
    rows = []
    for old in baseline:
        s = old["spec"]
        new = _find(current, s["impl"], s["precision"], s["batch"])
        r_old, r_new = _rate(old), _rate(new) if new else None
        rows.append(
            [
                s["kind"],
                s["precision"],
                str(s["batch"]),
                _f(r_old, 3),
                _f(r_new, 3),
                _f(_ratio(r_new, r_old)) + "x",
            ]
        )
    header = [
        "cell",
        "precision",
        "batch",
        f"before ({base}) images/s",
        f"after ({now}) images/s",
        "speed-up",
    ]
    return _table(header, rows)


def render(res: dict[str, Any]) -> str:
    m, g, secs = res["machine"], res["git"], res["sections"]
    lines = [
        "## Model: rtdetr-operator's RT-DETR against its peers",
        "",
        "Generated by the benchmark suite; every number below was measured by this command in "
        "one run:",
        "",
        "```",
        res["command"],
        "```",
        "",
        f"- Started {res['started']}, finished {res.get('finished', 'n/a')}; mode "
        f"`{res['mode']}`; device `{res['device']}`; `torch.set_num_threads({res['threads']})` "
        "in every measuring process (DDP: split between the processes).",
        f"- Code: commit `{g['short']}`" + (" with uncommitted changes" if g["dirty"] else ""),
        f"- CPU: {m['cpu_model']}, {m['logical_cpus']} logical CPUs, flags "
        f"{', '.join(m['cpu_flags']) or 'n/a'} (torch CPU capability {m['torch_cpu_capability']},"
        f" oneDNN bf16 {'yes' if m['mkldnn_bf16'] else 'no'}); RAM {m['ram_gib']} GiB; "
        f"{m['platform']}, Python {m['python']}",
        f"- Load average (1/5/15 min) at start {_load(res['load_start'])}, at end "
        f"{_load(res.get('load_end'))}. The machine is shared: see each section's own load.",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
        "- GPU: " + (m["gpu"] or "none on this machine"),
        "",
        notes.METHOD,
    ]
    if "baseline" in res:
        b = res["baseline"]
        lines += [
            "",
            f'Baseline ("before") code: `{b["ref"]}` = commit `{b["commit"][:12]}`, '
            "measured in the same run as the current code.",
        ]
    lines += _targets(res)
    if "inference" in secs:
        sec = secs["inference"]
        exp = sec.get("export", {})
        lines += [
            "",
            "### Inference (R50-class detector, square input)",
            "",
            _section_load(sec),
            "",
            "ONNX: "
            + (
                exp.get("exporter", "") + f", {exp.get('seconds', 0):.0f} s"
                if "error" not in exp
                else "export failed: " + exp["error"]
            ),
            "",
        ]
        header = [
            "implementation",
            "precision",
            "batch",
            "warm-up+timed",
            "median ms",
            "min ms",
            "max ms",
            "images/s",
            "peak RSS GiB",
        ]
        lines += _table(header, _cell_rows(sec["cells"] + sec.get("baseline_cells", [])))
        lines += ["", *(f"Skipped: {s}." for s in res.get("skipped", []))]
        compiled = [c for c in sec["cells"] if c["spec"]["impl"] == "ours-compile" and "times" in c]
        if compiled:
            lines += [
                "",
                "torch.compile first call (compilation included): "
                + ", ".join(f"batch {c['spec']['batch']}: {c['first_s']:.0f} s" for c in compiled)
                + ".",
            ]
    if "training" in secs:
        sec = secs["training"]
        lines += [
            "",
            "### Training step (forward, loss with denoising, backward, AdamW)",
            "",
            _section_load(sec),
            "",
            notes.TRAINING,
            "",
        ]
        header = [
            "implementation",
            "precision",
            "batch",
            "warm-up+timed",
            "median ms",
            "min ms",
            "max ms",
            "images/s",
            "peak RSS GiB",
        ]
        lines += _table(header, _cell_rows(sec["cells"] + sec.get("baseline_cells", [])))
        opts = {c["spec"]["impl"]: c.get("optimizer") for c in sec["cells"] if "optimizer" in c}
        lines += ["", "Optimizers: " + "; ".join(f"{k}: {v}" for k, v in opts.items()) + "."]
    lines += _data(secs.get("data"))
    lines += _evaluation(secs.get("evaluation"))
    lines += _ddp(secs.get("ddp"))
    lines += _profiles(secs.get("profile"))
    if "baseline" in res:
        lines += ["", "### Before and after", "", notes.FIXES, ""]
        for name in ("inference", "training"):
            if name in secs and secs[name].get("baseline_cells"):
                base, now = res["baseline"]["commit"][:9], g["short"]
                cells, old = secs[name]["cells"], secs[name]["baseline_cells"]
                lines += [*before_after(cells, old, base, now), ""]
    lines += ["", notes.GPU, "", notes.REPRODUCE, ""]
    return "\n".join(lines)


def _targets(res: dict[str, Any]) -> list[str]:
    secs = res["sections"]
    lines = ["", "### Targets", ""]
    if "inference" in secs:
        lines += [
            "Inference: ours / transformers images/s at equal precision (target "
            f">= {TARGET}x); eager against eager, and our best CPU engine against eager.",
            "",
        ]
        header = [
            "precision",
            "batch",
            "transformers img/s",
            "ours eager img/s",
            "ratio",
            "ours best engine img/s",
            "ratio",
            "target (eager / best)",
            "ours eager / transformers channels_last",
        ]
        lines += [*_table(header, inference_summary(secs["inference"]["cells"])), ""]
    if "training" in secs:
        lines += [f"Training: ours / transformers images/s per step (target >= {TARGET}x).", ""]
        header = [
            "precision",
            "batch",
            "transformers img/s",
            "ours img/s",
            "ratio",
            "target",
            "ours / transformers channels_last",
        ]
        lines += [*_table(header, training_summary(secs["training"]["cells"])), ""]
    lines.append(notes.data_target(res))
    lines += _missed(res)
    return lines


def _conv_share(cell: dict[str, Any]) -> float:
    """Percent of self CPU time in convolution operators (forward and backward), from the
    profile's top rows (so a lower bound)."""
    return sum(e["self_pct"] for e in cell.get("top", []) if "conv" in e["name"])


def _missed(res: dict[str, Any]) -> list[str]:
    """Where the profiles put the time, for the targets this run missed."""
    prof = res["sections"].get("profile", {}).get("cells", [])
    parts = [
        f"{c['spec']['mode']} ({c['spec']['precision']}, batch {c['spec']['batch']}): "
        f"{_conv_share(c):.0f}%"
        for c in prof
        if "top" in c
    ]
    if not parts:
        return []
    return ["", notes.MISSED.format(shares="; ".join(parts))]


def _data(sec: dict[str, Any] | None) -> list[str]:
    if sec is None:
        return []
    r = sec["result"]
    lines = ["", "### Data pipeline (trainer dataset, TAO augmentations, collate)", ""]
    if "skipped" in r or "error" in r:
        return [*lines, "Not measured: " + r.get("skipped", r.get("error", ""))]
    s = r["spec"]
    lines += [_section_load(sec), "", notes.DATA.format(**s), ""]
    header = [
        "store",
        "store MiB",
        "decode only img/s",
        "DataLoader workers",
        "first batch s",
        "images timed",
        "images/s",
    ]
    rows = [
        [
            row["store"],
            f"{row['store_mib']:.0f}",
            f"{row['decode_images_per_s']:.1f}",
            str(row["workers"]),
            f"{row['first_batch_s']:.2f}",
            str(row["images"]),
            f"{row['images_per_s']:.2f}",
        ]
        for row in r["rows"]
    ]
    return lines + _table(header, rows)


def _evaluation(sec: dict[str, Any] | None) -> list[str]:
    if sec is None:
        return []
    r = sec["result"]
    lines = ["", "### COCO evaluation: pycocotools against faster-coco-eval", ""]
    if "error" in r:
        return [*lines, "Failed: " + r["error"]]
    lines += [
        _section_load(sec),
        "",
        f"{r['images']} images, {r['annotations']} boxes, {r['detections']} detections "
        "(synthetic, 7 classes, 100 per image); loadRes + evaluate + accumulate + "
        f"summarize, {len(next(iter(r['times'].values())))} repeats.",
        "",
    ]
    header = ["evaluator", "median s", "all runs s"]
    rows = [
        [k, f"{r['median_s'][k]:.2f}", ", ".join(f"{x:.2f}" for x in v)]
        for k, v in r["times"].items()
    ]
    lines += _table(header, rows)
    if "max_abs_diff_stats" in r:
        same = r["max_abs_diff_stats"] <= 1e-6 and r["max_abs_diff_ap50"] <= 1e-6
        lines += [
            "",
            f"Max abs difference of the 12 stats: {r['max_abs_diff_stats']:.3g}; of "
            f"per-class AP50: {r['max_abs_diff_ap50']:.3g}. "
            + (notes.EVAL_SAME if same else notes.EVAL_DIFFERENT),
        ]
    else:
        lines += ["", f"faster-coco-eval: {r['faster_coco_eval']}"]
    return lines


def _ddp(sec: dict[str, Any] | None) -> list[str]:
    if sec is None:
        return []
    lines = ["", "### Two-process DDP on CPU (gloo)", "", _section_load(sec), "", notes.DDP, ""]
    rows, rates = [], {}
    for r in sec["runs"]:
        s = r["spec"]
        if "error" in r:
            rows.append([str(s["world"]), "", "", "failed: " + r["error"][:160], "", ""])
            continue
        rate = s["global_batch"] / _med(r["times"])
        rates[s["world"]] = rate
        rows.append(
            [
                str(s["world"]),
                str(max(s["threads"] // s["world"], 1)),
                str(s["global_batch"]),
                f"{s['warmup']}+{s['iters']}",
                f"{1000 * _med(r['times']):.0f}",
                f"{rate:.3f}",
            ]
        )
    header = [
        "processes",
        "threads each",
        "global batch",
        "warm-up+timed",
        "median step ms",
        "images/s",
    ]
    lines += _table(header, rows)
    if 1 in rates and 2 in rates:
        lines += [
            "",
            f"Efficiency (2 processes / 1 process, same cores): {rates[2] / rates[1]:.2f}.",
        ]
    return lines


def _profiles(sec: dict[str, Any] | None) -> list[str]:
    if sec is None:
        return []
    lines = [
        "",
        "### Profiles of our model (torch.profiler, top operators by self CPU time)",
        "",
        _section_load(sec),
    ]
    for c in sec["cells"]:
        s = c["spec"]
        lines += [
            "",
            f"#### {s['mode']}: R{s['depth']}, batch {s['batch']}, {s['size']}x"
            f"{s['size']}, {s['precision']}",
            "",
        ]
        if "error" in c:
            lines.append("Failed: " + c["error"])
            continue
        lines.append(f"Profiled step wall time {c['profiled_s']:.2f} s (with profiler overhead).")
        lines.append("")
        rows = [
            [
                f"`{e['name']}`",
                f"{e['self_ms']:.0f}",
                f"{e['self_pct']:.1f}",
                f"{e['total_ms']:.0f}",
                str(e["calls"]),
            ]
            for e in c["top"]
        ]
        lines += _table(["operator", "self ms", "self %", "total ms", "calls"], rows)
    return lines
