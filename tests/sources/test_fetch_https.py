"""The downloader against a real local HTTPS server (a self-signed CA made for the test)."""

from __future__ import annotations

import hashlib
import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtdetr_spec.sources.fetch import Fetcher, FetchError
from rtdetr_spec.sources.uri import parse

PAYLOAD = bytes(range(256)) * 4096 * 3  # 3 MiB: several chunks
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Server:
    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.fail_next = 0
        self.cut_after: int | None = None


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made with openssl."""
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "ext.cnf", "-out", "server.crt")  # fmt: skip
    return d / "ca.crt", d / "server.crt", d / "server.key"


@pytest.fixture
def server(tls: tuple[Path, Path, Path]) -> Iterator[tuple[_Server, str, ssl.SSLContext]]:
    ca, cert, key = tls
    state = _Server()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            state.requests.append(dict(self.headers))
            if state.fail_next:
                state.fail_next -= 1
                self.send_error(503)
                return
            start = 0
            if rng := self.headers.get("Range"):
                start = int(rng.removeprefix("bytes=").rstrip("-"))
                self.send_response(206)
            else:
                self.send_response(200)
            body = PAYLOAD[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:  # drop the connection mid-body, once
                self.wfile.write(body[: state.cut_after])
                state.cut_after = None
                self.close_connection = True
                return
            self.wfile.write(body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    client = ssl.create_default_context(cafile=str(ca))
    yield state, f"https://127.0.0.1:{httpd.server_address[1]}/models/r50.pth", client
    httpd.shutdown()


def test_download_verifies_and_a_second_fetch_downloads_nothing(server, tmp_path: Path) -> None:
    state, url, ctx = server
    seen: list[tuple[int, int | None]] = []
    f = Fetcher(tmp_path, ssl_context=ctx, progress=lambda d, t: seen.append((d, t)))
    path = f.fetch(parse(url, sha256=DIGEST), DIGEST)
    assert path == tmp_path / "sha256" / DIGEST and path.read_bytes() == PAYLOAD
    assert f.transferred == len(PAYLOAD) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    again = Fetcher(tmp_path, ssl_context=ctx)
    assert again.fetch(parse(url, sha256=DIGEST), DIGEST) == path
    assert again.transferred == 0 and len(state.requests) == 1


def test_an_interrupted_download_resumes_with_a_range_request(server, tmp_path: Path) -> None:
    state, url, ctx = server
    state.cut_after = 1_000_000
    f = Fetcher(tmp_path, ssl_context=ctx, backoff=0.01)
    assert f.fetch(parse(url, sha256=DIGEST), DIGEST).read_bytes() == PAYLOAD
    assert state.requests[-1].get("Range") == "bytes=1000000-"
    assert f.transferred == len(PAYLOAD)  # nothing fetched twice


def test_server_errors_are_retried_then_reported(server, tmp_path: Path) -> None:
    state, url, ctx = server
    state.fail_next = 2
    assert Fetcher(tmp_path, ssl_context=ctx, backoff=0.01).fetch(parse(url, sha256=DIGEST), DIGEST)
    state.fail_next = 10
    with pytest.raises(FetchError, match=r"r50\.pth: HTTP 503"):
        Fetcher(tmp_path / "b", ssl_context=ctx, retries=2, backoff=0.01).fetch(
            parse(url, sha256=DIGEST), DIGEST
        )


def test_a_wrong_sha256_is_refused_and_nothing_is_cached(server, tmp_path: Path) -> None:
    _, url, ctx = server
    wrong = "0" * 64
    with pytest.raises(FetchError, match=f"does not match the expected {wrong}"):
        Fetcher(tmp_path, ssl_context=ctx).fetch(parse(url, sha256=wrong), wrong)
    assert not list((tmp_path / "sha256").glob("*")) if (tmp_path / "sha256").exists() else True
    assert not list((tmp_path / "partial").iterdir())


def test_an_untrusted_certificate_is_refused(server, tmp_path: Path) -> None:
    _, url, _ = server
    with pytest.raises(FetchError, match="CERTIFICATE_VERIFY_FAILED"):
        Fetcher(tmp_path, retries=0).fetch(parse(url, sha256=DIGEST), DIGEST)


def test_the_container_command_fetches_links_and_summarises(
    server, tls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from rtdetr_spec.sources.__main__ import main
    from rtdetr_spec.sources.report import FetchProgress, parse_line

    _, url, _ = server
    monkeypatch.setenv("SSL_CERT_FILE", str(tls[0]))
    link, summary = tmp_path / "w" / "r50.pth", tmp_path / "summary.json"
    argv = ["fetch", "--uri", url, "--sha256", DIGEST, "--cache", str(tmp_path / "c")]
    assert main([*argv, "--link", str(link), "--summary", str(summary)]) == 0
    assert link.read_bytes() == PAYLOAD
    first = json.loads(summary.read_text())
    assert first["size"] == len(PAYLOAD) and first["cached"] is False
    lines = capsys.readouterr().out.splitlines()
    assert parse_line(lines[-2]) == FetchProgress(len(PAYLOAD), len(PAYLOAD))
    assert main([*argv, "--summary", str(summary)]) == 0
    assert json.loads(summary.read_text())["cached"] is True
    assert main(["fetch", "--uri", url, "--cache", str(tmp_path)]) == 2
    assert "needs its sha256" in capsys.readouterr().err
