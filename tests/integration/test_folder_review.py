"""Review by moving files, with the real folder watcher, LocalStorage under tmp, PostgreSQL,
NATS, the outbox relay, the tracker and the library handler."""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import pytest
from PIL import Image

from tests.integration.test_review_api import all_published, into_review, stream_types
from tests.waiting import wait_until
from vaultline.adapters.bus.broker import event_handler
from vaultline.adapters.bus.topology import ConsumerSpec
from vaultline.entrypoints.drivers.folder_review import REJECT_REASON, Outcome, watch_review_folders
from vaultline.bootstrap import Runtime
from vaultline.domain import library as lib
from vaultline.handlers import library, review

pytestmark = pytest.mark.integration

LIBRARY_SPEC = ConsumerSpec("library", ("image.approved.>", "image.rejected.>"), description="files decided images")


def library_factory(p):
    async def run(event, d):
        await library.handle(event, storage=p.storage)

    return event_handler(run)


def png(colour=(120, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 96), colour).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def folder_settings(settings, tmp_path):
    config = tmp_path / "vaultline.toml"
    config.write_text("[creators.elena]\ndefault_ppv_price_cents = 1499\n")
    return settings.model_copy(update={"config_file": config, "default_creator": "elena"})


class Library:
    def __init__(self, rt: Runtime, root: Path) -> None:
        self.rt, self.root = rt, root
        self.outcomes: list[Outcome] = []
        self.ready: set[str] = set()

    async def seed(self, creator: str = "elena") -> tuple[uuid.UUID, Path]:
        cid = uuid.uuid4()
        name = lib.file_name("ComfyUI_00001_.png", cid)
        raw, rev = lib.key(creator, lib.RAW, name), lib.key(creator, lib.REVIEW, name)
        await self.rt.ports.storage.put(raw, png((1, 2, 3)))
        await self.rt.ports.storage.put(rev, png())
        await into_review(
            self.rt, creator, cid,
            generated={"storage_key": raw, "sha256": uuid.uuid4().hex * 2, "phash": "00ff00ff00ff00ff",
                       "size_bytes": 100, "original_filename": "ComfyUI_00001_.png"},
            cropped={"cropped_key": rev, "review_key": rev, "mode_used": "chin", "face_found": True, "cut_y": 90},
            what="the image to reach review",
        )  # fmt: skip
        return cid, self.root / rev

    def outcome(self, cid: uuid.UUID, action: str, n: int = 1) -> list[Outcome]:
        found = [o for o in self.outcomes if o.content_id == str(cid) and o.action == action]
        return found if len(found) >= n else []

    async def outbox(self, cid: uuid.UUID) -> list[tuple[str, dict]]:
        rows = await self.rt.pool.fetch("SELECT subject, body FROM outbox WHERE subject LIKE $1 ORDER BY id", f"%.{cid}")
        return [(r["subject"].split(".")[1], json.loads(bytes(r["body"]))["payload"]) for r in rows]

    async def stream(self, cid: uuid.UUID) -> list[str]:
        return await stream_types(self.rt.ports.js, cid)

    async def all_published(self) -> bool:
        return await all_published(self.rt.pool)


def move(src: Path, dst_dir: Path) -> Path:
    dst_dir.mkdir(parents=True, exist_ok=True)
    dst = dst_dir / src.name
    os.rename(src, dst)  # what a file manager does within one disk
    return dst


@pytest.fixture
async def running(folder_settings):
    async with Runtime(folder_settings, ["tracker", "library"], custom={"library": (LIBRARY_SPEC, library_factory)}) as rt:
        lb = Library(rt, folder_settings.library_root.resolve())
        yield lb


def start_watcher(lb: Library, settings) -> None:
    lb.rt.add_task(
        watch_review_folders(
            lb.rt.ports.uow, settings, settings.library_root, lb.rt.stop_event,
            on_outcome=lb.outcomes.append, on_ready=lb.ready.add, rescan_interval=0.2,
        )
    )  # fmt: skip


async def test_moving_into_a_vault_folder_approves_once_at_the_default_price(running, folder_settings):
    lb = running
    cid, path = await lb.seed()
    start_watcher(lb, folder_settings)
    await wait_until(lambda: "elena" in lb.ready, what="the watcher")
    creator_dir = lb.root / "elena"
    assert all((creator_dir / "4_approved" / v).is_dir() for v in ("feed", "ppv", "archive"))

    moved = move(path, creator_dir / "4_approved" / "ppv")
    await wait_until(lambda: lb.outcome(cid, "approved"), what="the approval")
    [(kind, payload)] = await lb.outbox(cid)
    assert kind == "approved" and payload["vault"] == "ppv" and payload["price_cents"] == 1499
    assert payload["reviewer"] == "folder"
    row = await lb.rt.pool.fetchrow("SELECT status, vault, price_cents FROM content WHERE id=$1", cid)
    assert tuple(row) == ("approved", "ppv", 1499)

    await wait_until(lb.all_published, what="the relay")
    assert await lb.stream(cid) == ["image.generated", "image.cropped", "image.approved"]

    # The file changes again (someone opens and saves it): seen again, not decided again.
    moved.write_bytes(png((9, 9, 9)))
    await wait_until(lambda: lb.outcome(cid, "ignored"), what="the second sighting")
    assert lb.outcome(cid, "ignored")[0].decided
    assert len(await lb.outbox(cid)) == 1
    assert moved.exists()  # the library handler found it already filed and left it there
    assert await lb.stream(cid) == ["image.generated", "image.cropped", "image.approved"]


