"""``rtdetr-serve``'s arguments: every number out of range and every unwritable output is refused
in one line naming the flag, with exit 2, before anything is contacted, built or started."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from rtdetr_serving.annotate import save_atomic
from rtdetr_serving.bench import iter_schedule, schedule
from rtdetr_serving.cli import main
from rtdetr_serving.cli_args import build_parser

EXE = str(Path(sys.executable).with_name("rtdetr-serve"))


class Listener:
    """A TCP port that counts connections: proof that a refused command contacted nothing."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.accepted = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = tmp_path / "frame.png"
    Image.new("RGB", (32, 24), (90, 90, 90)).save(path)
    return str(path)


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """The one error line of a command that argparse (or the command) refused with exit 2."""
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def bad_numbers(tmp: str, image: str, url: str) -> list[tuple[list[str], str, str]]:
    """(argv, flag, value): each argv is valid except for ``flag value``."""
    local = ["local", "--model-repository", tmp]
    infer = ["infer", "--url", url, image]
    bench = ["bench", "--url", url, "--streams", "2", "--fps", "5"]
    plan = ["plan", "--fps", "30", "--streams", "4"]
    engine = ["build-engine", "--onnx", "m.onnx", "--gpu", "L4", "--output", tmp]
    repo = ["repository", "--onnx", "m.onnx", "--output", tmp, "--gpu", "L4"]
    cases = [
        (local, "--http-port", "99999"),
        (local, "--http-port", "0"),
        (local, "--grpc-port", "65536"),
        (local, "--metrics-port", "-1"),
        (local, "--log-verbose", "-1"),
        (local, "--exit-timeout", "-5"),
        (infer, "--threshold", "7"),
        (infer, "--threshold", "-0.1"),
        (infer, "--threshold", "nan"),
        (infer, "--batch", "0"),
        (infer, "--concurrency", "0"),
        (infer, "--timeout", "0"),
        (infer, "--timeout", "inf"),
        (infer, "--retries", "-1"),
        (bench, "--duration", "0"),
        (bench, "--duration", "inf"),
        (bench, "--tolerance", "2"),
        (bench, "--deadline-ms", "-1"),
        (bench, "--max-in-flight", "0"),
        (["bench", "--url", url, "--streams", "0", "--fps", "5"], "--streams", "0"),
        (["bench", "--url", url, "--streams", "1"], "--fps", "nan"),
        (["plan", "--streams", "4"], "--fps", "1e-300"),
        (["plan", "--streams", "4"], "--fps", "-30"),
        (["plan", "--streams", "4"], "--fps", "inf"),
        (["plan", "--fps", "30"], "--streams", "-5"),
        ([*plan, "--gpu", "L4", "--latency-ms", "30"], "--batch", "0"),
        ([*plan, "--gpu", "L4", "--batch", "8"], "--latency-ms", "0"),
        (plan, "--headroom", "1"),
        (plan, "--headroom", "nan"),
        (engine, "--max-batch", "0"),
        (engine, "--opt-batch", "-1"),
        (engine, "--workspace-gib", "0"),
        (engine, "--device", "-1"),
        (repo, "--cpu-max-batch", "0"),
        (repo, "--cpu-threads", "-1"),
    ]
    return cases


CASES = bad_numbers("TMP", "IMG", "URL")


