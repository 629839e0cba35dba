"""Watch ComfyUI output folders and yield each image once it is completely written.

ComfyUI's SaveImage writes straight to the final file name (not atomically), so a file event
alone says nothing about completeness. A path is yielded when
  1. its (size, mtime, inode) did not change for `stable_for` seconds (at least two checks), and
  2. it ends the way its format must end: PNG walks its chunks to a final IEND, JPEG walks its
     segments to the EOI marker (FFD9) at the very end, WebP's RIFF length equals the file size.
A file that stays incomplete for `invalid_after` seconds is reported once (log + `on_invalid`)
and left alone until it changes again.

Events come from watchfiles (inotify & co.); they only nominate candidates, which are then
polled. Files already present at start are yielded too (`initial_scan`), so nothing written
while vaultline was down is lost, and a periodic rescan catches what the OS did not report
(network shares, a folder created and filled before its watch was added). The same unchanged
file is never yielded twice in one run; duplicates across runs are harmless upstream (sha256).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import stat
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from watchfiles import Change, awatch

from vaultline.domain import png

log = structlog.get_logger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})
# Names download managers, editors and our own LocalStorage use while a file is in progress.
TEMP_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".download", ".swp", ".vltmp", "~")


CHECKS_PER_ROUND = 64

Signature = tuple[int, int, int]  # size, mtime_ns, inode
OnInvalid = Callable[[Path, str], Any]


# --------------------------------------------------------------------------- completeness


def is_complete_image(path: Path | str) -> bool:
    """True when the file is a whole PNG, JPEG or WebP (judged by its bytes, not its name).
    Never raises: unreadable, unknown or truncated files are False."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            size = os.fstat(f.fileno()).st_size
            if head.startswith(png.SIGNATURE):
                return _png_complete(f, size)
            if head.startswith(b"\xff\xd8"):
                f.seek(0)
                return _jpeg_complete(f.read())
            if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
                return _webp_complete(f, head, size)
    except OSError:
        return False
    return False


def _png_complete(f: Any, size: int) -> bool:
    # Walk the chunk headers with seeks (cheap even for large files): a truncated file either
    # runs out mid-chunk or never reaches IEND; IEND must be the last 12 bytes.
    def read(pos: int, n: int) -> bytes:
        f.seek(pos)
        return f.read(n)

    last = None
    for last in png.walk(read, size):
        pass
    return last is not None and last.type == b"IEND" and last.end == size and read(size - 12, 12) == png.IEND


def _jpeg_complete(data: bytes) -> bool:
    # A bare "ends with FFD9" test is fooled by a file cut right after its EXIF thumbnail
    # (a whole JPEG inside APP1), so walk the segments and scans to the real EOI.
    n = len(data)
    if n < 4 or not data.endswith(b"\xff\xd9"):
        return False
    i = 2
    while i < n:
        if data[i] != 0xFF:
            return False
        while i < n and data[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            return False
        marker = data[i]
        i += 1
        if marker == 0xD9:  # EOI
            return i == n
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM / RSTn carry no length
            continue
        if i + 2 > n:
            return False
        seglen = int.from_bytes(data[i : i + 2], "big")
        if seglen < 2:
            return False
        i += seglen
        if i > n:
            return False
        if marker == 0xDA:  # SOS: entropy-coded data up to the next real marker
            while True:
                j = data.find(b"\xff", i)
                if j < 0 or j + 1 >= n:
                    return False
                nxt = data[j + 1]
                if nxt == 0x00 or 0xD0 <= nxt <= 0xD7:  # stuffed byte or restart marker
                    i = j + 2
                    continue
                if nxt == 0xFF:  # fill byte before a marker
                    i = j + 1
                    continue
                i = j
                break
    return False


def _webp_complete(f: Any, head: bytes, size: int) -> bool:
    riff_len = struct.unpack("<I", head[4:8])[0]
    if riff_len + 8 != size or size < 20:
        return False
    f.seek(12)
    return f.read(4) in (b"VP8 ", b"VP8L", b"VP8X")


# --------------------------------------------------------------------------- filters


def _ignored_name(name: str) -> bool:
    return name.startswith(".") or name.endswith(TEMP_SUFFIXES)


def is_candidate(path: Path) -> bool:
    """An image file name we watch: image suffix, not hidden, not a temp file."""
    return not _ignored_name(path.name) and path.suffix.lower() in IMAGE_SUFFIXES


def _under_hidden(path: Path, roots: Iterable[Path]) -> bool:
    # Only the part below the watched root counts: the root itself may live in ~/.something.
    for root in roots:
        try:
            rel = path.relative_to(root)
        except ValueError:
            continue
        return any(_ignored_name(part) for part in rel.parts)
    return False


def _stat_sig(path: Path) -> Signature | None:
    try:
        st = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _scan(dirs: Iterable[Path]) -> dict[Path, Signature]:
    found: dict[Path, Signature] = {}
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not _ignored_name(d)]
            for name in filenames:
                p = Path(dirpath) / name
                if is_candidate(p):
                    sig = _stat_sig(p)
                    if sig is not None:
                        found[p] = sig
    return found


