"""The facts ingest records about new image bytes: checksum, perceptual hash, size, format and
ComfyUI metadata. Bytes that do not decode still get a checksum; the crop handler rejects
them later with a reason, so nothing is dropped at the door."""

from __future__ import annotations

import io

from PIL import Image

from vaultline.adapters.imaging import BadImage, phash_hex, sha256_hex
from vaultline.domain.comfy import comfy_meta_from_text, png_text_chunks, vaultline_tag_from_text
from vaultline.events import ComfyMeta
from vaultline.handlers.ingest import ImageFacts


def describe_image(data: bytes) -> ImageFacts:
    width = height = fmt = None
    try:
        with Image.open(io.BytesIO(data)) as im:  # reads the header only
            width, height, fmt = im.width, im.height, im.format
    except Exception:
        pass
    try:
        phash = phash_hex(data)
    except (BadImage, Exception):
        phash = ""
    chunks = png_text_chunks(data) if data[:8] == b"\x89PNG\r\n\x1a\n" else {}
    return ImageFacts(
        sha256=sha256_hex(data),
        phash=phash,
        width=width,
        height=height,
        format=fmt,
        comfy=comfy_meta_from_text(chunks) if chunks else ComfyMeta(),
        vaultline_tag=vaultline_tag_from_text(chunks) if chunks else {},
    )
