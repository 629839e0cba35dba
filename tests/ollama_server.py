"""A test Ollama: a real HTTP server (starlette app served by uvicorn in a background thread on
127.0.0.1, free port) implementing what vaultline's drafter uses of the Ollama API:

    POST /api/chat     stream false (one JSON object) and true (NDJSON chunks, last one done=true)
    GET  /api/tags     the models it "has"
    GET  /api/version

What /api/chat answers, in order of precedence:
    server.script(answer, ...)   # a queue, one per /api/chat request:
        dict  -> that JSON object as the assistant's content (well-formed if it fits the schema)
        str   -> that raw text as content (e.g. "not json" = malformed)
        Fault("500") / Fault("503", body=...) -> that HTTP status with {"error": ...}
        Fault("slow", delay=2.0) -> wait, then the default answer (a client timeout hits first)
        Fault("drop")  -> close the connection without an answer
    server.down = 503            # every /api/chat answers that status until set back to None
    server.responder = fn(request_json) -> dict | str   # the default when the queue is empty
    otherwise: {"drafts": ["<echo of the fan's last message>"], "offer": null}
An unknown model gets 404 {"error": "model \"x\" not found, try pulling it first"} like Ollama.
Observation: `chats` (each /api/chat request body), `counts[path]`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

VERSION = "0.12.0-test"


@dataclass
class Fault:
    kind: str  # "500" (any status >= 400 as a string), "slow", "drop"
    delay: float = 0.0
    body: str = "internal error"


class OllamaTestServer:
    def __init__(self, models: tuple[str, ...] = ("llama3.2:latest", "llama3.2")) -> None:
        self.models = list(models)
        self.chats: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.responder: Callable[[dict[str, Any]], dict[str, Any] | str] | None = None
        self.chunk_size = 7
        self.down: int | None = None
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._closing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.app = Starlette(routes=[
            Route("/api/chat", self._chat, methods=["POST"]),
            Route("/api/tags", self._tags, methods=["GET"]),
            Route("/api/version", self._version, methods=["GET"]),
        ])  # fmt: skip
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def host(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "OllamaTestServer":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=1)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=f"ollama-test-{self.port}", daemon=True)  # fmt: skip
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test Ollama server did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        if self._loop is not None and self._closing is not None:
            self._loop.call_soon_threadsafe(self._closing.set)  # cut "slow" answers short
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(15)

    def __enter__(self) -> "OllamaTestServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ controls

    def script(self, *answers: Any) -> None:
        with self._lock:
            self._queue.extend(answers)

    def _next(self) -> Any:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    # ------------------------------------------------------------------ routes

    async def _wait(self, delay: float) -> None:
        if self._closing is None:
            self._loop = asyncio.get_running_loop()
            self._closing = asyncio.Event()
        try:
            await asyncio.wait_for(self._closing.wait(), delay)
        except asyncio.TimeoutError:
            pass

    async def _tags(self, request: Request) -> Response:
        self.counts["/api/tags"] += 1
        now = datetime.now(timezone.utc).isoformat()
        return JSONResponse({"models": [
            {"name": m, "model": m, "modified_at": now, "size": 2_000_000_000, "digest": "0" * 64,
             "details": {"format": "gguf", "family": "llama", "parameter_size": "3B", "quantization_level": "Q4_K_M"}}
            for m in self.models
        ]})  # fmt: skip

    async def _version(self, request: Request) -> Response:
        self.counts["/api/version"] += 1
        return JSONResponse({"version": VERSION})

    def _default(self, body: dict[str, Any]) -> dict[str, Any] | str:
        if self.responder is not None:
            return self.responder(body)
        last = next((m.get("content", "") for m in reversed(body.get("messages", [])) if m.get("role") == "user"), "")
        return {"drafts": [f"thanks for writing: {last[:80]}" if last else "hey you"], "offer": None}

    async def _chat(self, request: Request) -> Response:
        self.counts["/api/chat"] += 1
        body = await request.json()
        with self._lock:
            self.chats.append(body)
        model = body.get("model", "")
        if model not in self.models:
            return JSONResponse({"error": f'model "{model}" not found, try pulling it first'}, status_code=404)
        if self.down is not None:
            return JSONResponse({"error": "model is loading (test outage)"}, status_code=self.down)
        item = self._next()
        if isinstance(item, Fault):
            if item.kind == "slow":
                await self._wait(item.delay)
                item = None
            elif item.kind == "drop":
                raise ConnectionResetError("dropped by the test server")  # uvicorn closes the socket
            else:
                return JSONResponse({"error": item.body}, status_code=int(item.kind))
        answer = self._default(body) if item is None else item
        content = answer if isinstance(answer, str) else json.dumps(answer)
        created = datetime.now(timezone.utc).isoformat()
        final = {
            "model": model, "created_at": created, "done": True, "done_reason": "stop",
            "total_duration": 1_000_000, "prompt_eval_count": 10, "eval_count": 20,
        }  # fmt: skip
        if not body.get("stream", True):
            return JSONResponse({**final, "message": {"role": "assistant", "content": content}})

        async def lines():
            for i in range(0, len(content), self.chunk_size):
                part = {"model": model, "created_at": created, "done": False,
                        "message": {"role": "assistant", "content": content[i : i + self.chunk_size]}}  # fmt: skip
                yield json.dumps(part) + "\n"
            yield json.dumps({**final, "message": {"role": "assistant", "content": ""}}) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")
