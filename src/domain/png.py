"""Walking the chunks of a PNG: the one place that knows the layout (signature, then
length + type + data + CRC per chunk, IEND last). Pure: callers pass bytes or a reader."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # the whole last chunk of every PNG
TEXT_CHUNK_TYPES = (b"tEXt", b"zTXt", b"iTXt")


@dataclass(frozen=True)
class Chunk:
    type: bytes
    start: int  # offset of the chunk's data
    length: int

    @property
    def end(self) -> int:
        """Offset just after the chunk's CRC: where the next chunk starts."""
        return self.start + self.length + 4


def walk(read: Callable[[int, int], bytes], size: int) -> Iterator[Chunk]:
    """The chunks of a PNG of `size` bytes, in order, read through `read(offset, n)`. Stops
    after IEND, or quietly before a chunk that does not fit in `size` (a truncated file).
    CRCs are not checked (the decoder does). The caller checks the signature."""
    pos = len(SIGNATURE)
    while pos + 8 <= size:
        header = read(pos, 8)
        if len(header) < 8:
            return
        length, ctype = struct.unpack(">I4s", header)
        chunk = Chunk(ctype, pos + 8, length)
        if chunk.end > size:
            return
        yield chunk
        if ctype == b"IEND":
            return
        pos = chunk.end


def chunks(data: bytes | bytearray | memoryview) -> Iterator[tuple[bytes, bytes]]:
    """(type, data) of every whole chunk of PNG bytes; nothing when they are not a PNG."""
    if bytes(data[: len(SIGNATURE)]) != SIGNATURE:
        return
    for c in walk(lambda pos, n: bytes(data[pos : pos + n]), len(data)):
        yield c.type, bytes(data[c.start : c.start + c.length])
