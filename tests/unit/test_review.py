"""Review decisions (handlers/review.py) and the library handler's file moves, with in-memory
fakes: one transaction per decision, one event per decision, nothing written on an error."""

from __future__ import annotations

import copy
import uuid
from datetime import timedelta

import pytest

from tests.fakes import FakeUnitOfWorkFactory
from vaultline.adapters.storage.memory import InMemoryStorage
from vaultline.domain.content import project
from vaultline.events import new_event, utcnow
from vaultline.handlers import library, review, tracker
from vaultline.handlers.review import Conflict, Invalid, NotFound

CID = uuid.uuid4()
NAME = f"ComfyUI_00042_--{CID}.png"


def generated(cid: uuid.UUID = CID):
    return new_event(
        "image.generated",
        creator="elena",
        key=cid,
        payload={"storage_key": f"elena/1_raw/{NAME}", "sha256": "a" * 64, "phash": "00ff00ff00ff00ff",
                 "size_bytes": 1234, "original_filename": "ComfyUI_00042_.png"},
    )  # fmt: skip


def cropped(cause, cid: uuid.UUID = CID, **kw):
    return new_event(
        "image.cropped",
        creator="elena",
        key=cid,
        cause=cause,
        payload={"cropped_key": f"elena/2_cropped/{NAME}", "review_key": f"elena/3_review/{NAME}",
                 "mode_used": "chin", "face_found": True, "faces": 1, "cut_y": 512},
        **kw,
    )  # fmt: skip


async def in_review(uow: FakeUnitOfWorkFactory, cid: uuid.UUID = CID, **kw) -> None:
    g = generated(cid)
    await tracker.handle(g, uow=uow)
    await tracker.handle(cropped(g, cid, **kw), uow=uow)
    assert uow.db.content[cid]["status"] == "in_review"


@pytest.fixture
async def uow() -> FakeUnitOfWorkFactory:
    u = FakeUnitOfWorkFactory()
    await in_review(u)
    return u


def snapshot(uow: FakeUnitOfWorkFactory):
    return copy.deepcopy(uow.db.content), list(uow.db.outbox)


# --------------------------------------------------------------------------- approve


async def test_approve_updates_the_row_and_queues_one_event(uow):
    decision = {"vault": "ppv", "price_cents": 1299, "tags": [" red ", "lingerie", "red"], "category": "lingerie"}
    row = await review.approve(uow, CID, decision, "alice")
    assert row["status"] == "approved" and row["vault"] == "ppv" and row["price_cents"] == 1299
    assert row["tags"] == ["red", "lingerie"]  # trimmed, de-duplicated
    assert uow.db.content[CID] == row
    [event] = uow.db.outbox
    assert event.type == "image.approved" and event.key == str(CID) and event.creator == "elena"
    assert event.subject == f"image.approved.elena.{CID}"
    assert event.payload.reviewer == "alice" and event.payload.category == "lingerie"


async def test_the_row_matches_what_the_tracker_computes_from_the_event(uow):
    before = copy.deepcopy(uow.db.content[CID])
    row = await review.approve(uow, CID, {"vault": "feed"}, "alice")
    [event] = uow.db.outbox
    assert project(before, event) == row
    # ...and the tracker projecting the event from the stream later changes nothing.
    await tracker.handle(event, uow=uow)
    assert uow.db.content[CID] == row


async def test_status_moves_even_when_the_crop_event_carries_a_clock_ahead_of_ours():
    uow = FakeUnitOfWorkFactory()
    await in_review(uow, occurred_at=utcnow() + timedelta(minutes=5))
    row = await review.approve(uow, CID, {"vault": "feed"}, "alice")
    assert row["status"] == "approved"
    with pytest.raises(Conflict):
        await review.reject(uow, CID, "no", "bob")


async def test_approve_keeps_tags_set_during_review_unless_the_decision_has_tags(uow):
    await review.set_tags(uow, CID, ["beach"])
    row = await review.approve(uow, CID, {"vault": "feed"}, "alice")
    assert row["tags"] == ["beach"] and uow.db.outbox[0].payload.tags == ["beach"]

    other = uuid.uuid4()
    await in_review(uow, other)
    await review.set_tags(uow, other, ["beach"])
    row = await review.approve(uow, other, {"vault": "feed", "tags": []}, "alice")
    assert row["tags"] == []


