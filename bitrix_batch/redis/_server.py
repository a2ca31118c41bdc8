"""A throwaway ``redis-server`` on 127.0.0.1, for tests, examples and benchmarks.

No persistence (``--save ''``, no append-only file), its files in a temporary folder, and
stopped when the ``with`` block ends. It needs the ``redis-server`` program (Debian's
``redis-server`` package); `LocalRedisServer.binary()` says whether it is there.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["LocalRedisServer"]

_HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _pong(port: int) -> bool:
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class LocalRedisServer:
    """Start ``redis-server`` on a free loopback port; stop it on exit.

    Args:
        program: The ``redis-server`` to run; by default the one on ``PATH``.
        startup_timeout: Seconds to wait for it to answer ``PING``.

    Raises:
        RuntimeError: On entry, if there is no ``redis-server`` or it does not start.
    """

    def __init__(self, program: str | None = None, startup_timeout: float = 10.0) -> None:
        self._program = program
        self._startup_timeout = startup_timeout
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @staticmethod
    def binary() -> str | None:
        """The path of ``redis-server`` on ``PATH``, or None."""
        return shutil.which("redis-server")

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``."""
        return f"redis://{_HOST}:{self.port}"

    def __enter__(self) -> LocalRedisServer:
        program = self._program or self.binary()
        if program is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self._dir = tempfile.TemporaryDirectory(prefix="bitrix-batch-redis-")
        for _ in range(3):  # the free port may be taken before the server binds it
            self.port = _free_port()
            self.process = subprocess.Popen(
                [
                    program,
                    "--bind",
                    _HOST,
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._dir.name,
                    "--daemonize",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + self._startup_timeout
            while self.process.poll() is None and time.monotonic() < deadline:
                if _pong(self.port):
                    return self
                time.sleep(0.02)
            self._stop()
        self._dir.cleanup()
        raise RuntimeError(f"redis-server did not start ({program})")

    def __exit__(self, *exc_info: object) -> None:
        self._stop()
        if self._dir is not None:
            self._dir.cleanup()

    def _stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __repr__(self) -> str:
        state = "running" if self.process is not None else "stopped"
        return f"<LocalRedisServer {self.url} {state}>"
