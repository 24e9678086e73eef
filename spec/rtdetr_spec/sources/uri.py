"""Source URIs: where a dataset, a checkpoint or a model to serve comes from.

* ``s3://<bucket>/<key>`` (any S3-compatible endpoint; credentials from a Secret). A key ending
  in ``/`` is a folder (a dataset): every object under it is fetched.
* ``https://<host>/<path>`` with a required sha256 (the file is verified before it is used).
* ``hf://<owner>/<repo>[@<revision>]/<path>``: a file of a Hugging Face model repository, fetched
  from ``https://huggingface.co/<owner>/<repo>/resolve/<revision>/<path>`` (revision ``main``
  unless given), with ``HF_TOKEN`` as a bearer token when set.
* ``ngc://<org>/<team>/<model>:<version>/<file>`` (``<team>`` may be ``no-team``): a file of an
  NGC model version, from the NGC API's file URL, with the API key from a Secret.

hf and ngc URLs are mapped to https here and unit-tested; they are not exercised against the real
services by this project's tests. Pure functions, no network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

HF_ENDPOINT = "https://huggingface.co"
NGC_API = "https://api.ngc.nvidia.com/v2"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SourceURIError(ValueError):
    """A source URI that cannot be used; the message names what is wrong (never a secret)."""


@dataclass(frozen=True)
class SourceURI:
    """A parsed source: its scheme and what the downloader needs."""

    scheme: str
    #: https: the URL to GET (hf and ngc mapped to it); s3: None.
    url: str | None = None
    bucket: str | None = None
    key: str | None = None
    #: The file name the download gets (last path segment).
    name: str = ""

    @property
    def is_folder(self) -> bool:
        return self.scheme == "s3" and bool(self.key is not None and self.key.endswith("/"))


def _segments(path: str, text: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise SourceURIError(f"{text!r}: '.' and '..' are not allowed in a source path")
    return parts


def parse(text: str, *, sha256: str | None = None) -> SourceURI:
    """Parse ``text``; https needs ``sha256`` (64 lowercase hex digits).

    Raises:
        SourceURIError: naming the URI (credentials in it are refused, never echoed).
    """
    parts = urlsplit(text)
    if parts.username or parts.password:
        raise SourceURIError(
            f"{parts.scheme}:// source: credentials in the URI are refused; put them in a Secret"
        )
    if sha256 is not None and not _SHA256.match(sha256):
        raise SourceURIError(f"{text!r}: sha256 must be 64 lowercase hex digits")
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket):
            raise SourceURIError(f"{text!r}: {bucket!r} is not an S3 bucket name")
        key = parts.path.lstrip("/")
        if not key:
            raise SourceURIError(f"{text!r}: name an object or a folder (ending in /) of {bucket}")
        segs = _segments(key, text)
        return SourceURI("s3", bucket=bucket, key=key, name=segs[-1])
    if parts.scheme == "https":
        if not parts.netloc or not parts.path.strip("/"):
            raise SourceURIError(f"{text!r}: an https source names a file")
        if sha256 is None:
            raise SourceURIError(f"{text!r}: an https source needs its sha256")
        segs = _segments(parts.path, text)
        return SourceURI("https", url=text, name=segs[-1])
    if parts.scheme == "hf":
        return _hf(parts.netloc + parts.path, text)
    if parts.scheme == "ngc":
        return _ngc(parts.netloc + parts.path, text)
    if parts.scheme == "http":
        raise SourceURIError(f"{text!r}: plain http is refused; use https")
    raise SourceURIError(f"{text!r}: unsupported scheme (s3, https, hf or ngc)")


def _hf(path: str, text: str) -> SourceURI:
    segs = _segments(path, text)
    if len(segs) < 3:
        raise SourceURIError(f"{text!r}: expected hf://<owner>/<repo>[@<revision>]/<path>")
    owner, repo, rest = segs[0], segs[1], segs[2:]
    repo, _, revision = repo.partition("@")
    if not all(_NAME.match(x) for x in (owner, repo)) or (revision and not _NAME.match(revision)):
        raise SourceURIError(f"{text!r}: owner, repo and revision are names")
    url = f"{HF_ENDPOINT}/{owner}/{repo}/resolve/{quote(revision or 'main', safe='')}/"
    return SourceURI("hf", url=url + "/".join(quote(s) for s in rest), name=rest[-1])


def _ngc(path: str, text: str) -> SourceURI:
    segs = _segments(path, text)
    if len(segs) < 4 or ":" not in segs[2]:
        raise SourceURIError(f"{text!r}: expected ngc://<org>/<team>/<model>:<version>/<file>")
    org, team, model_version, files = segs[0], segs[1], segs[2], segs[3:]
    model, _, version = model_version.partition(":")
    if not all(_NAME.match(x) for x in (org, team, model, version)):
        raise SourceURIError(f"{text!r}: org, team, model and version are names")
    base = f"{NGC_API}/org/{org}" + ("" if team == "no-team" else f"/team/{team}")
    url = f"{base}/models/{model}/versions/{version}/files/" + "/".join(quote(s) for s in files)
    return SourceURI("ngc", url=url, name=files[-1])