# --------------------------------------------------------------------------- watcher


@dataclass
class _Pending:
    sig: Signature | None = None
    changed_at: float = 0.0  # monotonic time the signature was last seen changing
    checks: int = 0  # checks since then with the same signature
    verdict_sig: Signature | None = None  # signature already found incomplete (skip re-reading)
    reported: bool = False


@dataclass
class _State:
    roots: list[Path]
    stable_for: float
    invalid_after: float
    pending: dict[Path, _Pending] = field(default_factory=dict)
    # Signature of each file already yielded or given up on; unchanged -> never again.
    done: dict[Path, Signature] = field(default_factory=dict)

    def nominate(self, found: dict[Path, Signature]) -> None:
        for path, sig in found.items():
            if self.done.get(path) != sig and path not in self.pending:
                self.pending[path] = _Pending()

    def check(self) -> tuple[list[Path], list[tuple[Path, str]]]:
        """One polling round (blocking I/O: run it in a thread). Returns (ready, invalid)."""
        now = time.monotonic()
        ready: list[Path] = []
        invalid: list[tuple[Path, str]] = []
        # Bounded reads per round: after a start over a big backlog, the first images are
        # yielded within seconds instead of after every file has been read.
        budget = CHECKS_PER_ROUND
        for path, p in list(self.pending.items()):
            sig = _stat_sig(path)
            if sig is None:  # deleted or replaced by a folder
                del self.pending[path]
                self.done.pop(path, None)
                continue
            if self.done.get(path) == sig:  # an event for a file we already handled
                del self.pending[path]
                continue
            if sig != p.sig:
                p.sig, p.changed_at, p.checks = sig, now, 0
                continue
            p.checks += 1
            if now - p.changed_at < self.stable_for:
                continue
            if p.verdict_sig != sig:
                if budget <= 0:
                    continue
                budget -= 1
                if is_complete_image(path):
                    del self.pending[path]
                    self.done[path] = sig
                    ready.append(path)
                    continue
                p.verdict_sig = sig
            if now - p.changed_at >= self.invalid_after:
                del self.pending[path]
                self.done[path] = sig  # until it changes again
                invalid.append((path, f"not a complete image after {self.invalid_after:g}s without change"))
        ready.sort()
        return ready, invalid


async def _pump(
    roots: list[Path], queue: asyncio.Queue[Path], stop: asyncio.Event, force_polling: bool | None
) -> None:
    def _filter(change: Change, raw: str) -> bool:
        p = Path(raw)
        return not _under_hidden(p, roots)

    async for changes in awatch(
        *roots,
        watch_filter=_filter,
        stop_event=stop,
        recursive=True,
        force_polling=force_polling,
        debounce=400,
        step=50,
        ignore_permission_denied=True,
    ):
        for _change, raw in changes:
            queue.put_nowait(Path(raw))


