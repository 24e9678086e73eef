"""A slow network link for the node tier: a TCP relay whose replies flow at a set rate.

Downloads between the node's pods and the S3 server on this machine take well under a second,
too fast for anyone (the operator included) to watch one happen. Putting this relay between
them makes a download last as long as a real one over a slow link would: the pods connect to
``endpoint``, every connection is relayed to the server, and each connection's replies are
paced to ``rate`` bytes per second (requests go through unpaced). Nothing else changes: the same
HTTP, the same S3 server, the same bytes.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field

CHUNK = 16 * 1024


@dataclass
class SlowLink:
    host: str
    target: tuple[str, int]
    rate: int  # bytes per second, per connection, server to client
    _server: socket.socket | None = None
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        return f"http://{self.host}:{self._server.getsockname()[1]}"

    def start(self) -> SlowLink:
        server = socket.create_server((self.host, 0))
        server.settimeout(0.5)
        self._server = server
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopped.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            threading.Thread(target=_pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client, self.rate), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket, rate: int | None) -> None:
    """Copy ``source`` to ``sink`` until either end closes; at most ``rate`` bytes/s if set."""
    started, sent = time.monotonic(), 0
    try:
        while chunk := source.recv(CHUNK):
            if rate and time.monotonic() - started - sent / rate > 1.0:
                started, sent = time.monotonic(), 0  # idle keep-alive: no saved-up credit
            sink.sendall(chunk)
            sent += len(chunk)
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        pass
    finally:
        for s in (source, sink):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
