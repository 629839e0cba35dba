"""Files only the owner may read: generated secrets (passwords, tokens) and configs holding them.

Created with mode 0600 from the start (never written first and chmodded after, which leaves a
window where another local user can open the file), and never through a symlink.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` (created or truncated) with mode 0600; a symlink at `path` is refused."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | _NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_CREAT: narrow it
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def load_or_create_secret(
    path: Path, make: Callable[[], str] = lambda: secrets.token_hex(24), *, replace_empty: bool = False
) -> str:
    """The secret stored in `path`, or a new one from `make()` written there 0600 (O_EXCL: two
    processes racing both end up with the winner's secret). An empty file (a crash between
    create and write) is returned as "" for the caller to refuse, or with `replace_empty`
    (a secret nothing else remembers) replaced by a new one."""
    try:
        stored = path.read_text().strip()
    except FileNotFoundError:
        stored = None
    if stored:
        return stored
    secret = make()
    if stored == "":
        if not replace_empty:
            return ""
        write_private(path, secret + "\n")
        return secret
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    try:
        os.write(fd, (secret + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return secret
