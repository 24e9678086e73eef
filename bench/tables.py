"""The report's building blocks: cell lookup, rates, ratios against the peer, Markdown tables.

Everything here reads the raw results of one run (``docs/benchmarks.json``); nothing is
measured or hard-coded, so ``python -m bench --render`` reproduces a report from its JSON.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

IMPL_NAMES = {
    "ours": "ours, PyTorch eager",
    "ours-compile": "ours, torch.compile (inductor, freezing)",
    "ort": "ours, onnxruntime CPU (exported ONNX)",
    "hf": "transformers RTDetrForObjectDetection, eager",
}
TARGET = 1.5


def median_of(times: list[float]) -> float:
    return statistics.median(times)


def images_per_s(cell: dict[str, Any]) -> float | None:
    if "error" in cell or not cell.get("times"):
        return None
    return cell["spec"]["batch"] / median_of(cell["times"])


def load_text(v: Iterable[float] | None) -> str:
    return "n/a" if v is None else " / ".join(f"{x:.2f}" for x in v)


def fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def section_load(sec: dict[str, Any]) -> str:
    return (
        f"Load average (1/5/15 min) at section start {load_text(sec.get('load_start'))}, "
        f"end {load_text(sec.get('load_end'))}; section wall time {sec.get('seconds', 0):.0f} s."
    )


def cell_rows(cells: list[dict[str, Any]]) -> list[list[str]]:
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
                f"{1000 * median_of(t):.0f}",
                f"{1000 * min(t):.0f}",
                f"{1000 * max(t):.0f}",
                f"{images_per_s(c):.2f}",
                f"{c.get('peak_rss_gib', float('nan')):.1f}",
            ]
        )
    return rows


def find_cell(
    cells: list[dict[str, Any]], impl: str, precision: str, batch: int, cl: bool = False
) -> dict | None:
    """The cell of an implementation; ``cl`` selects the peer run channels_last."""
    for c in cells:
        s = c["spec"]
        key = (s["impl"], s["precision"], s["batch"], bool(s.get("channels_last")))
        if key == (impl, precision, batch, cl) and not s.get("cuda_graphs"):
            return c
    return None


def ratio_of(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def verdict(r: float | None, target: float = TARGET) -> str:
    if r is None:
        return "not measured"
    return "met" if r >= target else "missed"


def inference_summary(cells: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    batches = sorted({c["spec"]["batch"] for c in cells})
    for precision in ("fp32", "bf16"):
        for b in batches:
            hf = find_cell(cells, "hf", precision, b)
            if hf is None:
                continue
            hf_rate = images_per_s(hf)
            eager = images_per_s(find_cell(cells, "ours", precision, b) or {"error": 1})
            best_name, best = "ours eager", eager
            for impl in ("ours-compile", "ort"):
                c = find_cell(cells, impl, precision, b)
                if (
                    c is not None
                    and (r := images_per_s(c)) is not None
                    and (best is None or r > best)
                ):
                    best_name, best = IMPL_NAMES[impl].removeprefix("ours, "), r
            r_eager, r_best = ratio_of(eager, hf_rate), ratio_of(best, hf_rate)
            hf_cl = find_cell(cells, "hf", precision, b, cl=True)
            r_cl = ratio_of(eager, images_per_s(hf_cl) if hf_cl else None)
            rows.append(
                [
                    precision,
                    str(b),
                    fmt(hf_rate),
                    fmt(eager),
                    fmt(r_eager) + "x",
                    f"{best_name}: {fmt(best)}",
                    fmt(r_best) + "x",
                    verdict(r_eager) + " / " + verdict(r_best),
                    fmt(r_cl) + "x",
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
            hf = find_cell(cells, "hf", precision, s["batch"])
            hf_cl = find_cell(cells, "hf", precision, s["batch"], cl=True)
            r = ratio_of(images_per_s(c), images_per_s(hf) if hf else None)
            r_cl = ratio_of(images_per_s(c), images_per_s(hf_cl) if hf_cl else None)
            rows.append(
                [
                    precision,
                    str(s["batch"]),
                    fmt(images_per_s(hf) if hf else None, 3),
                    fmt(images_per_s(c), 3),
                    fmt(r) + "x",
                    verdict(r),
                    fmt(r_cl) + "x",
                ]
            )
    return rows


def before_after(current: list[dict], baseline: list[dict], base: str, now: str) -> list[str]:
    rows = []
    for old in baseline:
        s = old["spec"]
        new = find_cell(current, s["impl"], s["precision"], s["batch"])
        r_old, r_new = images_per_s(old), images_per_s(new) if new else None
        rows.append(
            [
                s["kind"],
                s["precision"],
                str(s["batch"]),
                fmt(r_old, 3),
                fmt(r_new, 3),
                fmt(ratio_of(r_new, r_old)) + "x",
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
    return md_table(header, rows)
