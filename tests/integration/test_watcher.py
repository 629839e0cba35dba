"""The ComfyUI folder watcher against the real filesystem and real OS notifications.

Writers here pause between chunks on purpose: a slow writer is the scenario under test
(ComfyUI writes straight to the final name). Synchronisation is always "wait for a
condition with a deadline", never a fixed sleep."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vaultline.adapters.watcher import is_complete_image, watch_complete_files

FAST = {"stable_for": 0.15, "poll": 0.03}


async def wait_for(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def image_bytes(fmt: str, size: tuple[int, int] = (96, 64), seed: int = 0, **save: object) -> bytes:
    # Noise, so PNG/WebP do not compress to a few bytes and a file spans several chunks.
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **save)
    return buf.getvalue()


def jpeg_with_exif_thumbnail() -> tuple[bytes, int]:
    """A JPEG whose APP1 holds a complete thumbnail JPEG; returns (bytes, end of APP1).
    Cut at that offset the file ends in FFD9 yet is incomplete."""
    thumb = image_bytes("JPEG", (16, 16), seed=3)
    main = image_bytes("JPEG", (64, 64), seed=4)
    payload = b"Exif\x00\x00" + thumb
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = main[:2] + app1 + main[2:]
    return data, 2 + len(app1)


class Collector:
    """Runs the watcher in a task and records what it yields and reports."""

    def __init__(self, folders: list[Path], **kw: object) -> None:
        self.seen: list[Path] = []
        self.invalid: list[Path] = []
        self.stop = asyncio.Event()
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._run(folders, {**FAST, **kw}))

    async def _run(self, folders: list[Path], kw: dict) -> None:
        def on_invalid(path: Path, reason: str) -> None:
            assert "not a complete image" in reason
            self.invalid.append(path)

        gen = watch_complete_files(
            folders, stop_event=self.stop, on_invalid=on_invalid, on_ready=self.ready.set, **kw
        )
        async with aclosing(gen) as it:
            async for p in it:
                self.seen.append(p)

    def count(self, path: Path) -> int:
        return self.seen.count(path.resolve())

    async def wait_seen(self, path: Path, timeout: float = 5.0) -> None:
        await wait_for(lambda: self.count(path) >= 1 or self.task.done(), timeout, f"{path.name} yielded")
        if self.task.done():
            self.task.result()
        assert self.count(path) >= 1

    async def sentinel(self, folder: Path, name: str) -> None:
        """Write a complete image and wait for it: proves the watcher is live and has
        processed every event that happened before."""
        p = folder / name
        p.write_bytes(image_bytes("PNG", (8, 8)))
        await self.wait_seen(p)

    async def __aenter__(self) -> Collector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 5)


@pytest.fixture
async def out(tmp_path: Path):
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


async def write_slowly(path: Path, data: bytes, chunks: int, pause: float, after_chunk=None) -> None:
    step = -(-len(data) // chunks)
    with open(path, "wb") as f:
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            if i + step < len(data):
                await asyncio.sleep(pause)  # the slow writer (scenario), not synchronisation
                if after_chunk is not None:
                    after_chunk()


# ----------------------------------------------------------------------------- unit-ish


@pytest.mark.parametrize("fmt,save", [("PNG", {}), ("JPEG", {"quality": 90}), ("JPEG", {"progressive": True}),
                                      ("WEBP", {"quality": 80}), ("WEBP", {"lossless": True})])
def test_is_complete_image_true_only_for_the_whole_file(tmp_path: Path, fmt: str, save: dict) -> None:
    data = image_bytes(fmt, **save)
    p = tmp_path / f"x.{fmt.lower()}"
    p.write_bytes(data)
    assert is_complete_image(p)
    # Every truncation is incomplete (sampled: ~150 cut points incl. the last few bytes).
    cuts = sorted(set(range(0, len(data), max(1, len(data) // 150))) | set(range(len(data) - 16, len(data))))
    for cut in cuts:
        p.write_bytes(data[:cut])
        assert not is_complete_image(p), f"{fmt} cut at {cut}/{len(data)} taken as complete"


def test_jpeg_cut_after_exif_thumbnail_is_incomplete(tmp_path: Path) -> None:
    data, cut = jpeg_with_exif_thumbnail()
    p = tmp_path / "x.jpg"
    p.write_bytes(data)
    assert is_complete_image(p)
    p.write_bytes(data[:cut])
    assert p.read_bytes().endswith(b"\xff\xd9")  # the naive test would accept this
    assert not is_complete_image(p)


def test_is_complete_image_rejects_junk(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"not an image at all")
    (tmp_path / "b.png").write_bytes(b"")
    assert not is_complete_image(tmp_path / "a.png")
    assert not is_complete_image(tmp_path / "b.png")
    assert not is_complete_image(tmp_path / "missing.png")
    assert not is_complete_image(tmp_path)  # a directory


# ----------------------------------------------------------------------------- watcher


async def test_png_written_slowly_is_yielded_once_after_last_chunk(out: Path) -> None:
    async with Collector([out]) as c:
        await c.sentinel(out, "ready.png")
        target = out / "ComfyUI_00001_.png"
        data = image_bytes("PNG", (160, 120), seed=1)

        def not_yet() -> None:
            # Each pause outlasts stable_for: size stability alone would yield a partial file.
            assert c.count(target) == 0, "yielded before the last chunk was written"

        await write_slowly(target, data, chunks=4, pause=0.35, after_chunk=not_yet)
        await c.wait_seen(target)
        await c.sentinel(out, "after.png")
        assert c.count(target) == 1
        assert c.invalid == []


async def test_jpeg_written_slowly_is_yielded_once_after_last_chunk(out: Path) -> None:
    async with Collector([out]) as c:
        await c.sentinel(out, "ready.png")
        target = out / "photo.jpg"
        data, cut = jpeg_with_exif_thumbnail()
        # First chunk ends exactly after the EXIF thumbnail (ends in FFD9), then the rest.
        with open(target, "wb") as f:
            f.write(data[:cut])
            f.flush()
            await asyncio.sleep(0.35)  # slow writer
            assert c.count(target) == 0
            rest = data[cut:]
            half = len(rest) // 2
            f.write(rest[:half])
            f.flush()
            await asyncio.sleep(0.35)  # slow writer
            assert c.count(target) == 0
            f.write(rest[half:])
        await c.wait_seen(target)
        await c.sentinel(out, "after.png")
        assert c.count(target) == 1


async def test_webp_is_yielded(out: Path) -> None:
    async with Collector([out]) as c:
        target = out / "x.webp"
        await write_slowly(target, image_bytes("WEBP", (128, 96), seed=5), chunks=3, pause=0.3)
        await c.wait_seen(target)


async def test_truncated_file_is_not_yielded_and_reported_once(out: Path) -> None:
    async with Collector([out], invalid_after=0.4) as c:
        bad = out / "broken.png"
        data = image_bytes("PNG", seed=2)
        bad.write_bytes(data[: len(data) - 20])
        await wait_for(lambda: bad.resolve() in c.invalid, 5, "the truncated file to be reported")
        await c.sentinel(out, "after.png")
        assert c.count(bad) == 0
        assert c.invalid.count(bad.resolve()) == 1

        # The writer comes back and finishes it: now it is a new, complete version.
        with open(bad, "ab") as f:
            f.write(data[len(data) - 20 :])
        await c.wait_seen(bad)
        assert c.invalid.count(bad.resolve()) == 1


async def test_file_present_before_start_is_yielded(out: Path) -> None:
    old = out / "ComfyUI_00007_.png"
    old.write_bytes(image_bytes("PNG"))
    # Frequent rescans: they must not yield the unchanged file a second time.
    async with Collector([out], rescan_interval=0.05) as c:
        await c.wait_seen(old)
        await c.sentinel(out, "after.png")
        assert c.count(old) == 1


async def test_initial_scan_off_skips_existing_files(out: Path) -> None:
    old = out / "old.png"
    old.write_bytes(image_bytes("PNG"))
    async with Collector([out], initial_scan=False, rescan_interval=0.05) as c:
        # Anything written before the watcher is ready counts as "existing" when initial_scan
        # is off, so the new file must come after.
        await asyncio.wait_for(c.ready.wait(), 5)
        await c.sentinel(out, "new.png")
        assert c.count(old) == 0


async def test_rewritten_file_is_yielded_again(out: Path) -> None:
    async with Collector([out]) as c:
        target = out / "a.png"
        target.write_bytes(image_bytes("PNG", seed=1))
        await c.wait_seen(target)
        target.write_bytes(image_bytes("PNG", seed=2))  # new content under the same name
        await wait_for(lambda: c.count(target) == 2, 5, "second version yielded")


async def test_non_images_and_temp_files_are_ignored(out: Path) -> None:
    async with Collector([out]) as c:
        png = image_bytes("PNG")
        (out / "notes.txt").write_text("hello")
        (out / "workflow.json").write_text("{}")
        (out / "ComfyUI_00001_.png.part").write_bytes(png)
        (out / ".ComfyUI_00002_.png").write_bytes(png)
        (out / "x.png.tmp").write_bytes(png)
        (out / ".cache").mkdir()
        (out / ".cache" / "thumb.png").write_bytes(png)
        await c.sentinel(out, "after.png")
        assert [p.name for p in c.seen] == ["after.png"]


async def test_nested_folders(out: Path) -> None:
    existing = out / "elena" / "2025-10-12" / "a.png"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(image_bytes("PNG"))
    async with Collector([out]) as c:
        await c.wait_seen(existing)
        # A folder created after start and filled at once (before any watch on it could exist).
        new = out / "mira" / "deep" / "er"
        new.mkdir(parents=True)
        (new / "b.jpg").write_bytes(image_bytes("JPEG"))
        await c.wait_seen(new / "b.jpg")


async def test_several_folders_and_stop_event(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    c = Collector([a, b])
    await c.sentinel(a, "1.png")
    await c.sentinel(b, "2.png")
    await c.close()  # returns only if the generator honoured stop_event
    assert c.task.done() and c.task.exception() is None


async def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        async for _ in watch_complete_files([tmp_path / "nope"]):
            pass


async def test_backlog_larger_than_one_round_is_fully_yielded(out: Path, monkeypatch) -> None:
    import vaultline.adapters.watcher as watcher

    monkeypatch.setattr(watcher, "CHECKS_PER_ROUND", 2)  # 7 files need several rounds
    files = [out / f"ComfyUI_{i:05}_.png" for i in range(7)]
    for i, f in enumerate(files):
        f.write_bytes(image_bytes("PNG", (8, 8), seed=i))
    async with Collector([out]) as c:
        for f in files:
            await c.wait_seen(f)
        assert sorted(c.seen) == sorted(f.resolve() for f in files)
