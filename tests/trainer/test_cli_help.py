"""The three command lines: --version, help text and a default on every option, examples that
the spec schema accepts, and progress bars only on a terminal."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from rtdetr_spec import load_experiment
from rtdetr_spec.cli_help import (
    NO_PROGRESS_ENV,
    options_without_help,
    progress,
    progress_wanted,
    subparsers,
    version,
)

ROOT = Path(__file__).resolve().parents[2]


def _parsers():
    from rtdetr_operator.cli_args import build_parser as operator_parser
    from rtdetr_serving.cli_args import build_parser as serve_parser
    from rtdetr_trainer.cli import build_parser as trainer_parser

    return {"rtdetr": trainer_parser(), "rtdetr-serve": serve_parser("x"), "rtdetr-operator":
            operator_parser()}  # fmt: skip


@pytest.mark.parametrize("prog", ["rtdetr", "rtdetr-serve", "rtdetr-operator"])
def test_version_everywhere(prog: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _parsers()[prog].parse_args(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"{prog} {version()}"
    assert version() != "unknown"


def test_every_option_of_every_command_has_help() -> None:
    for prog, parser in _parsers().items():
        assert options_without_help(parser) == [], prog


def test_help_shows_defaults_but_not_empty_ones() -> None:
    parsers = _parsers()
    helps = {path: p.format_help() for path, p in subparsers(parsers["rtdetr"])}
    synth = " ".join(helps["rtdetr dataset synth"].split())
    assert "(default: 60)" in synth and "(default: 0)" in synth  # --num-images, --seed
    assert "(default: None)" not in synth and "(default: False)" not in synth
    serve = {path: p.format_help() for path, p in subparsers(parsers["rtdetr-serve"])}
    assert "(default: 8000)" in serve["rtdetr-serve local"]
    assert "(default: json)" in parsers["rtdetr-operator"].format_help()


def test_task_examples_use_keys_the_spec_accepts() -> None:
    parsers = _parsers()
    found = 0
    for prog in ("rtdetr", "rtdetr-serve"):
        for path, p in subparsers(parsers[prog]):
            if path.count(" ") != 1 or path.startswith(("rtdetr dataset", "rtdetr-serve tritons")):
                continue
            assert p.epilog and p.epilog.startswith("example"), path
            if prog != "rtdetr":
                continue
            text = p.epilog.replace("\\\n", " ")
            for line in text.splitlines():
                words = shlex.split(line)
                if words[:2] != path.split():
                    continue
                overrides = [w for w in words if "=" in w and not w.startswith("-e")]
                load_experiment(ROOT / "examples/specs/rtdetr_r50_warehouse.yaml", overrides)
                found += 1
    assert found >= 7


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NO_PROGRESS_ENV, raising=False)
    leader, follower = os.openpty()
    with open(follower, "w") as tty, open(os.devnull, "w") as pipe:
        assert progress_wanted(stream=tty) and not progress_wanted(stream=pipe)
        assert not progress_wanted(True, stream=tty)  # --no-progress
        monkeypatch.setenv(NO_PROGRESS_ENV, "1")
        assert not progress_wanted(stream=tty)
        monkeypatch.setenv(NO_PROGRESS_ENV, "0")
        assert progress_wanted(stream=tty)
    os.close(leader)
    assert list(progress(range(5), desc="x")) == [0, 1, 2, 3, 4]  # stderr is not a tty here


def test_training_progress_falls_back_to_lines_when_told(monkeypatch: pytest.MonkeyPatch) -> None:
    from rtdetr_trainer.engine.progress import Progress

    leader, follower = os.openpty()
    with open(follower, "w") as tty:
        monkeypatch.setenv(NO_PROGRESS_ENV, "1")
        assert not Progress(epoch=0, num_epochs=1, total=3, stream=tty).tty
        monkeypatch.setenv(NO_PROGRESS_ENV, "0")
        bar = Progress(epoch=0, num_epochs=1, total=3, stream=tty)
        assert bar.tty
        bar.close()
    os.close(leader)
