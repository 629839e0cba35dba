"""Key rules shared by every Storage adapter, so the fake, the folders and the bucket
accept and refuse exactly the same keys (the contract tests check all three)."""

from __future__ import annotations


def validate_key(key: str) -> str:
    """Return `key` unchanged when it is a safe relative key like `elena/1_raw/x.png`.

    Refused with ValueError: empty, absolute, backslashes, NUL, empty/`.`/`..` segments,
    and hidden segments (a leading dot is reserved for the local adapter's temp files,
    so a listing never shows half-written files)."""
    if not isinstance(key, str) or not key:
        raise ValueError("storage key must be a non-empty string")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"storage key must not contain backslashes or NUL: {key!r}")
    if key.startswith("/"):
        raise ValueError(f"storage key must be relative, not absolute: {key!r}")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"storage key has an empty, '.' or '..' segment: {key!r}")
        if part.startswith("."):
            raise ValueError(f"storage key must not have hidden (dot) segments: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A listing prefix may be partial (`elena/1_r`) but must not escape either."""
    if not prefix:
        return ""
    if "\\" in prefix or "\x00" in prefix or prefix.startswith("/"):
        raise ValueError(f"storage prefix must be relative without backslashes: {prefix!r}")
    if any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"storage prefix must not contain '.' or '..' segments: {prefix!r}")
    return prefix