async def test_deciding_twice_is_a_conflict_and_never_a_second_event(uow):
    await review.approve(uow, CID, {"vault": "feed"}, "alice")
    state = snapshot(uow)
    with pytest.raises(Conflict, match="already decided"):
        await review.approve(uow, CID, {"vault": "feed"}, "alice")
    with pytest.raises(Conflict):
        await review.reject(uow, CID, "changed my mind", "bob")
    with pytest.raises(Conflict):
        await review.request_recrop(uow, CID, "lips_only", "bob")
    assert snapshot(uow) == state
    assert len(uow.db.outbox) == 1


async def test_items_not_in_review_are_a_conflict():
    uow = FakeUnitOfWorkFactory()
    await tracker.handle(generated(), uow=uow)  # generated, not cropped yet
    with pytest.raises(Conflict, match="not in review"):
        await review.approve(uow, CID, {"vault": "feed"}, "alice")
    assert uow.db.outbox == []


async def test_unknown_id_is_not_found(uow):
    with pytest.raises(NotFound):
        await review.approve(uow, uuid.uuid4(), {"vault": "feed"}, "alice")
    with pytest.raises(NotFound):
        await review.set_tags(uow, uuid.uuid4(), ["a"])
    assert uow.db.outbox == []


@pytest.mark.parametrize(
    "decision, message",
    [
        ({"vault": "vip"}, "vault: Input should be 'feed', 'ppv' or 'archive'"),
        ({}, "vault: Field required"),
        ({"vault": "ppv"}, "a ppv approval needs a positive price_cents"),
        ({"vault": "ppv", "price_cents": 0}, "a ppv approval needs a positive price_cents"),
        ({"vault": "ppv", "price_cents": -5}, "price_cents: Input should be greater than or equal to 0"),
        ({"vault": "ppv", "price_cents": "1299"}, "price_cents must be a whole number of cents"),
        ({"vault": "ppv", "price_cents": True}, "price_cents must be a whole number of cents"),
        ({"vault": "ppv", "price_cents": 12.5}, "price_cents must be a whole number of cents"),
        ({"vault": "feed", "tags": ["x" * 65]}, "tags must be 1-64 characters"),
        ({"vault": "feed", "tags": ["  "]}, "tags must be 1-64 characters"),
        ({"vault": "feed", "tags": [f"t{i}" for i in range(33)]}, "at most 32 tags"),
        ({"vault": "feed", "tags": "a,b"}, "tags must be a list of strings"),
        ({"vault": "feed", "category": "c" * 65}, "category: String should have at most 64 characters"),
        ({"vault": "feed", "description": "d" * 2001}, "description: String should have at most 2000 characters"),
        ({"vault": "feed", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"vault": "feed", "reviewer": "mallory"}, "reviewer is set by the server"),
        ({"vault": "feed", "post": {"audience": "everyone"}}, "post.audience"),
        ("feed", "the decision must be a JSON object"),
    ],
)
async def test_invalid_approvals_say_why_and_write_nothing(uow, decision, message):
    state = snapshot(uow)
    with pytest.raises(Invalid) as e:
        await review.approve(uow, CID, decision, "alice")
    assert message in e.value.message
    assert e.value.status == 400
    assert "https://errors.pydantic.dev" not in e.value.message
    assert snapshot(uow) == state


async def test_invalid_input_is_reported_before_looking_up_the_id(uow):
    with pytest.raises(Invalid):
        await review.approve(uow, uuid.uuid4(), {"vault": "vip"}, "alice")


# --------------------------------------------------------------------------- reject / recrop / tags


async def test_reject(uow):
    row = await review.reject(uow, CID, "  hands look wrong ", "bob")
    assert row["status"] == "rejected" and row["reject_reason"] == "hands look wrong"
    [event] = uow.db.outbox
    assert event.type == "image.rejected" and event.payload.reviewer == "bob"


@pytest.mark.parametrize("reason", ["", "   ", "r" * 501, None, 42])
async def test_reject_needs_a_reason(uow, reason):
    state = snapshot(uow)
    with pytest.raises(Invalid, match="reason"):
        await review.reject(uow, CID, reason, "bob")
    assert snapshot(uow) == state


async def test_recrop_asks_the_crop_handler_for_another_mode(uow):
    row = await review.request_recrop(uow, CID, "lips_only", "bob")
    assert row["status"] == "recrop_requested" and row["requested_crop_mode"] == "lips_only"
    [event] = uow.db.outbox
    assert event.type == "image.recrop_requested"
    assert event.payload.raw_key == f"elena/1_raw/{NAME}"
    assert event.payload.original_filename == "ComfyUI_00042_.png"
    with pytest.raises(Conflict):
        await review.request_recrop(uow, CID, "chin", "bob")


