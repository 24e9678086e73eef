"""The downloader against a real S3 server on loopback (SeaweedFS, built by hack/s3server.py)."""

from __future__ import annotations

import hashlib
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
