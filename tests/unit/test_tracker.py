"""The content projection through the tracker handler, with an in-memory unit of work."""

import uuid
from datetime import timedelta

import pytest

from tests.fakes import FakeUnitOfWorkFactory
from vaultline.domain.retry import PermanentError
from vaultline.events import new_event, utcnow
from vaultline.handlers import tracker

CID = uuid.uuid4()


def gen(**kw):
    return new_event(
        "image.generated",
        creator="elena",
        key=CID,
        payload={
            "storage_key": f"elena/1_raw/{CID}.png",
            "sha256": "a" * 64,
            "phash": "00ff00ff00ff00ff",
            "size_bytes": 1234,
            "original_filename": "ComfyUI_00042_.png",
            "comfy": {"seed": 42, "positive_prompt": "a portrait"},
        },
        **kw,
    )


def cropped(cause, **kw):
    return new_event(
        "image.cropped",
        creator="elena",
        key=CID,
        cause=cause,
        payload={
            "cropped_key": f"elena/2_cropped/{CID}.png",
            "review_key": f"elena/3_review/{CID}.png",
            "mode_used": "chin",
            "face_found": True,
            "faces": 1,
            "cut_y": 512,
            "confidence": 0.93,
        },
        **kw,
    )


async def test_status_moves_through_the_pipeline():
    uow = FakeUnitOfWorkFactory()
    g = gen()
    await tracker.handle(g, uow=uow)
    assert uow.db.content[CID]["status"] == "generated"
    assert uow.db.content[CID]["comfy"] == {"seed": 42, "positive_prompt": "a portrait"}
    c = cropped(g)
    await tracker.handle(c, uow=uow)
    row = uow.db.content[CID]
    assert row["status"] == "in_review"
    assert row["cut_y"] == 512 and row["face_found"] is True
    assert row["original_filename"] == "ComfyUI_00042_.png"
    a = new_event("image.approved", creator="elena", key=CID, payload={"vault": "ppv", "price_cents": 1299, "tags": ["red"]})
    await tracker.handle(a, uow=uow)
    up = new_event(
        "media.uploaded", creator="elena", key=CID, cause=a,
        payload={"platform": "local", "media_uuid": "m-1", "vault": "ppv", "vault_folder": "elena-ppv"},
    )  # fmt: skip
    await tracker.handle(up, uow=uow)
    row = uow.db.content[CID]
    assert (row["status"], row["price_cents"], row["tags"], row["fanvue_media_uuid"], row["fanvue_vault"]) == (
        "uploaded", 1299, ["red"], "m-1", "elena-ppv",
    )  # fmt: skip
    assert row["uploaded_at"] == up.occurred_at


async def test_duplicate_delivery_has_no_effect():
    uow = FakeUnitOfWorkFactory()
    g = gen()
    assert await tracker.handle(g, uow=uow) is True
    uow.db.content[CID]["status"] = "tampered"  # a second projection would overwrite this
    assert await tracker.handle(g, uow=uow) is False
    assert uow.db.content[CID]["status"] == "tampered"


async def test_out_of_order_delivery_keeps_the_newest_status_and_all_fields():
    uow = FakeUnitOfWorkFactory()
    now = utcnow()
    g = gen(occurred_at=now)
    c = cropped(g, occurred_at=now + timedelta(seconds=2))
    await tracker.handle(c, uow=uow)
    await tracker.handle(g, uow=uow)
    row = uow.db.content[CID]
    assert row["status"] == "in_review"
    assert row["sha256"] == "a" * 64 and row["cut_y"] == 512


async def test_non_content_key_is_a_permanent_error():
    bad = new_event("image.rejected", creator="elena", key="not-a-uuid", payload={"reason": "x"})
    with pytest.raises(PermanentError):
        await tracker.handle(bad, uow=FakeUnitOfWorkFactory())


async def test_events_outside_the_projection_are_recorded_but_change_nothing():
    uow = FakeUnitOfWorkFactory()
    sale = new_event(
        "sale.recorded", creator="elena", key=CID,
        payload={"dedupe_key": "local:s1", "kind": "tip", "gross_cents": 500, "platform": "local",
                 "source": "local", "sold_at": "2026-01-01T00:00:00Z"},
    )  # fmt: skip
    assert await tracker.handle(sale, uow=uow) is True
    assert uow.db.content == {}
