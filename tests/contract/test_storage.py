"""One set of Storage cases run against the in-memory fake, local folders and S3 (moto server).

If the fake and the real adapters disagree on any case, unit tests written against the fake
would prove nothing, so every case runs against all of them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from vaultline.adapters.storage import InMemoryStorage, LocalStorage
from vaultline.adapters.storage.local import TEMP_SUFFIX
from vaultline.handlers.ports import Storage

ALL_BYTES = bytes(range(256)) * 17  # binary-safe: every byte value, not a multiple of 256 rows


@pytest.fixture
async def s3_prefixed_storage(s3_endpoint, s3_bucket, s3_credentials) -> AsyncIterator[object]:
    # Same bucket API with a key prefix, to prove the prefix is added and stripped everywhere.
    from vaultline.adapters.storage.s3 import S3Storage

    async with S3Storage(
        s3_bucket,
        endpoint_url=s3_endpoint,
        region=s3_credentials["region"],
        prefix="library/",
        access_key=s3_credentials["access_key"],
        secret_key=s3_credentials["secret_key"],
    ) as storage:
        # A foreign object outside the prefix must never show up in listings.
        await storage._client.put_object(Bucket=s3_bucket, Key="elsewhere/elena/1_raw/z.png", Body=b"x")
        yield storage


@pytest.fixture(params=["memory", "local", "s3", "s3_prefixed"])
def storage(request, tmp_path: Path) -> Storage:
    if request.param == "memory":
        return InMemoryStorage()
    if request.param == "local":
        return LocalStorage(tmp_path / "library")
    if request.param == "s3":
        return request.getfixturevalue("s3_storage")
    return request.getfixturevalue("s3_prefixed_storage")


async def test_implements_the_port(storage: Storage) -> None:
    assert isinstance(storage, Storage)


async def test_put_get_roundtrip(storage: Storage) -> None:
    await storage.put("elena/1_raw/a.png", ALL_BYTES, "image/png")
    assert await storage.get("elena/1_raw/a.png") == ALL_BYTES


async def test_empty_object_roundtrip(storage: Storage) -> None:
    await storage.put("elena/1_raw/empty.png", b"")
    assert await storage.get("elena/1_raw/empty.png") == b""
    assert await storage.exists("elena/1_raw/empty.png")


async def test_overwrite_same_key(storage: Storage) -> None:
    await storage.put("elena/1_raw/a.png", b"first version, longer")
    await storage.put("elena/1_raw/a.png", b"second")
    assert await storage.get("elena/1_raw/a.png") == b"second"
    assert await storage.list("elena/") == ["elena/1_raw/a.png"]


async def test_get_missing_raises_keyerror(storage: Storage) -> None:
    with pytest.raises(KeyError):
        await storage.get("elena/1_raw/missing.png")


async def test_exists(storage: Storage) -> None:
    assert not await storage.exists("elena/1_raw/a.png")
    await storage.put("elena/1_raw/a.png", b"x")
    assert await storage.exists("elena/1_raw/a.png")
    # A "folder" is not an object.
    assert not await storage.exists("elena/1_raw")


async def test_delete_and_delete_missing(storage: Storage) -> None:
    await storage.put("elena/1_raw/a.png", b"x")
    await storage.delete("elena/1_raw/a.png")
    assert not await storage.exists("elena/1_raw/a.png")
    with pytest.raises(KeyError):
        await storage.get("elena/1_raw/a.png")
    await storage.delete("elena/1_raw/a.png")  # again: not an error
    await storage.delete("nobody/never/was.png")


async def test_move(storage: Storage) -> None:
    await storage.put("elena/2_cropped/a.png", b"cropped")
    await storage.move("elena/2_cropped/a.png", "elena/4_approved/ppv/a.png")
    assert not await storage.exists("elena/2_cropped/a.png")
    assert await storage.get("elena/4_approved/ppv/a.png") == b"cropped"


async def test_move_overwrites_destination(storage: Storage) -> None:
    await storage.put("elena/3_review/a.png", b"new")
    await storage.put("elena/rejected/a.png", b"old")
    await storage.move("elena/3_review/a.png", "elena/rejected/a.png")
    assert await storage.get("elena/rejected/a.png") == b"new"
    assert await storage.list("elena/") == ["elena/rejected/a.png"]


async def test_move_missing_raises_keyerror_and_leaves_destination(storage: Storage) -> None:
    await storage.put("elena/4_approved/feed/b.png", b"keep me")
    with pytest.raises(KeyError):
        await storage.move("elena/3_review/missing.png", "elena/4_approved/feed/b.png")
    assert await storage.get("elena/4_approved/feed/b.png") == b"keep me"


async def test_move_onto_itself_is_a_noop(storage: Storage) -> None:
    await storage.put("elena/1_raw/a.png", b"x")
    await storage.move("elena/1_raw/a.png", "elena/1_raw/a.png")
    assert await storage.get("elena/1_raw/a.png") == b"x"
    with pytest.raises(KeyError):
        await storage.move("elena/1_raw/none.png", "elena/1_raw/none.png")


async def test_list_by_prefix_sorted(storage: Storage) -> None:
    keys = [
        "elena/1_raw/c.png",
        "elena/1_raw/a.png",
        "elena/2_cropped/b.png",
        "elena/1_raw/b.png",
        "mira/1_raw/a.png",
        "elena/4_approved/ppv/z.png",
    ]
    for k in keys:
        await storage.put(k, k.encode())
    assert await storage.list("elena/1_raw/") == ["elena/1_raw/a.png", "elena/1_raw/b.png", "elena/1_raw/c.png"]
    assert await storage.list("elena/") == sorted(k for k in keys if k.startswith("elena/"))
    assert await storage.list() == sorted(keys)
    # A prefix is a string prefix (S3 semantics), not only a whole folder.
    assert await storage.list("elena/1_r") == ["elena/1_raw/a.png", "elena/1_raw/b.png", "elena/1_raw/c.png"]
    assert await storage.list("elena/1_raw/b") == ["elena/1_raw/b.png"]
    assert await storage.list("nobody/") == []
    assert await storage.list("elena/9_none/") == []


async def test_nested_folders(storage: Storage) -> None:
    key = "elena/5_uploaded/ppv/2025/10/deep/a.webp"
    await storage.put(key, b"deep")
    assert await storage.get(key) == b"deep"
    assert await storage.list("elena/5_uploaded/") == [key]
    await storage.move(key, "elena/rejected/a.webp")
    assert await storage.list("elena/") == ["elena/rejected/a.webp"]


BAD_KEYS = [
    "../escape.png", "elena/../../escape.png", "/etc/passwd", "elena\\1_raw\\a.png", "", "elena//a.png",
    "./a.png", "elena/..", "elena/.hidden.png", "a\x00b",
]


async def test_key_escaping_root_refused(storage: Storage) -> None:
    # One test looping over the keys (not parametrized): each S3 setup costs a bucket.
    await storage.put("elena/1_raw/ok.png", b"ok")
    for bad in BAD_KEYS:
        for call in (
            lambda: storage.put(bad, b"x"),
            lambda: storage.get(bad),
            lambda: storage.exists(bad),
            lambda: storage.delete(bad),
            lambda: storage.move("elena/1_raw/ok.png", bad),
            lambda: storage.move(bad, "elena/1_raw/ok2.png"),
        ):
            with pytest.raises(ValueError):
                await call()
    assert await storage.list() == ["elena/1_raw/ok.png"]
    assert await storage.get("elena/1_raw/ok.png") == b"ok"
    with pytest.raises(ValueError):
        await storage.list("../")


async def test_concurrent_puts_same_key_leave_one_whole_value(storage: Storage) -> None:
    values = [bytes([i]) * (1000 + i) for i in range(8)]
    await asyncio.gather(*(storage.put("elena/1_raw/race.png", v) for v in values))
    assert await storage.get("elena/1_raw/race.png") in values
    assert await storage.list("elena/") == ["elena/1_raw/race.png"]


# ----------------------------------------------------------------------------- local only


def _all_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


async def test_local_keys_map_onto_operator_folders(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path)
    await s.put("elena/4_approved/ppv/a.png", b"x")
    assert (tmp_path / "elena" / "4_approved" / "ppv" / "a.png").read_bytes() == b"x"
    assert s.path_for("elena/1_raw/b.png") == tmp_path.resolve() / "elena" / "1_raw" / "b.png"
    assert s.key_for(tmp_path / "elena" / "4_approved" / "ppv" / "a.png") == "elena/4_approved/ppv/a.png"
    with pytest.raises(ValueError):
        s.key_for(tmp_path.parent / "outside.png")
    with pytest.raises(ValueError):
        s.path_for("../outside.png")


async def test_local_refused_keys_touch_nothing_outside_root(tmp_path: Path) -> None:
    root = tmp_path / "library"
    s = LocalStorage(root)
    for bad in ("../escape.png", "/tmp/escape.png", "a/../../escape.png"):
        with pytest.raises(ValueError):
            await s.put(bad, b"x")
    assert _all_files(tmp_path) == []


async def test_local_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path)
    for i in range(3):
        await s.put("elena/1_raw/a.png", bytes([i]) * 5000)
    await s.put("elena/1_raw/b.png", b"b")
    assert _all_files(tmp_path) == ["elena/1_raw/a.png", "elena/1_raw/b.png"]
    assert (tmp_path / "elena/1_raw/a.png").read_bytes() == bytes([2]) * 5000


async def test_local_failed_write_keeps_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    s = LocalStorage(tmp_path)
    await s.put("elena/1_raw/a.png", b"old complete file")

    def crash(src, dst):  # the process "dies" between writing the temp file and the rename
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        await s.put("elena/1_raw/a.png", b"new")
    monkeypatch.undo()
    assert (tmp_path / "elena/1_raw/a.png").read_bytes() == b"old complete file"
    assert _all_files(tmp_path) == ["elena/1_raw/a.png"]


async def test_local_written_file_has_normal_permissions(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path)
    await s.put("elena/1_raw/a.png", b"x")
    mode = (tmp_path / "elena/1_raw/a.png").stat().st_mode & 0o777
    # mkstemp's 0600 would hide files from the operator's other tools (ComfyUI, file shares).
    assert mode & 0o044, oct(mode)


async def test_local_list_ignores_temp_and_hidden_files(tmp_path: Path) -> None:
    s = LocalStorage(tmp_path)
    await s.put("elena/1_raw/a.png", b"x")
    (tmp_path / "elena/1_raw" / f".a.png.abc{TEMP_SUFFIX}").write_bytes(b"half")
    (tmp_path / "elena/1_raw/.DS_Store").write_bytes(b"")
    (tmp_path / "elena/.thumbnails").mkdir()
    (tmp_path / "elena/.thumbnails/t.png").write_bytes(b"")
    assert await s.list() == ["elena/1_raw/a.png"]
    assert await s.list("elena/1_raw/") == ["elena/1_raw/a.png"]


async def test_local_list_on_missing_root_is_empty(tmp_path: Path) -> None:
    assert await LocalStorage(tmp_path / "not-yet").list() == []


# ----------------------------------------------------------------------------- s3 only


async def test_s3_list_follows_pagination(s3_storage) -> None:
    s3_storage.list_page_size = 2  # 7 keys -> 4 pages; an unpaginated list would return 2
    keys = [f"elena/1_raw/{i:02}.png" for i in range(7)]
    for k in reversed(keys):
        await s3_storage.put(k, b"x")
    assert await s3_storage.list("elena/") == keys


async def test_s3_opens_lazily_and_reopens_after_close(s3_endpoint, s3_bucket, s3_credentials) -> None:
    from vaultline.adapters.storage.s3 import S3Storage

    s = S3Storage(
        s3_bucket,
        endpoint_url=s3_endpoint,
        access_key=s3_credentials["access_key"],
        secret_key=s3_credentials["secret_key"],
    )
    try:
        await s.put("elena/1_raw/a.png", b"x")  # no explicit open(): opened on first use
        await s.close()
        assert await s.get("elena/1_raw/a.png") == b"x"
    finally:
        await s.close()
