"""Download a source into a cache folder keyed by content digest; torch-free.

Layout of the cache (a volume shared by the runs that use it)::

    <cache>/sha256/<hex>             a verified file, named by its sha256
    <cache>/s3/<sha256 of endpoint, bucket, key, etag, size>   -> a link to sha256/<hex>
    <cache>/partial/<name>.<id>.<host>   a download in progress (resumed from its size)

An https (or hf, ngc) source names its sha256, so a cache holding ``sha256/<hex>`` downloads
nothing. An S3 object is identified by its ETag and size (one HEAD request, or the listing of an
S3 folder): a cache that already holds that identity downloads nothing either; otherwise the
object is downloaded, its sha256 computed and stored like any other file. Every download writes
to ``partial/``, resumes from the bytes already there (HTTP ``Range``, S3 ranged GET) and is
retried with backoff; a finished file is verified before it is renamed into ``sha256/``, so the
cache never holds an unverified file. Progress (bytes done, total) goes to a callback. Nothing
here logs or returns a credential: errors name the source by its URI, which carries none (uri.py
refuses them).
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtdetr_spec.sources.uri import SourceURI

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]


class FetchError(RuntimeError):
    """A source that could not be fetched (after retries); the message names the URI."""


@dataclass(frozen=True)
class S3Settings:
    """Where and as whom S3 objects are read (credentials come from a Secret's env)."""

    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Settings:
        e = dict(os.environ if env is None else env)
        return cls(
            endpoint=e.get("AWS_ENDPOINT_URL_S3") or e.get("AWS_ENDPOINT_URL") or None,
            access_key=e.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=e.get("AWS_SECRET_ACCESS_KEY") or None,
            region=e.get("AWS_REGION") or "us-east-1",
        )

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(retries={"max_attempts": 3}, s3={"addressing_style": "path"}),
        )


