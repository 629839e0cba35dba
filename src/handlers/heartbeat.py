"""Keep a message of long work alive on the bus: `in_progress` every few seconds while the work
is awaited, so the consumer's ack_wait can stay short (a crashed worker's message comes back
within ack_wait) without redelivering work that is still running.

The heartbeat is a port: bootstrap passes `Delivery.in_progress`; unit tests pass a counter.
It runs on the event loop, so it keeps beating while CPU work runs in a thread (crop) or while
the handler sleeps (429 waits, polling for media to be ready). Handlers that wait on a remote
(the Fanvue upload, an Ollama call) wrap the wait in `keep_alive`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog

log = structlog.get_logger("vaultline.heartbeat")

Heartbeat = Callable[[], Awaitable[None]]
DEFAULT_EVERY_S = 5.0


@contextlib.asynccontextmanager
async def keep_alive(beat: Heartbeat | None, every: float = DEFAULT_EVERY_S) -> AsyncIterator[None]:
    """Call `beat()` every `every` seconds until the block ends. A failing beat is logged,
    never raised: losing a heartbeat costs a redelivery at worst, not the work."""
    if beat is None:
        yield
        return

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await beat()
            except Exception as e:
                log.warning("heartbeat failed", error=repr(e))

    task = asyncio.create_task(loop(), name="heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
