"""The folder-watcher ingest loop: every complete image under a creator's ComfyUI output
folders goes through the ingest use case."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import structlog

from vaultline.adapters.watcher import watch_complete_files
from vaultline.bootstrap import Ingestor, Runtime

log = structlog.get_logger("vaultline.comfy_folders")


async def watch_comfy_folders(
    runtime: Runtime, creator: str, folders: list[Any], on_result: Callable[[Any, Any], Any] | None = None
) -> None:
    """Ingest every complete image that appears under a creator's ComfyUI output folders.
    `on_result(path, IngestResult | Exception)` is told about each file."""
    assert runtime.ports is not None
    ingestor = Ingestor(runtime.ports)
    async with aclosing(watch_complete_files(folders, stop_event=runtime.stop_event)) as paths:
        async for path in paths:
            result: Any
            try:
                data = await asyncio.to_thread(path.read_bytes)
                result = await ingestor.ingest_bytes(data, filename=path.name, source="watcher", creator=creator)
            except Exception as e:  # one bad file must not stop the watcher
                log.exception("could not ingest watched file", path=str(path))
                result = e
            if on_result is not None:
                on_result(path, result)
