"""Minimal Kubernetes REST client built on the standard library.

The cluster scripts must not depend on kubectl or a Python Kubernetes client, so bootstrap
work (creating nodes, the storage class, the volume provisioner) talks to the API server
directly with the admin client certificate.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

JSON = dict[str, Any]


class ApiError(RuntimeError):
    """An API request failed; ``status`` is the HTTP status (0 when unreachable)."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


def tls_context(ca_file: Path, cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext:
    """Return a context that verifies the cluster CA and presents a client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert_file is not None and key_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    return ctx


class KubeClient:
    """Just enough of the Kubernetes REST API for bootstrap and the provisioner.

    One keep-alive HTTPS connection is reused across requests: a fresh TLS handshake per call
    would cost the API server (and this process) far more than the requests themselves.
    """

    def __init__(self, server: str, ctx: ssl.SSLContext, timeout: float = 15.0) -> None:
        self.server = server.rstrip("/")
        parsed = urllib.parse.urlsplit(self.server)
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or 443
        self.ctx = ctx
        self.timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

    @classmethod
    def from_pki(cls, server: str, pki_dir: Path, user: str = "admin") -> KubeClient:
        """Build a client from the PKI directory written by the ``pki`` helper."""
        ctx = tls_context(pki_dir / "ca.crt", pki_dir / f"{user}.crt", pki_dir / f"{user}.key")
        return cls(server, ctx)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(
        self, method: str, path: str, data: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str]:
        # A kept-alive connection may have been closed by the server; retry once on a new one.
        for attempt in (0, 1):
            conn = self._conn or http.client.HTTPSConnection(
                self._host, self._port, context=self.ctx, timeout=self.timeout
            )
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read().decode(errors="replace")
            except (http.client.HTTPException, OSError) as err:
                conn.close()
                self._conn = None
                if attempt == 1:
                    raise ApiError(method, path, 0, str(err)) from None
                continue
            self._conn = conn
            return resp.status, raw
        raise AssertionError("unreachable")

    def request(
        self,
        method: str,
        path: str,
        body: JSON | None = None,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
    ) -> JSON:
        """Send one request and decode the JSON reply; raise ApiError on non-2xx."""
        target = path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        status, raw = self._send(method, target, data, headers)
        if not 200 <= status < 300:
            raise ApiError(method, path, status, raw)
        if not raw:
            return {}
        try:
            decoded: Any = json.loads(raw)
        except json.JSONDecodeError:
            return {"raw": raw}
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def get(self, path: str, **query: str) -> JSON:
        return self.request("GET", path, query=query or None)

    def get_text(self, path: str) -> str:
        """GET a plain-text endpoint such as /readyz or /version."""
        status, raw = self._send("GET", path, None, {"Accept": "*/*"})
        if not 200 <= status < 300:
            raise ApiError("GET", path, status, raw)
        return raw

    def create(self, path: str, body: JSON, exist_ok: bool = True) -> JSON:
        """POST an object; an existing object is not an error when ``exist_ok``."""
        try:
            return self.request("POST", path, body)
        except ApiError as err:
            if exist_ok and err.status == 409:
                return {}
            raise

    def delete(self, path: str, missing_ok: bool = True) -> JSON:
        try:
            return self.request("DELETE", path)
        except ApiError as err:
            if missing_ok and err.status == 404:
                return {}
            raise

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as err:
            if err.status == 404:
                return False
            raise
        return True


def wait_for(
    what: str,
    probe: Callable[[], bool],
    timeout: float,
    interval: float = 0.25,
    on_timeout: Callable[[], str] | None = None,
) -> None:
    """Poll ``probe`` until it returns True; probe exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while True:
        try:
            if probe():
                return
        except Exception as err:  # any failure just means "not ready yet"
            last_error = f"{type(err).__name__}: {err}"
        if time.monotonic() >= deadline:
            detail = on_timeout() if on_timeout else ""
            msg = f"timed out after {timeout:.0f}s waiting for {what}"
            if last_error:
                msg += f" (last error: {last_error})"
            if detail:
                msg += "\n" + detail
            raise TimeoutError(msg)
        time.sleep(interval)
