"""How the client talks HTTP: its own transport, and what httpx's client layer still does."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from bitrix_batch import BitrixClient, RetryPolicy


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers every request itself, noting the URL it was asked for."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.seen.append(self.path)  # absolute form: it was used as a proxy
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({"result": {"ID": "1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")
    _Proxy.seen = []
    yield _Proxy.seen
    server.shutdown()
    server.server_close()
    thread.join()


async def test_proxies_from_the_environment_are_used(proxy: list[str]) -> None:
    """HTTP_PROXY is honoured as httpx honours it (the portal's name is never resolved here:
    the proxy answers). Plain http to a host that is not this machine must be asked for."""
    async with BitrixClient(
        "http://portal.invalid/rest/1/abc/",
        rate_limit=None,
        retry=RetryPolicy.testing(),
        allow_insecure_http=True,
    ) as client:
        assert await client.call("user.current") == {"ID": "1"}
    assert proxy == ["http://portal.invalid/rest/1/abc/user.current"]
