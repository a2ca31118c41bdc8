"""Serving the emulator over real loopback sockets with uvicorn (the ``emulator`` extra)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .app import Emulator
from .faults import DroppedConnection

__all__ = ["DropFilter", "bind_socket", "make_server", "serve_in_thread"]


class DropFilter(logging.Filter):
    """Hides uvicorn's traceback for connections the emulator drops on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for records caused by :class:`DroppedConnection`."""
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0 picks a free port)."""
    # proto=IPPROTO_TCP matters: asyncio only turns Nagle off (TCP_NODELAY) on accepted
    # sockets whose proto says TCP, and Nagle costs ~40 ms per small response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def make_server(emulator: Emulator, log_level: str = "warning", **options: Any) -> Any:
    """A ``uvicorn.Server`` for the emulator's app (imports uvicorn lazily)."""
    try:
        import uvicorn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "serving over sockets needs uvicorn: pip install 'bitrix_batch[emulator]'"
        ) from exc
    logging.getLogger("uvicorn.error").addFilter(DropFilter())
    config = uvicorn.Config(
        emulator.app,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        interface="asgi3",
        **options,
    )
    return uvicorn.Server(config)


@contextmanager
def serve_in_thread(
    emulator: Emulator,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    startup_timeout: float = 10.0,
) -> Iterator[str]:
    """Serve ``emulator`` on ``host`` in a daemon thread; yields ``http://host:port``.

    The server stops (and the thread ends) when the ``with`` block exits.
    """
    sock = bind_socket(host, port)
    bound_port = sock.getsockname()[1]
    server = make_server(emulator, log_level=log_level)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="bitrix-emulator", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the emulator server did not start")
        time.sleep(0.005)
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
        sock.close()
