"""``rtdetr-operator``'s command line: one line and exit 2 for what cannot work, never a traceback;
custom resources in the denied namespaces are never reconciled."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rtdetr_operator.cli import main, parse_args
from rtdetr_operator.scope import DEFAULT_DENIED_NAMESPACES, NamespaceGate


def _refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--workers", "0"], "argument --workers: must be a whole number >= 1, got 0"),
        (["--workers", "two"], "argument --workers: must be a whole number >= 1, got 'two'"),
        (["--stuck-grace", "-1"], "argument --stuck-grace: must be a finite number of seconds"),
        (["--resync", "nan"], "argument --resync: must be a finite number of seconds > 0"),
        (["--resync", "inf"], "argument --resync: must be a finite number of seconds > 0"),
        (["-n", "kube-system"], "--namespace kube-system: denied by --deny-namespaces"),
        (["--metrics-port", "70000"], "argument --metrics-port: must be a port number 0-65535"),
        (["--metrics-port", "http"], "argument --metrics-port: must be a port number 0-65535"),
        (["--progress-interval", "0"], "argument --progress-interval: must be a finite number"),
    ],
)
def test_flags_that_cannot_work_are_refused(capsys, argv: list[str], expected: str) -> None:
    assert expected in _refused(capsys, argv)


def _kubeconfig_error(capsys: pytest.CaptureFixture[str], path: Path) -> str:
    assert main(["--kubeconfig", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err.strip()


def test_a_missing_kubeconfig_is_named(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert f"{missing}: no such file" in _kubeconfig_error(capsys, missing)


def test_a_kubeconfig_that_is_not_yaml_is_named_with_the_line(capsys, tmp_path: Path) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text("apiVersion: v1\nclusters: [\n")
    err = _kubeconfig_error(capsys, bad)
    assert f"{bad}: invalid YAML (line 3" in err


@pytest.mark.parametrize("content", ["just a string\n", "- a\n- list\n"])
def test_a_kubeconfig_that_is_not_a_mapping_is_named(capsys, tmp_path, content: str) -> None:
    bad = tmp_path / "kubeconfig"
    bad.write_text(content)
    assert f"{bad}: not a kubeconfig" in _kubeconfig_error(capsys, bad)


def test_a_directory_as_kubeconfig_is_named(capsys, tmp_path: Path) -> None:
    assert f"{tmp_path}: not a file" in _kubeconfig_error(capsys, tmp_path)


def test_a_kubeconfig_without_a_context_is_named(capsys, tmp_path: Path) -> None:
    empty = tmp_path / "kubeconfig"
    empty.write_text("apiVersion: v1\nclusters: []\n")
    assert str(empty) in _kubeconfig_error(capsys, empty)


def test_a_refused_start_leaves_logging_as_it_found_it(capsys, tmp_path: Path) -> None:
    # A handler bound to this call's stderr would outlive it and write into a closed stream.
    root = logging.getLogger()
    before = list(root.handlers)
    _kubeconfig_error(capsys, tmp_path / "nope.yaml")
    assert root.handlers == before


def test_the_control_plane_namespaces_are_denied_by_default() -> None:
    args = parse_args([])
    assert args.deny_namespaces == list(DEFAULT_DENIED_NAMESPACES)
    assert parse_args(["--deny-namespaces", ""]).deny_namespaces == []
    assert parse_args(["--deny-namespaces", "a, b"]).deny_namespaces == ["a", "b"]
    assert not parse_args([]).allow_node_volumes
    assert parse_args(["--allow-node-volumes"]).allow_node_volumes


def test_the_gate_skips_denied_namespaces_and_says_so_once(caplog) -> None:
    gate = NamespaceGate(DEFAULT_DENIED_NAMESPACES)
    with caplog.at_level(logging.WARNING, logger="rtdetr_operator"):
        assert gate.allows("ml", "RTDETRTraining", "a")
        assert not gate.allows("kube-system", "RTDETRTraining", "a")
        assert not gate.allows("kube-system", "RTDETRDeployment", "b")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "kube-system/a" in lines[0] and "--deny-namespaces" in lines[0]
