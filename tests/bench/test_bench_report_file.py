"""docs/benchmarks.md is shared: the suite rewrites only its marked block (the operator's scale
section beside it is hand-written), and argument errors name the flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.__main__ import BEGIN, END, write_report

REPO = Path(__file__).resolve().parents[2]


def test_block_is_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"# Benchmarks\n\nintro\n\n{BEGIN}\nold numbers\n{END}\n\n## Operator\n\nrows\n")
    write_report(doc, "## Model\n\nnew numbers\n")
    text = doc.read_text()
    assert "old numbers" not in text
    assert text.startswith("# Benchmarks\n\nintro\n\n")
    assert f"{BEGIN}\n## Model\n\nnew numbers\n{END}\n" in text
    assert text.endswith("## Operator\n\nrows\n")
    write_report(doc, "## Model\n\nnew numbers\n")  # idempotent
    assert doc.read_text() == text


def test_a_file_without_markers_gets_the_block_appended(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Operator\n")
    write_report(doc, "## Model\n")
    assert doc.read_text() == f"# Benchmarks\n\n## Operator\n\n{BEGIN}\n## Model\n{END}\n"
    fresh = tmp_path / "new.md"
    write_report(fresh, "## Model\n")
    assert fresh.read_text() == f"{BEGIN}\n## Model\n{END}\n"


def test_batches_outside_the_mode_are_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--micro", "--batches", "8", "--output",
         str(tmp_path / "b.md")],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "--batches: [8] not in the micro mode's (1,)" in proc.stderr
    assert not (tmp_path / "b.md").exists()
