"""Review thumbnails (issue 13, low finding): decoded under the image limits, since the
original of a failed item is whatever arrived."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from vaultline.adapters.imaging import MAX_PIXELS, BadImage
from vaultline.adapters.thumbnails import make_thumbnail


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (a decompression bomb's header) with a tiny IDAT."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")


def test_thumbnail_is_a_small_jpeg_with_the_aspect_kept():
    buf = io.BytesIO()
    Image.new("RGBA", (800, 1200), (255, 0, 0, 128)).save(buf, "PNG")
    thumb = Image.open(io.BytesIO(make_thumbnail(buf.getvalue())))
    assert (thumb.format, thumb.size) == ("JPEG", (320, 480))


def test_a_decompression_bomb_is_refused_before_decoding():
    side = int(MAX_PIXELS**0.5) + 100
    with pytest.raises(BadImage, match="decompression bomb"):
        make_thumbnail(_png_header_only(side, side))


def test_a_truncated_original_is_refused_not_previewed_half_grey():
    buf = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buf, "PNG")
    with pytest.raises(BadImage):
        make_thumbnail(buf.getvalue()[: len(buf.getvalue()) // 2])
