"""``KubeApi.pod_log`` over HTTP: the request the API server's log endpoint accepts.

The API server refuses ``Accept: text/plain`` on pods/log with 406 although it answers in plain
text (tests/node covers the whole path on a real node). This server answers the way
kube-apiserver does for the headers and query it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client

from rtdetr_operator.kube import ApiError, KubeApi
from rtdetr_spec.progress import MAX_SCAN_BYTES, ProgressReport, format_line, parse_log

LOG = "starting\n" + format_line(ProgressReport(epoch=1, num_epochs=3, percent=33.3)) + "\n"
ACCEPTED = ("*/*", "application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


class LogEndpoint(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        LogEndpoint.seen.append({"path": url.path, "query": parse_qs(url.query), **self.headers})
        if not any(a.strip() in ACCEPTED for a in self.headers.get("Accept", "").split(",")):
            self._answer(406, b'{"kind":"Status","message":"only the following media types"}')
        elif url.path.endswith("/gone/log"):
            self._answer(404, b'{"kind":"Status","message":"pods \\"gone\\" not found"}')
        else:
            self._answer(200, LOG.encode(), "text/plain")

    def _answer(self, code: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[KubeApi]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LogEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    LogEndpoint.seen.clear()
    yield KubeApi(client.ApiClient(config), "RTDETRTraining")
    server.shutdown()


def test_pod_log_reads_a_bounded_tail_of_one_container(api: KubeApi) -> None:
    text = api.pod_log("team-a", "wh-train-0-0-abcde", "rtdetr", MAX_SCAN_BYTES)
    assert text == LOG and parse_log(text)[0].epoch == 1
    (req,) = LogEndpoint.seen
    assert req["path"] == "/api/v1/namespaces/team-a/pods/wh-train-0-0-abcde/log"
    assert req["query"]["container"] == ["rtdetr"]
    assert req["query"]["limitBytes"] == [str(MAX_SCAN_BYTES)]
    assert int(req["query"]["tailLines"][0]) >= 1


def test_a_refused_read_is_an_api_error(api: KubeApi) -> None:
    with pytest.raises(ApiError) as e:
        api.pod_log("team-a", "gone", "rtdetr", 1024)
    assert e.value.not_found
