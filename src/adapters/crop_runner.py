"""Runs the CPU-bound crop in worker threads so the event loop keeps acking and fetching.
MediaPipe graphs are not shared between threads: each thread builds its own Cropper."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vaultline.adapters.imaging import BadImage
from vaultline.handlers.crop import BadCropInput


class CropRunner:
    def __init__(self, threads: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="crop")
        self._local = threading.local()
        self._croppers: list[Any] = []

    def _crop(self, data: bytes, mode: str) -> Any:
        cropper = getattr(self._local, "cropper", None)
        if cropper is None:
            from vaultline.adapters.cropper import Cropper

            cropper = self._local.cropper = Cropper()
            self._croppers.append(cropper)
        try:
            return cropper.crop(data, mode)
        except BadImage as e:
            raise BadCropInput(str(e)) from e

    async def __call__(self, data: bytes, mode: str) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._crop, data, mode)

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for c in self._croppers:
            c.close()