@dataclass
class Fetcher:
    """Fetch sources into ``cache``; see the module docstring."""

    cache: Path
    s3: S3Settings = field(default_factory=S3Settings)
    ssl_context: ssl.SSLContext | None = None
    headers: dict[str, str] = field(default_factory=dict)
    retries: int = 4
    backoff: float = 0.5
    progress: Progress | None = None
    #: Bytes actually transferred by this fetcher (0 when everything came from the cache).
    transferred: int = 0

    def path_for(self, digest: str) -> Path:
        return self.cache / "sha256" / digest

    def fetch(self, source: SourceURI, sha256: str | None = None) -> Path:
        """The verified cached file of ``source`` (downloaded unless the cache holds it)."""
        if source.scheme == "s3":
            return self._fetch_s3(source, sha256)
        assert source.url is not None and sha256 is not None, "https sources carry a sha256"
        final = self.path_for(sha256)
        if final.is_file():
            return final
        part = self._part(source.name, sha256)
        self._retrying(source, lambda: self._http_to(source.url or "", part))
        return self._commit(source, part, sha256)

    # ------------------------------------------------------------------------- https
    def _http_to(self, url: str, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        req = urllib.request.Request(url, headers=dict(self.headers))
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            resp = urllib.request.urlopen(req, context=self.ssl_context, timeout=60)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the part is already complete
                return
            raise
        with resp:
            if have and resp.status != 206:  # the server ignored Range: start again
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            with part.open("ab" if have else "wb") as out:
                self._copy(resp.read, out, have, total)

    # ---------------------------------------------------------------------------- s3
    def _fetch_s3(self, source: SourceURI, sha256: str | None) -> Path:
        if sha256 is not None and self.path_for(sha256).is_file():
            return self.path_for(sha256)
        client = self.s3.client()
        try:
            head = client.head_object(Bucket=source.bucket, Key=source.key)
        except Exception as e:  # botocore's errors carry no credentials
            raise FetchError(f"s3://{source.bucket}/{source.key}: {_why(e)}") from None
        size, etag = int(head["ContentLength"]), str(head.get("ETag", ""))
        return self._s3_object(client, source, str(source.key), size, etag, sha256)

    def fetch_folder(self, source: SourceURI) -> list[tuple[str, Path]]:
        """Every object under an S3 folder (a key ending in ``/``): ``(relative path, file)``.

        One listing gives each object's ETag and size, so a warm cache costs one LIST request
        per 1000 objects and no HEAD or GET at all.
        """
        assert source.is_folder, "fetch_folder takes an s3:// URI ending in /"
        client = self.s3.client()
        prefix = str(source.key)
        objects: list[tuple[str, int, str]] = []
        try:
            for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=source.bucket, Prefix=prefix
            ):
                for o in page.get("Contents") or []:
                    if not str(o["Key"]).endswith("/"):  # folder markers hold nothing
                        objects.append((str(o["Key"]), int(o["Size"]), str(o.get("ETag", ""))))
        except Exception as e:  # botocore's errors carry no credentials
            raise FetchError(f"s3://{source.bucket}/{prefix}: {_why(e)}") from None
        if not objects:
            raise FetchError(f"s3://{source.bucket}/{prefix}: no objects under this folder")
        out = []
        outer, total, base = self.progress, sum(o[1] for o in objects), 0
        try:
            for key, size, etag in sorted(objects):
                relative = key[len(prefix) :]
                if any(p in ("", ".", "..") for p in relative.split("/")):
                    raise FetchError(f"s3://{source.bucket}/{key}: not a plain relative path")
                if outer is not None:  # progress over the whole folder, not per object
                    self.progress = lambda done, _total, b=base: outer(b + done, total)
                item = SourceURI("s3", bucket=source.bucket, key=key, name=relative.split("/")[-1])
                out.append((relative, self._s3_object(client, item, key, size, etag, None)))
                base += size
        finally:
            self.progress = outer
        return out

    def _s3_object(
        self, client: Any, source: SourceURI, key: str, size: int, etag: str, sha256: str | None
    ) -> Path:
        """The cached file of one object, identified by endpoint, bucket, key, ETag and size."""
        etag = etag.strip('"')
        identity = hashlib.sha256(
            f"{self.s3.endpoint}\0{source.bucket}\0{key}\0{etag}\0{size}".encode()
        ).hexdigest()
        link = self.cache / "s3" / identity
        if link.is_symlink() and link.resolve().is_file():
            return link.resolve()
        part = self._part(source.name, identity)

        def get() -> None:
            have = part.stat().st_size if part.exists() else 0
            if have >= size:
                if not part.exists():
                    part.touch()  # an empty object
                return
            extra = {"Range": f"bytes={have}-"} if have else {}
            body = client.get_object(Bucket=source.bucket, Key=key, **extra)["Body"]
            with part.open("ab" if have else "wb") as out:
                self._copy(body.read, out, have, size)

        self._retrying(source, get)
        final = self._commit(source, part, sha256)
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(os.path.relpath(final, link.parent))
        tmp.replace(link)
        return final

    # ----------------------------------------------------------------------- helpers
    def _part(self, name: str, key: str) -> Path:
        folder = self.cache / "partial"
        folder.mkdir(parents=True, exist_ok=True)
        # Per host: pods of several nodes sharing the cache never append to one file; each
        # renames its own verified copy into sha256/ (same name, same content).
        return folder / f"{name}.{key[:16]}.{socket.gethostname()}"

    def _copy(self, read: Callable[[int], bytes], out: Any, done: int, total: int | None) -> None:
        while chunk := read(CHUNK):
            out.write(chunk)
            done += len(chunk)
            self.transferred += len(chunk)
            if self.progress is not None:
                self.progress(done, total)
        if total is not None and done < total:  # a dropped connection: resumed on retry
            raise ConnectionError(f"connection closed after {done} of {total} bytes")

    def _retrying(self, source: SourceURI, attempt: Callable[[], None]) -> None:
        where = _describe(source)
        for n in range(self.retries + 1):
            try:
                attempt()
                return
            except (OSError, urllib.error.URLError) as e:
                if n == self.retries or _permanent(e):
                    raise FetchError(f"{where}: {_why(e)}") from None
                time.sleep(self.backoff * 2**n)
            except Exception as e:  # S3 client errors
                if n == self.retries or _permanent(e):
                    raise FetchError(f"{where}: {_why(e)}") from None
                time.sleep(self.backoff * 2**n)

    def _commit(self, source: SourceURI, part: Path, sha256: str | None) -> Path:
        digest = _sha256_file(part)
        if sha256 is not None and digest != sha256:
            part.unlink(missing_ok=True)  # a wrong file is never resumed from
            raise FetchError(
                f"{_describe(source)}: sha256 {digest} does not match the expected {sha256}"
            )
        final = self.path_for(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        part.replace(final)
        return final


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _describe(source: SourceURI) -> str:
    if source.scheme == "s3":
        return f"s3://{source.bucket}/{source.key}"
    return str(source.url).split("?", 1)[0]  # a query string may carry a signed token


def _permanent(e: BaseException) -> bool:
    """Errors a retry cannot fix: 4xx answers other than 408/429, missing S3 objects."""
    if isinstance(e, urllib.error.HTTPError):
        return 400 <= e.code < 500 and e.code not in (408, 429)
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NoSuchBucket", "403", "AccessDenied")
    return False


def _why(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    response = getattr(e, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".strip(": ")
    return f"{type(e).__name__}: {getattr(e, 'reason', None) or e}"