async def watch_complete_files(
    folders: list[Path],
    *,
    stable_for: float = 0.5,
    poll: float = 0.2,
    stop_event: asyncio.Event | None = None,
    initial_scan: bool = True,
    invalid_after: float = 60.0,
    on_invalid: OnInvalid | None = None,
    rescan_interval: float | None = 60.0,
    force_polling: bool | None = None,
    on_ready: Callable[[], Any] | None = None,
) -> AsyncIterator[Path]:
    """Yield absolute paths of complete images under `folders` (recursively), each once.

    Stops when `stop_event` is set (checked every `poll` seconds) or when the consumer closes
    the generator (use `contextlib.aclosing`). `on_invalid(path, reason)` (sync or async) is
    called once for a file that stayed incomplete for `invalid_after` seconds.
    `rescan_interval=None` disables the periodic safety-net rescan. `on_ready()` is called
    once the OS watches exist and the initial scan is done: with `initial_scan=False`, files
    written after that point are new."""
    if stable_for < 0 or poll <= 0:
        raise ValueError("stable_for must be >= 0 and poll > 0")
    roots = [Path(f).expanduser().resolve() for f in folders]
    if not roots:
        raise ValueError("watch_complete_files needs at least one folder")
    for r in roots:
        if not r.is_dir():
            raise FileNotFoundError(f"watch folder {r} does not exist or is not a directory")

    state = _State(roots=roots, stable_for=stable_for, invalid_after=max(invalid_after, stable_for))
    queue: asyncio.Queue[Path] = asyncio.Queue()
    internal_stop = asyncio.Event()
    pump = asyncio.create_task(_pump(roots, queue, internal_stop, force_polling), name="watchfiles-pump")
    # Let the pump run up to its first suspension: awatch registers the OS watches
    # synchronously before it first waits, so files created after the scan below are seen.
    await asyncio.sleep(0)
    log.info("watcher.started", folders=[str(r) for r in roots], initial_scan=initial_scan)

    try:
        existing = await asyncio.to_thread(_scan, roots)
        if initial_scan:
            state.nominate(existing)
        else:
            state.done.update(existing)  # baseline: a rescan must not report these either
        next_rescan = time.monotonic() + rescan_interval if rescan_interval else None
        if on_ready is not None:
            result = on_ready()
            if inspect.isawaitable(result):
                await result

        while not (stop_event is not None and stop_event.is_set()):
            if pump.done():
                pump.result()  # re-raises the watcher's error
                raise RuntimeError("file watcher stopped unexpectedly")
            try:
                first = await asyncio.wait_for(queue.get(), timeout=poll)
            except asyncio.TimeoutError:
                first = None
            if first is not None:
                changed = [first]
                while not queue.empty():
                    changed.append(queue.get_nowait())
                await asyncio.to_thread(_note_changes, state, changed)
            if next_rescan is not None and time.monotonic() >= next_rescan:
                found = await asyncio.to_thread(_scan, roots)
                for gone in set(state.done) - set(found):  # keep memory bounded to what exists
                    del state.done[gone]
                state.nominate(found)
                next_rescan = time.monotonic() + (rescan_interval or 0)
            if not state.pending:
                continue
            ready, invalid = await asyncio.to_thread(state.check)
            for path, reason in invalid:
                log.warning("watcher.incomplete_image", path=str(path), reason=reason)
                if on_invalid is not None:
                    result = on_invalid(path, reason)
                    if inspect.isawaitable(result):
                        await result
            for path in ready:
                yield path
    finally:
        internal_stop.set()
        try:
            # awatch notices the stop event within its `step` (50 ms).
            await asyncio.wait_for(asyncio.shield(pump), timeout=5)
        except asyncio.TimeoutError:
            pump.cancel()
        except Exception:
            pass  # already surfaced above, or irrelevant while shutting down
        log.info("watcher.stopped")


def _note_changes(state: _State, changed: list[Path]) -> None:
    # Event kinds are not trusted (watchfiles batches them in an unordered set): look at the
    # disk instead. A new folder is scanned at once, since files created in it before its
    # watch existed produce no events.
    new_dirs: list[Path] = []
    for path in dict.fromkeys(changed):
        if path.is_dir():
            new_dirs.append(path)
        elif is_candidate(path):
            if path not in state.pending:
                state.pending[path] = _Pending()
        # non-images and deleted non-pending paths: nothing to do (check() drops deleted ones)
    if new_dirs:
        state.nominate(_scan(new_dirs))