async def test_recrop_with_an_unknown_mode_writes_nothing(uow):
    state = snapshot(uow)
    with pytest.raises(Invalid, match="mode"):
        await review.request_recrop(uow, CID, "sideways", "bob")
    assert snapshot(uow) == state


async def test_set_tags_works_in_any_status_without_an_event(uow):
    await review.approve(uow, CID, {"vault": "feed", "tags": ["a"]}, "alice")
    row = await review.set_tags(uow, CID, ["b", " c ", "b"])
    assert row["tags"] == ["b", "c"] and uow.db.content[CID]["tags"] == ["b", "c"]
    assert row["status"] == "approved"
    assert [e.type for e in uow.db.outbox] == ["image.approved"]


async def test_set_tags_validation_writes_nothing(uow):
    state = snapshot(uow)
    for bad in (["x" * 65], [""], [1], "a", [f"t{i}" for i in range(33)]):
        with pytest.raises(Invalid):
            await review.set_tags(uow, CID, bad)
    assert snapshot(uow) == state


def test_parse_id():
    assert review.parse_id(str(CID)) == CID
    with pytest.raises(Invalid, match="not a content id"):
        review.parse_id("../etc/passwd")


# --------------------------------------------------------------------------- library handler


def decision(type_: str, cid: uuid.UUID = CID, **payload):
    return new_event(type_, creator="elena", key=cid, payload=payload)


@pytest.fixture
async def storage() -> InMemoryStorage:
    s = InMemoryStorage()
    await s.put(f"elena/3_review/{NAME}", b"png")
    await s.put(f"elena/3_review/other--{uuid.uuid4()}.png", b"other")
    return s


async def test_library_files_approved_images_into_their_vault_once(storage):
    event = decision("image.approved", vault="ppv", price_cents=999)
    assert await library.handle(event, storage=storage) == [f"elena/4_approved/ppv/{NAME}"]
    assert await storage.get(f"elena/4_approved/ppv/{NAME}") == b"png"
    assert not await storage.exists(f"elena/3_review/{NAME}")
    # Redelivered: already done, nothing else moves.
    before = dict(storage.objects)
    assert await library.handle(event, storage=storage) == [f"elena/4_approved/ppv/{NAME}"]
    assert storage.objects == before


async def test_library_files_rejected_images_with_their_reason(storage):
    event = decision("image.rejected", reason="blurry")
    await library.handle(event, storage=storage)
    assert await storage.get(f"elena/rejected/{NAME}") == b"png"
    assert await storage.get(f"elena/rejected/{NAME}.reason.txt") == b"blurry\n"
    assert len(await storage.list("elena/3_review/")) == 1  # the other image stays


async def test_library_when_the_file_is_nowhere_logs_and_returns(storage):
    missing = uuid.uuid4()
    before = dict(storage.objects)
    assert await library.handle(decision("image.approved", missing, vault="feed"), storage=storage) == []
    assert storage.objects == before


async def test_library_ignores_other_events(storage):
    before = dict(storage.objects)
    assert await library.handle(generated(), storage=storage) == []
    assert storage.objects == before


async def test_library_leaves_an_image_the_upload_handler_already_filed(storage):
    await storage.move(f"elena/3_review/{NAME}", f"elena/5_uploaded/feed/{NAME}")
    before = dict(storage.objects)
    assert await library.handle(decision("image.approved", vault="feed"), storage=storage) == []
    assert storage.objects == before


async def test_retry_upload_only_for_failed_uploads_and_puts_it_back_in_the_queue():
    import uuid as _uuid

    from tests.fakes import FakeUnitOfWorkFactory
    from vaultline.handlers import review as rv

    uow = FakeUnitOfWorkFactory()
    cid = _uuid.uuid4()
    uow.db.content[cid] = {"id": cid, "creator": "elena", "status": "in_review", "tags": []}
    with pytest.raises(rv.Conflict):
        await rv.retry_upload(uow, cid, "op")
    assert uow.db.outbox == []
    uow.db.content[cid]["status"] = "upload_failed"
    row = await rv.retry_upload(uow, cid, "op")
    assert row["status"] == "approved"
    (event,) = uow.db.outbox
    assert event.type == "media.upload_retry_requested" and event.key == str(cid)
    with pytest.raises(rv.NotFound):
        await rv.retry_upload(uow, _uuid.uuid4(), "op")