@pytest.mark.parametrize(
    ("index", "flag", "value"),
    [(i, flag, value) for i, (_, flag, value) in enumerate(CASES)],
    ids=[f"{a[0]}{flag}={value}" for a, flag, value in CASES],
)
def test_every_number_out_of_range_is_named_with_its_range(
    index: int,
    flag: str,
    value: str,
    tmp_path: Path,
    image: str,
    listener: Listener,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv, _, _ = bad_numbers(str(tmp_path), image, listener.url)[index]
    line = refused([*argv, flag, value], capsys)
    assert f"argument {flag}:" in line and value in line, line
    assert "[" in line or "(" in line, f"no allowed range in {line!r}"
    assert listener.accepted == 0


def test_the_ends_of_each_range_are_accepted(tmp_path: Path) -> None:
    ap = build_parser("t")
    a = ap.parse_args(["local", "--model-repository", str(tmp_path), "--http-port", "65535",
                       "--grpc-port", "1"])  # fmt: skip
    assert (a.http_port, a.grpc_port) == (65535, 1)
    a = ap.parse_args(["plan", "--fps", "1000", "--streams", "1", "--headroom", "0"])
    assert (a.fps, a.streams, a.headroom) == (1000.0, 1, 0.0)
    png = tmp_path / "a.png"
    png.write_bytes(b"")
    for t in ("0", "1"):
        a = ap.parse_args(["infer", "--url", "h:1", str(png), "--threshold", t, "--batch", "1"])
        assert a.threshold == float(t) and a.batch == 1


@pytest.mark.parametrize("url", ["triton:99999", "http://triton:8000", "8000", "triton:"])
def test_a_url_is_host_and_a_real_port(
    url: str, image: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "argument --url:" in refused(["infer", "--url", url, image], capsys)


def test_ports_of_one_server_must_differ(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused before tritonserver is looked for: the repository here would not even load."""
    line = refused(["local", "--model-repository", str(tmp_path), "--http-port", "8001"], capsys)
    assert "--http-port 8001 is also --grpc-port" in line
    argv = ["local", "--model-repository", str(tmp_path), "--metrics-port", "8000"]
    assert "--http-port 8000 is also --metrics-port" in refused(argv, capsys)


# -- outputs ---------------------------------------------------------------------------------
def test_infer_refuses_an_unwritable_output_before_sending_anything(
    tmp_path: Path, image: str, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """A regular file where a folder should be stops root too (chmod would not)."""
    blocker = tmp_path / "results"
    blocker.write_text("not a folder")
    out = blocker / "r.json"
    line = refused(["infer", "--url", listener.url, image, "--output", str(out)], capsys)
    assert "argument --output:" in line and str(out) in line and "Not a directory" in line
    argv = ["infer", "--url", listener.url, image, "--annotate", str(blocker / "drawn")]
    line = refused(argv, capsys)
    assert "argument --annotate:" in line and "Not a directory" in line
    line = refused(["infer", "--url", listener.url, image, "--output", str(tmp_path)], capsys)
    assert "is a directory" in line
    assert listener.accepted == 0
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["bench", "--url", "h:1", "--streams", "1", "--fps", "1"], "--output"),
        (["build-engine", "--onnx", "m.onnx", "--gpu", "L4"], "--output"),
        (["build-engine", "--onnx", "m.onnx", "--gpu", "L4", "--output", "."], "--timing-cache"),
        (["repository", "--onnx", "m.onnx", "--gpu", "L4"], "--output"),
    ],
)
def test_every_output_is_checked_up_front(
    command: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    line = refused([*command, flag, str(blocker / "sub" / "out")], capsys)
    assert f"argument {flag}:" in line and str(blocker) in line and "Not a directory" in line


def test_missing_inputs_are_named_before_connecting(
    tmp_path: Path, image: str, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = str(tmp_path / "gone.png")
    line = refused(["infer", "--url", listener.url, image, gone], capsys)
    assert "gone.png" in line and "No such file" in line
    argv = ["bench", "--url", listener.url, "--streams", "1", "--fps", "1", "--image", gone]
    assert "argument --image:" in refused(argv, capsys)
    argv = ["local", "--model-repository", str(tmp_path / "nope")]
    assert "no such directory" in refused(argv, capsys)
    assert listener.accepted == 0


def test_a_failed_annotation_leaves_no_temporary_file(tmp_path: Path) -> None:
    (tmp_path / "frame.png").mkdir()  # the target name is taken by a folder: rename fails
    with pytest.raises(OSError):
        save_atomic(Image.new("RGB", (8, 8)), tmp_path / "frame.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame.png"]


# -- bench loads -----------------------------------------------------------------------------
def test_bench_refuses_a_load_no_gpu_could_serve_at_once(listener: Listener) -> None:
    """100000 streams x 1000 FPS used to hang with no output while a 10^9-frame list grew."""
    start = time.monotonic()
    p = subprocess.run(
        [EXE, "bench", "--url", listener.url, "--streams", "100000", "--fps", "1000"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert p.returncode == 2, p.stderr
    assert "--streams 100000 x --fps 1000" in p.stderr and "47400" in p.stderr, p.stderr
    assert "fastest catalog GPU (GB200)" in p.stderr and "Traceback" not in p.stderr
    assert time.monotonic() - start < 30 and listener.accepted == 0


def test_bench_caps_the_frames_one_run_keeps(
    listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["bench", "--url", listener.url, "--streams", "1500", "--fps", "30"]
    line = refused([*argv, "--duration", "3600"], capsys)
    assert "162000000 frames" in line and "5000000" in line and "--duration" in line
    assert listener.accepted == 0


def test_the_lazy_schedule_is_the_sorted_one() -> None:
    for streams, fps, duration in [(1, 1, 1), (3, 7, 2.5), (16, 30, 1), (5, 0.5, 10)]:
        frames = list(iter_schedule(streams, fps, duration))
        assert frames == sorted(frames, key=lambda f: (f.due, f.stream))
        assert frames == schedule(streams, fps, duration)
    first = next(iter_schedule(100_000, 1000, 10))  # made without building 10^9 frames
    assert (first.stream, first.index, first.due) == (0, 0, 0.0)


def test_an_os_error_after_parsing_is_one_line_naming_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The export manifest beside the ONNX is a folder: once a traceback, now one line, exit 1."""
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    (tmp_path / "m.manifest.json").mkdir()
    argv = ["repository", "--onnx", str(onnx), "--output", str(tmp_path / "r"), "--gpu", "L4"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Is a directory" in err and "m.manifest.json" in err, err


def test_infer_never_writes_over_its_inputs(
    tmp_path: Path, image: str, listener: Listener, capsys: pytest.CaptureFixture[str]
) -> None:
    """Annotating into the images' folder, or --output on an image, is refused before sending."""
    before = Path(image).read_bytes()
    base = ["infer", "--url", listener.url, image]
    line = refused([*base, "--annotate", str(Path(image).parent)], capsys)
    assert "--annotate" in line and "holds the input" in line and "frame.png" in line
    assert "one of the input images" in refused([*base, "--output", image], capsys)
    other = tmp_path / "b"
    other.mkdir()
    twin = other / "frame.png"
    twin.write_bytes(before)
    line = refused([*base, str(twin), "--annotate", str(tmp_path / "drawn")], capsys)
    assert "share the file name frame.png" in line
    assert Path(image).read_bytes() == before and listener.accepted == 0
