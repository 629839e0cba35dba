"""The crop handler's logic with fakes: keys, events, bad input, recrop. (The crop engine
itself is tested with real faces in test_cropper_faces.py.)"""

import uuid
from dataclasses import dataclass

from tests.fakes import FakePublisher
from vaultline.adapters.storage import InMemoryStorage
from vaultline.events import ImageCropped, derived_id, new_event
from vaultline.handlers import crop
from vaultline.handlers.crop import BadCropInput

CID = uuid.uuid4()
RAW = f"elena/1_raw/ComfyUI_00001_--{CID}.png"


@dataclass
class StubResult:
    archive_png: bytes
    upload_png: bytes

    def to_cropped_payload(self, cropped_key, review_key=None):
        return ImageCropped(
            cropped_key=cropped_key, review_key=review_key, mode_used="chin", face_found=True, faces=1, cut_y=321
        )


class StubCrop:
    def __init__(self, fail: str | None = None):
        self.calls: list[tuple[bytes, str]] = []
        self.fail = fail

    async def __call__(self, data: bytes, mode: str):
        self.calls.append((data, mode))
        if self.fail:
            raise BadCropInput(self.fail)
        return StubResult(b"archive:" + data, b"upload:" + data)


def generated(mode="chin"):
    return new_event(
        "image.generated",
        creator="elena",
        key=CID,
        payload={
            "storage_key": RAW,
            "sha256": "b" * 64,
            "phash": "0" * 16,
            "size_bytes": 3,
            "original_filename": "ComfyUI_00001_.png",
            "crop_mode": mode,
        },
    )


async def test_crop_writes_archive_and_review_copies_and_publishes_cropped():
    storage, pub, stub = InMemoryStorage(), FakePublisher(), StubCrop()
    await storage.put(RAW, b"img")
    g = generated()
    out = await crop.handle(g, storage=storage, crop=stub, publisher=pub)
    name = f"ComfyUI_00001_--{CID}.png"
    assert stub.calls == [(b"img", "chin")]
    assert await storage.get(f"elena/2_cropped/{name}") == b"archive:img"
    assert await storage.get(f"elena/3_review/{name}") == b"upload:img"
    assert await storage.get(RAW) == b"img"  # the original stays in 1_raw/
    assert [e.type for e in pub.events] == ["image.cropped"]
    assert out.event_id == derived_id(g.event_id, "image.cropped")
    assert out.causation_id == g.event_id and out.correlation_id == g.correlation_id
    assert out.payload.review_key == f"elena/3_review/{name}"


async def test_redelivery_rewrites_the_same_objects_and_the_same_event():
    storage, pub, stub = InMemoryStorage(), FakePublisher(), StubCrop()
    await storage.put(RAW, b"img")
    g = generated()
    first = await crop.handle(g, storage=storage, crop=stub, publisher=pub)
    second = await crop.handle(g, storage=storage, crop=stub, publisher=pub)
    assert first.event_id == second.event_id
    assert len(pub.events) == 1
    assert sorted(await storage.list("elena/")) == sorted(
        [RAW, f"elena/2_cropped/ComfyUI_00001_--{CID}.png", f"elena/3_review/ComfyUI_00001_--{CID}.png"]
    )


async def test_bad_input_moves_the_original_to_rejected_with_a_reason():
    storage, pub = InMemoryStorage(), FakePublisher()
    await storage.put(RAW, b"not an image")
    out = await crop.handle(generated(), storage=storage, crop=StubCrop(fail="truncated PNG"), publisher=pub)
    rejected = f"elena/rejected/ComfyUI_00001_--{CID}.png"
    assert out.type == "image.crop_failed"
    assert out.payload.reason == "truncated PNG" and out.payload.rejected_key == rejected
    assert not await storage.exists(RAW)
    assert await storage.get(rejected) == b"not an image"
    assert await storage.get(rejected + ".reason.txt") == b"truncated PNG\n"
    assert [e.type for e in pub.events] == ["image.crop_failed"]


async def test_missing_original_is_reported_not_raised():
    out = await crop.handle(generated(), storage=InMemoryStorage(), crop=StubCrop(), publisher=FakePublisher())
    assert out.type == "image.crop_failed" and "missing" in out.payload.reason


async def test_recrop_uses_the_requested_mode_and_gets_its_own_event():
    storage, pub, stub = InMemoryStorage(), FakePublisher(), StubCrop()
    await storage.put(RAW, b"img")
    first = await crop.handle(generated("no_face"), storage=storage, crop=stub, publisher=pub)
    recrop = new_event(
        "image.recrop_requested", creator="elena", key=CID,
        payload={"mode": "lips_only", "raw_key": RAW, "original_filename": "ComfyUI_00001_.png"},
    )  # fmt: skip
    second = await crop.handle(recrop, storage=storage, crop=stub, publisher=pub)
    assert stub.calls[-1] == (b"img", "lips_only")
    assert second.event_id != first.event_id and len(pub.events) == 2
    assert second.payload.review_key == first.payload.review_key  # the review copy is replaced


async def test_other_events_are_ignored():
    e = new_event("image.rejected", creator="elena", key=CID, payload={"reason": "x"})
    assert await crop.handle(e, storage=InMemoryStorage(), crop=StubCrop(), publisher=FakePublisher()) is None


async def test_a_long_crop_in_a_thread_keeps_its_message_alive():
    import asyncio
    import threading

    storage, pub, beats = InMemoryStorage(), FakePublisher(), []
    await storage.put(RAW, b"img")
    released = threading.Event()

    async def slow_crop(data, mode):
        def work():  # CPU work in a thread: the event loop stays free to beat
            assert released.wait(10), "no heartbeats while the crop ran"
            return StubResult(b"a", b"u")

        return await asyncio.to_thread(work)

    async def heartbeat():
        beats.append(1)
        if len(beats) >= 3:
            released.set()

    out = await crop.handle(
        generated(), storage=storage, crop=slow_crop, publisher=pub, heartbeat=heartbeat, heartbeat_every=0.01
    )
    assert out.type == "image.cropped" and len(beats) >= 3
