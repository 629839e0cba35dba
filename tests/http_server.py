"""What the test HTTP servers (tests/fanvue_server.py, tests/ollama_server.py) share: a starlette
app served by uvicorn in a daemon thread on 127.0.0.1 (a free port), started and stopped from the
test's thread, and pauses that stop() cuts short."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any


class ThreadedServer:
    """Subclasses set `self.app` and call `super().__init__()`; `name` names the thread and the
    start-up error; `uvicorn_options` are added to uvicorn.Config."""

    name = "HTTP"
    uvicorn_options: dict[str, Any] = {}
    force_exit = False

    def __init__(self) -> None:
        self.port = 0
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._closing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        import uvicorn

        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                **self.uvicorn_options)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"{self.name.lower()}-test-{self.port}", daemon=True)  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"test {self.name} server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)  # cut pending pauses short
        if self._server is not None:
            self._server.should_exit = True
            if self.force_exit:
                self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(15)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _on_server_loop(self) -> None:
        """Called in a request: remember the server's loop, so stop() can end pauses."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._closing = asyncio.Event()

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds, or less if the server stops meanwhile."""
        self._on_server_loop()
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), delay)
        except TimeoutError:
            pass
