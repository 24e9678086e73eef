"""The downloader against a real S3 server on loopback (SeaweedFS, built by hack/s3server.py)."""

from __future__ import annotations

import hashlib
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtdetr_spec.sources.fetch import Fetcher, FetchError, S3Settings
from rtdetr_spec.sources.uri import parse

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack"))
import s3server

pytestmark = pytest.mark.slow  # the first run builds the server (minutes, then cached)

ACCESS, SECRET = "rtdetr-test", "s3cr3t-never-logged"
PAYLOAD = bytes(range(256)) * 4096 * 5  # 5 MiB


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    server = s3server.start(tmp_path_factory.mktemp("weed"), ACCESS, SECRET)
    settings = S3Settings(endpoint=server.endpoint, access_key=ACCESS, secret_key=SECRET)
    client = settings.client()
    deadline_tries = 60
    for _ in range(deadline_tries):  # the filer behind the S3 port needs a moment
        try:
            client.create_bucket(Bucket="warehouse")
            break
        except Exception:
            import time

            time.sleep(1)
    client.put_object(Bucket="warehouse", Key="pretrained/r50.pth", Body=PAYLOAD)
    yield settings
    server.stop()


def test_an_object_downloads_once_then_comes_from_the_cache(s3: S3Settings, tmp_path: Path) -> None:
    src = parse("s3://warehouse/pretrained/r50.pth")
    first = Fetcher(tmp_path, s3=s3)
    path = first.fetch(src)
    assert path.read_bytes() == PAYLOAD
    assert path.name == hashlib.sha256(PAYLOAD).hexdigest() and first.transferred == len(PAYLOAD)
    second = Fetcher(tmp_path, s3=s3)
    assert second.fetch(src) == path and second.transferred == 0  # ETag + size known


def test_a_partial_download_resumes_with_a_ranged_get(s3: S3Settings, tmp_path: Path) -> None:
    src = parse("s3://warehouse/pretrained/r50.pth")
    f = Fetcher(tmp_path, s3=s3)
    head = s3.client().head_object(Bucket="warehouse", Key="pretrained/r50.pth")
    etag = str(head["ETag"]).strip('"')
    identity = hashlib.sha256(
        f"{s3.endpoint}\0warehouse\0pretrained/r50.pth\0{etag}\0{len(PAYLOAD)}".encode()
    ).hexdigest()
    part = tmp_path / "partial" / f"r50.pth.{identity[:16]}.{socket.gethostname()}"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:2_000_000])
    assert f.fetch(src).read_bytes() == PAYLOAD
    assert f.transferred == len(PAYLOAD) - 2_000_000


def test_wrong_credentials_and_missing_objects_are_named_without_secrets(
    s3: S3Settings, tmp_path: Path
) -> None:
    bad = S3Settings(endpoint=s3.endpoint, access_key=ACCESS, secret_key="wrong-" + SECRET)
    with pytest.raises(FetchError) as e:
        Fetcher(tmp_path, s3=bad, retries=0).fetch(parse("s3://warehouse/pretrained/r50.pth"))
    assert "s3://warehouse/pretrained/r50.pth" in str(e.value) and SECRET not in str(e.value)
    with pytest.raises(FetchError, match=r"s3://warehouse/nope\.pth"):
        Fetcher(tmp_path, s3=s3, retries=0).fetch(parse("s3://warehouse/nope.pth"))


FOLDER = {"images/a.jpg": b"A" * 3000, "images/sub/b.jpg": b"B" * 70_000, "train.json": b"{}"}


def _put_folder(s3: S3Settings, prefix: str) -> None:
    client = s3.client()
    client.put_object(Bucket="warehouse", Key=prefix, Body=b"")  # a console's folder marker
    for key, body in FOLDER.items():
        client.put_object(Bucket="warehouse", Key=prefix + key, Body=body)


def test_a_folder_downloads_every_object_once(s3: S3Settings, tmp_path: Path) -> None:
    _put_folder(s3, "datasets/v1/")
    src = parse("s3://warehouse/datasets/v1/")
    seen: list[tuple[int, int | None]] = []
    first = Fetcher(tmp_path, s3=s3, progress=lambda d, t: seen.append((d, t)))
    files = dict(first.fetch_folder(src))
    assert {k: v.read_bytes() for k, v in files.items()} == FOLDER
    assert first.transferred == sum(len(b) for b in FOLDER.values())
    assert seen[-1] == (first.transferred, first.transferred)  # over the folder, not per file
    second = Fetcher(tmp_path, s3=s3)
    assert dict(second.fetch_folder(src)) == files and second.transferred == 0  # one LIST


def test_an_empty_or_missing_folder_is_named(s3: S3Settings, tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"s3://warehouse/nothing/here/: no objects"):
        Fetcher(tmp_path, s3=s3, retries=0).fetch_folder(parse("s3://warehouse/nothing/here/"))


def test_the_command_links_a_folder_and_summarizes_it(
    s3: S3Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from rtdetr_spec.sources.__main__ import main

    _put_folder(s3, "datasets/v2/")
    for key, value in (
        ("AWS_ENDPOINT_URL_S3", str(s3.endpoint)),
        ("AWS_ACCESS_KEY_ID", ACCESS),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ):
        monkeypatch.setenv(key, value)
    link, summary = tmp_path / "links" / "0", tmp_path / "summary.json"
    argv = ["fetch", "--uri", "s3://warehouse/datasets/v2/", "--cache", str(tmp_path / "c")]
    argv += ["--link", str(link), "--summary", str(summary)]
    assert main(argv) == 0
    assert (link / "images" / "sub" / "b.jpg").read_bytes() == FOLDER["images/sub/b.jpg"]
    assert sorted(str(p.relative_to(link)) for p in link.rglob("*") if p.is_file()) == sorted(
        FOLDER
    )
    first = json.loads(summary.read_text())
    assert first["files"] == 3 and first["size"] == sum(len(b) for b in FOLDER.values())
    assert first["transferred"] == first["size"] and first["cached"] is False
    assert main(argv) == 0  # a restarted pod: links replaced, nothing downloaded
    second = json.loads(summary.read_text())
    assert second["cached"] is True and second["sha256"] == first["sha256"]
    assert (link / "train.json").read_bytes() == b"{}"
    assert SECRET not in capsys.readouterr().out
