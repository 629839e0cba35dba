"""The folder-watcher ingest loop: every complete image under a creator's ComfyUI output
folders goes through the ingest use case.

- A file is ingested or permanently refused, never dropped: when ingest fails for a reason
  that can pass (PostgreSQL or NATS briefly down), the file is tried again with backoff until
  it goes through (a new version of the file starts over).
- A file that never becomes a complete image (zero bytes, garbage, truncated and left alone)
  for `settings.watch_reject_after_s` seconds, or that ingest refuses for good, moves to the
  library's `<creator>/rejected/` with a `.reason.txt` beside it and is recorded as a problem
  (`vaultline status`, GET /api/problems)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path
from typing import Any

import structlog

from vaultline.adapters.db.problems import record_problem
from vaultline.adapters.watcher import watch_complete_files
from vaultline.bootstrap import Ingestor, Runtime
from vaultline.domain import library
from vaultline.domain.retry import backoff_delay, is_permanent

log = structlog.get_logger("vaultline.comfy_folders")


async def reject_file(runtime: Runtime, creator: str, path: Path, reason: str) -> str | None:
    """Move a watched file to the library's rejected/ with its reason; record the problem.
    Returns the key it was moved to (None when it was already gone)."""
    assert runtime.ports is not None and runtime.ports.storage is not None
    storage = runtime.ports.storage
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except FileNotFoundError:
        return None
    key = library.key(creator, library.REJECTED, path.name)
    await storage.put(key, data)
    await storage.put(key + ".reason.txt", f"{reason}\n(found at {path})\n".encode(), "text/plain")
    with contextlib.suppress(FileNotFoundError):
        await asyncio.to_thread(path.unlink)  # after the copy is safe: a crash keeps the file
    await record_problem(runtime.ports.pool, creator=creator, path=str(path), moved_to=key, reason=reason)
    log.warning("watched file rejected", path=str(path), moved_to=key, reason=reason)
    return key


async def watch_comfy_folders(
    runtime: Runtime,
    creator: str,
    folders: list[Any],
    on_result: Callable[[Any, Any], Any] | None = None,
    *,
    on_retry: Callable[[Path, BaseException], Any] | None = None,
    retry_base: float = 0.5,
    retry_cap: float = 30.0,
) -> None:
    """Ingest every complete image that appears under a creator's ComfyUI output folders.
    `on_result(path, IngestResult | Exception)` is told about each file once its fate is
    decided: ingested (or a duplicate), or refused for good (the exception); `on_retry(path,
    error)` about each failed attempt that will be tried again."""
    assert runtime.ports is not None
    ingestor = Ingestor(runtime.ports)
    stop = runtime.stop_event
    attempts: dict[Path, asyncio.Task[None]] = {}

    async def reject(path: Path, reason: str) -> None:
        try:
            await reject_file(runtime, creator, path, reason)
        except Exception:  # the file stays where it is; it is reported again when it changes
            log.exception("could not move a rejected file aside", path=str(path))

    async def ingest_until_done(path: Path) -> None:
        attempt = 0
        while not stop.is_set():
            attempt += 1
            result: Any
            try:
                data = await asyncio.to_thread(path.read_bytes)
                result = await ingestor.ingest_bytes(data, filename=path.name, source="watcher", creator=creator)
            except FileNotFoundError:
                log.info("watched file vanished before it was ingested", path=str(path))
                return
            except Exception as e:
                if not is_permanent(e):
                    delay = backoff_delay(attempt, base=retry_base, cap=retry_cap)
                    log.warning("ingest failed; retrying", path=str(path), error=repr(e), attempt=attempt, retry_in_s=delay)
                    if on_retry is not None:
                        on_retry(path, e)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
                    continue
                log.error("ingest refused the file", path=str(path), error=repr(e))
                await reject(path, f"ingest refused it: {e}")
                result = e
            if on_result is not None:
                on_result(path, result)
            return

    try:
        watch = watch_complete_files(
            folders, stop_event=stop, invalid_after=runtime.settings.watch_reject_after_s, on_invalid=reject
        )
        async with aclosing(watch) as paths:
            async for path in paths:
                previous = attempts.pop(path, None)
                if previous is not None and not previous.done():
                    previous.cancel()  # the file changed: its new bytes are what counts
                attempts[path] = asyncio.create_task(ingest_until_done(path), name=f"ingest {path.name}")
                for done in [p for p, t in attempts.items() if t.done()]:
                    del attempts[done]
    finally:
        for task in attempts.values():
            task.cancel()
        for task in attempts.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
