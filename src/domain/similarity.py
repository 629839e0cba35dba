"""When two images are "the same picture": the perceptual-hash threshold every part uses. Pure.

Ingest flags a new image within this many bits of an existing one as a near-duplicate; the send
guard refuses to send a fan an image within this many bits of one they already have."""

from __future__ import annotations

# Hamming distance (bits of the 64-bit pHash) up to which two images are near-duplicates.
NEAR_DUPLICATE_DISTANCE = 6


def hash_bits(phash: str | None) -> int | None:
    """A hex pHash as an integer; None when missing or malformed (it then matches nothing)."""
    if not phash:
        return None
    try:
        return int(phash, 16)
    except ValueError:
        return None


def phash_distance(a: str | None, b: str | None) -> int | None:
    """Bits that differ between two 16-hex-digit pHashes; None when either is missing/malformed."""
    if not a or not b or len(a) != len(b):
        return None
    x, y = hash_bits(a), hash_bits(b)
    return None if x is None or y is None else (x ^ y).bit_count()
