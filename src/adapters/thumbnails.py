"""Thumbnails of library images for the admin pages: made once with Pillow, cached as JPEG
files under DATA_DIR/cache/thumbs, keyed by everything that decides which pixels they show."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from vaultline.adapters.files import write_atomic
from vaultline.domain import png

THUMB_WIDTH = 320


def media_type(data: bytes) -> str:
    if data.startswith(png.SIGNATURE):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


def make_thumbnail(data: bytes, width: int = THUMB_WIDTH) -> bytes:
    """JPEG at most `width` px wide, aspect kept; transparency flattened onto white.

    Decoded under the same limits as every image (bytes, pixels, bombs, truncation): the
    original of a failed item is whatever arrived. Raises imaging.BadImage."""
    from PIL import Image, ImageOps

    from vaultline.adapters.imaging import open_checked

    im = open_checked(data, draft=(width, width * 8))  # JPEG: decode at a reduced scale, much faster
    img = ImageOps.exif_transpose(im)
    if img.width > width:
        img = img.resize((width, max(1, round(img.height * width / img.width))), Image.Resampling.LANCZOS)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        rgba = img.convert("RGBA")
        img = Image.new("RGB", rgba.size, (255, 255, 255))
        img.paste(rgba, mask=rgba.getchannel("A"))
    else:
        img = img.convert("RGB")
    out = io.BytesIO()
    img.save(out, "JPEG", quality=82, optimize=True)
    return out.getvalue()


def thumb_version(row: dict[str, Any]) -> str:
    # Everything that decides which pixels the thumbnail shows. A recrop overwrites the same
    # storage key, but changes these fields (crops are deterministic for the same fields), so
    # the cache needs no reading of the source to know it is stale.
    fields = ("review_key", "cropped_key", "raw_key", "crop_mode_used", "cut_y", "crop_box", "width", "height")
    blob = json.dumps([row.get(f) for f in fields], default=str, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class ThumbnailCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def get(self, row: dict[str, Any], source: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        """The cached thumbnail of `row`, or one made from `source()` (None: no image)."""
        path = self.directory / f"{row['id']}-v{thumb_version(row)}.jpg"
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            pass
        data = await source()
        if data is None:
            return None
        thumb = await asyncio.to_thread(make_thumbnail, data)
        await asyncio.to_thread(_write_cache, path, thumb)
        return thumb


def _write_cache(path: Path, data: bytes) -> None:
    write_atomic(path, data)
    # Older versions of this item's thumbnail (before a recrop) are garbage now.
    prefix = path.name.split("-v", 1)[0] + "-v"
    for old in path.parent.glob(prefix + "*.jpg"):
        if old != path:
            old.unlink(missing_ok=True)
