import uuid
from datetime import datetime

import pytest

from vaultline.events import (
    InvalidEvent,
    content_id_for,
    derived_id,
    new_event,
    parse_event,
    subject_for,
)


def test_subject_is_type_creator_key():
    e = new_event("image.cropped", creator="elena", key="0193abc", payload=_cropped())
    assert e.subject == "image.cropped.elena.0193abc" == subject_for("image.cropped", "elena", "0193abc")


def test_roundtrip_keeps_every_field_and_the_typed_payload():
    e = new_event("image.approved", creator="elena", key=uuid.uuid4(), payload={"vault": "ppv", "price_cents": 1299})
    back = parse_event(e.to_json())
    assert back == e
    assert back.payload.price_cents == 1299
    assert back.schema_version == 1
    assert back.occurred_at.tzinfo is not None


def test_derived_ids_are_deterministic_and_chain_correlation():
    cause = new_event("image.generated", creator="elena", key="k1", payload=_generated())
    a = new_event("image.cropped", creator="elena", key="k1", payload=_cropped(), cause=cause)
    b = new_event("image.cropped", creator="elena", key="k1", payload=_cropped(), cause=cause)
    assert a.event_id == b.event_id == derived_id(cause.event_id, "image.cropped")
    assert a.causation_id == cause.event_id
    assert a.correlation_id == cause.correlation_id == cause.event_id
    other = new_event("image.crop_failed", creator="elena", key="k1", payload={"reason": "x"}, cause=cause)
    assert other.event_id != a.event_id
    assert derived_id(cause.event_id, "media.sent", "fan1") != derived_id(cause.event_id, "media.sent", "fan2")


def test_content_id_depends_on_creator_and_bytes_only():
    assert content_id_for("elena", "ab" * 32) == content_id_for("elena", "ab" * 32)
    assert content_id_for("elena", "ab" * 32) != content_id_for("mia", "ab" * 32)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{}",
        b'{"type": "image.unknown"}',
        # unknown type
        new_event("image.approved", creator="e", key="k", payload={"vault": "feed"}).to_json().replace(b"image.approved", b"image.nope"),
        # bad payload: unknown vault
        new_event("image.approved", creator="e", key="k", payload={"vault": "feed"}).to_json().replace(b'"feed"', b'"attic"'),
        # a schema version newer than this build understands
        new_event("image.approved", creator="e", key="k", payload={"vault": "feed"}).to_json().replace(b'"schema_version":1', b'"schema_version":9'),
    ],
)
def test_invalid_events_raise_invalid_event(body):
    with pytest.raises(InvalidEvent):
        parse_event(body)


@pytest.mark.parametrize("creator,key", [("Elena", "k"), ("el ena", "k"), ("elena", "a.b"), ("elena", "a*"), ("elena", "")])
def test_creator_and_key_must_be_subject_safe(creator, key):
    with pytest.raises(ValueError):
        new_event("image.rejected", creator=creator, key=key, payload={"reason": "blurry"})


def test_ppv_needs_a_price_and_tags_are_bounded():
    with pytest.raises(ValueError):
        new_event("image.approved", creator="e", key="k", payload={"vault": "ppv"})
    with pytest.raises(ValueError):
        new_event("image.approved", creator="e", key="k", payload={"vault": "feed", "tags": ["x" * 65]})
    with pytest.raises(ValueError):
        new_event("image.approved", creator="e", key="k", payload={"vault": "ppv", "price_cents": -1})


def test_naive_timestamps_are_refused():
    with pytest.raises(ValueError):
        new_event("image.rejected", creator="e", key="k", payload={"reason": "x"}, occurred_at=datetime(2026, 1, 1))


def _generated():
    return {
        "storage_key": "elena/1_raw/x.png",
        "sha256": "0" * 64,
        "phash": "ffff0000ffff0000",
        "size_bytes": 10,
        "original_filename": "ComfyUI_00001_.png",
    }


def _cropped():
    return {"cropped_key": "elena/2_cropped/x.png", "mode_used": "chin", "face_found": True, "cut_y": 400}
