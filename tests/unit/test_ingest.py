"""The ingest use case with fakes: dedupe by bytes, near-duplicate flag, the raw copy."""

import pytest

from tests.fakes import FakeContentIndex, FakePublisher
from tests.images import Placement, face_png, noise_image, png_bytes
from vaultline.adapters.image_facts import describe_image
from vaultline.adapters.storage import InMemoryStorage
from vaultline.events import content_id_for, derived_id
from vaultline.handlers.ingest import ingest


@pytest.fixture(scope="module")
def face():
    return face_png([Placement("astronaut")])


async def run(data, index, storage, pub, filename="ComfyUI_00001_.png", creator="elena", mode="chin"):
    return await ingest(
        data, describe_image(data), creator=creator, filename=filename, mode=mode, source="test",
        storage=storage, publisher=pub, index=index,
    )  # fmt: skip


async def test_ingest_copies_raw_and_publishes_generated(face):
    index, storage, pub = FakeContentIndex(), InMemoryStorage(), FakePublisher()
    r = await run(face, index, storage, pub)
    cid = content_id_for("elena", describe_image(face).sha256)
    assert r.status == "ingested" and r.content_id == cid
    assert r.storage_key == f"elena/1_raw/ComfyUI_00001_--{cid}.png"
    assert await storage.get(r.storage_key) == face
    (event,) = pub.events
    assert event.type == "image.generated" and event.key == str(cid)
    assert event.event_id == derived_id(cid, "image.generated")
    p = event.payload
    assert (p.width, p.height, p.crop_mode, p.size_bytes) == (832, 1216, "chin", len(face))
    assert len(p.phash) == 16


async def test_same_bytes_under_another_name_is_the_same_content(face):
    index, storage, pub = FakeContentIndex(), InMemoryStorage(), FakePublisher()
    a = await run(face, index, storage, pub, filename="a.png")
    b = await run(face, index, storage, pub, filename="copy of a.png")  # before the tracker caught up
    assert a.content_id == b.content_id and a.event_id == b.event_id
    assert len(pub.events) == 1  # the stream's duplicate window drops the second
    index.add(a.content_id, "elena", pub.events[0].payload.phash)  # the tracker caught up
    c = await run(face, index, storage, pub, filename="third.png")
    assert c.status == "duplicate" and len(pub.events) == 1


async def test_same_bytes_for_another_creator_is_separate_content(face):
    index, storage, pub = FakeContentIndex(), InMemoryStorage(), FakePublisher()
    a = await run(face, index, storage, pub, creator="elena")
    b = await run(face, index, storage, pub, creator="mia")
    assert a.content_id != b.content_id and len(pub.events) == 2


async def test_near_duplicate_is_ingested_but_flagged(face):
    index, storage, pub = FakeContentIndex(), InMemoryStorage(), FakePublisher()
    first = await run(face, index, storage, pub)
    index.add(first.content_id, "elena", pub.events[0].payload.phash)
    # The same picture re-encoded with a text chunk: other bytes, same perceptual hash.
    from PIL import Image
    import io

    again = png_bytes(Image.open(io.BytesIO(face)), text={"note": "re-saved"})
    second = await run(again, index, storage, pub, filename="resaved.png")
    assert second.status == "ingested" and second.content_id != first.content_id
    assert second.near_duplicate_of == first.content_id
    assert pub.events[-1].payload.near_duplicate_of == first.content_id
    assert pub.events[-1].payload.phash_distance <= 6
    other = await run(png_bytes(noise_image(3)), index, storage, pub, filename="noise.png")
    assert other.near_duplicate_of is None


async def test_undecodable_bytes_are_still_ingested_for_the_crop_handler_to_reject():
    index, storage, pub = FakeContentIndex(), InMemoryStorage(), FakePublisher()
    r = await run(b"\x89PNG\r\n\x1a\n truncated", index, storage, pub, filename="broken.png")
    assert r.status == "ingested"
    assert pub.events[0].payload.phash == "" and pub.events[0].payload.width is None