async def test_moving_into_rejected_rejects(running, folder_settings):
    lb = running
    cid, path = await lb.seed()
    start_watcher(lb, folder_settings)
    await wait_until(lambda: "elena" in lb.ready, what="the watcher")
    moved = move(path, lb.root / "elena" / "rejected")
    await wait_until(lambda: lb.outcome(cid, "rejected"), what="the rejection")
    [(kind, payload)] = await lb.outbox(cid)
    assert kind == "rejected" and payload["reason"] == REJECT_REASON
    assert await lb.rt.pool.fetchval("SELECT status FROM content WHERE id=$1", cid) == "rejected"
    # The library handler finds the move already done and writes the reason beside it.
    reason = moved.with_name(moved.name + ".reason.txt")
    await wait_until(reason.exists, what="the reason file")
    assert reason.read_text() == f"{REJECT_REASON}\n"


async def test_foreign_files_and_unknown_folders_are_left_alone(running, folder_settings):
    lb = running
    cid, path = await lb.seed()
    other, other_path = await lb.seed()
    start_watcher(lb, folder_settings)
    await wait_until(lambda: "elena" in lb.ready, what="the watcher")
    creator_dir = lb.root / "elena"

    holiday = creator_dir / "rejected" / "holiday.png"
    holiday.write_bytes(png())
    move(path, creator_dir / "4_approved" / "vip")
    move(other_path, creator_dir / "4_approved")  # no vault folder
    await wait_until(lambda: len(lb.outcomes) >= 3, what="three sightings")
    by_path = {o.path.name: o for o in lb.outcomes}
    assert by_path["holiday.png"].action == "ignored" and "no content id" in by_path["holiday.png"].reason
    assert lb.outcome(cid, "ignored") and "not a vault folder" in lb.outcome(cid, "ignored")[0].reason
    assert lb.outcome(other, "ignored") and "not a decision folder" in lb.outcome(other, "ignored")[0].reason
    assert holiday.exists()
    for c in (cid, other):
        assert await lb.rt.pool.fetchval("SELECT status FROM content WHERE id=$1", c) == "in_review"
        assert await lb.outbox(c) == []


async def test_the_library_handlers_own_move_after_an_api_decision_is_not_a_second_decision(running, folder_settings):
    lb = running
    cid, path = await lb.seed()
    start_watcher(lb, folder_settings)
    await wait_until(lambda: "elena" in lb.ready, what="the watcher")

    await review.approve(lb.rt.ports.uow, cid, {"vault": "feed"}, "admin")  # what POST /approve does
    filed = lb.root / "elena" / "4_approved" / "feed" / path.name
    await wait_until(filed.exists, what="the library handler to file the image")
    assert not path.exists()
    await wait_until(lambda: lb.outcome(cid, "ignored"), what="the watcher to see the filed image")
    assert lb.outcome(cid, "ignored")[0].decided and not lb.outcome(cid, "approved")
    assert [k for k, _ in await lb.outbox(cid)] == ["approved"]
    await wait_until(lb.all_published, what="the relay")
    assert await lb.stream(cid) == ["image.generated", "image.cropped", "image.approved"]


async def test_a_creator_folder_that_appears_later_is_watched(running, folder_settings):
    lb = running
    start_watcher(lb, folder_settings)
    cid, path = await lb.seed("nina")  # writes nina/1_raw and nina/3_review after the start
    await wait_until(lambda: "nina" in lb.ready, what="a watcher for the new creator")
    move(path, lb.root / "nina" / "4_approved" / "ppv")
    await wait_until(lambda: lb.outcome(cid, "approved"), what="the approval")
    [(_, payload)] = await lb.outbox(cid)
    assert payload["price_cents"] == 999  # nina is not configured: the default default


async def test_files_moved_while_nothing_watched_are_decided_at_start(running, folder_settings):
    lb = running
    cid, path = await lb.seed()
    move(path, lb.root / "elena" / "rejected")
    start_watcher(lb, folder_settings)
    await wait_until(lambda: lb.outcome(cid, "rejected"), what="the rejection at start")
    assert [k for k, _ in await lb.outbox(cid)] == ["rejected"]
