"""Rules of the codebase a reviewer would otherwise have to remember.

* No product module over :data:`MAX_LINES` lines: past that a module holds more than one idea.
* No module imports one of ours by a string (``import_module("rtdetr_...")``): such an import
  is invisible to import-linter, so it could hide the very cycle its contracts forbid.
* NVIDIA's model card and its TAO spec are called by those names, never "the seed".
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("spec", "trainer", "operator", "serving")
MAX_LINES = 400


def _product_modules() -> list[Path]:
    return sorted(p for d in PACKAGES for p in (ROOT / d).rglob("rtdetr_*/**/*.py"))


def test_the_product_packages_are_found() -> None:
    names = {p.parts[len(ROOT.parts) + 1] for p in _product_modules()}
    assert names == {"rtdetr_spec", "rtdetr_trainer", "rtdetr_operator", "rtdetr_serving"}


def test_no_product_module_is_over_the_line_limit() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _product_modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


def _string_imports(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        arg = node.args[0]
        if (
            name in ("import_module", "__import__")
            and isinstance(arg, ast.Constant)
            and str(arg.value).startswith("rtdetr_")
        ):
            found.append(str(arg.value))
    return found


@pytest.mark.parametrize(
    ("source", "found"),
    [
        (
            "import importlib\nimportlib.import_module('rtdetr_trainer.export')",
            ["rtdetr_trainer.export"],
        ),
        ("from importlib import import_module as im\nim('numpy')", []),
        ("__import__('rtdetr_serving.cli')", ["rtdetr_serving.cli"]),
    ],
)
def test_the_string_import_check_sees_them(source: str, found: list[str]) -> None:
    assert _string_imports(ast.parse(source)) == found


def test_no_module_imports_ours_by_a_string() -> None:
    offenders = {
        str(p.relative_to(ROOT)): hits
        for p in _product_modules()
        if (hits := _string_imports(ast.parse(p.read_text())))
    }
    assert offenders == {}, f"import these normally (import-linter cannot see them): {offenders}"


def test_nothing_calls_the_model_card_the_seed() -> None:
    files = subprocess.run(
        ["git", "ls-files", "*.py", "*.md", "*.yaml", "*.txt"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    if not files:
        pytest.skip("not a git checkout")
    jargon = re.compile(r"\bthe seed('s)?\b(?! (of|for|value|number))", re.IGNORECASE)
    hits = [
        f"{name}:{i}"
        for name in files
        if name != "tests/test_code_layout.py" and (path := ROOT / name).is_file()
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if jargon.search(line)
    ]
    assert hits == [], f"say NVIDIA's model card or the TAO spec instead: {hits}"


def _cycles(package: str) -> list[list[str]]:
    """Import cycles between the modules of ``package`` (strongly connected components)."""
    import grimp

    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & set(modules)) for m in modules}
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(m: str) -> None:
        order[m] = low[m] = len(order)
        stack.append(m)
        for n in edges[m]:
            if n not in order:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in stack:
                low[m] = min(low[m], order[n])
        if low[m] == order[m]:
            component = []
            while True:
                n = stack.pop()
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for m in modules:
        if m not in order:
            visit(m)
    return found


@pytest.mark.parametrize("package", ["clusterkit", "imagekit"])
def test_the_cluster_and_image_tooling_has_no_import_cycle(package: str) -> None:
    assert _cycles(package) == []
