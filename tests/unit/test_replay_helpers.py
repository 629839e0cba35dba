"""Pure helpers of replay: NATS subject matching (which handler gets which event on a rebuild)
and the readable causation chain of `vaultline history`."""

from __future__ import annotations

import uuid

from vaultline.adapters.bus.topology import CONSUMERS
from vaultline.bootstrap import REPLAYABLE
from vaultline.entrypoints.replay import causes, subject_matches


def test_subject_matching_follows_nats_wildcards():
    assert subject_matches("image.>", "image.generated.elena.abc")
    assert not subject_matches("image.>", "image")
    assert subject_matches("media.sent.>", "media.sent.elena.abc")
    assert not subject_matches("media.sent.>", "media.uploaded.elena.abc")
    assert subject_matches("*.*.elena.*", "sale.recorded.elena.k1")
    assert not subject_matches("*.*.elena.*", "sale.recorded.mia.k1")
    assert not subject_matches("a.b", "a.b.c")


def test_every_replayable_handler_has_a_consumer_and_no_table_is_both_projected_and_excluded():
    from vaultline.adapters.db.rebuild import NOT_COMPARED

    projected = [t.name for r in REPLAYABLE.values() for t in r.tables]
    assert set(REPLAYABLE) <= set(CONSUMERS)
    assert len(projected) == len(set(projected)) and not set(projected) & set(NOT_COMPARED)


def test_causes_name_the_causing_event_by_seq_and_type_or_its_id_when_outside_the_rows():
    a, b, outside = (str(uuid.uuid4()) for _ in range(3))
    rows = [
        {"seq": 1, "type": "image.generated", "event_id": a, "causation_id": None},
        {"seq": 2, "type": "image.cropped", "event_id": b, "causation_id": a},
        {"seq": 7, "type": "media.sent", "event_id": str(uuid.uuid4()), "causation_id": outside},
        {"seq": 8, "error": "invalid"},
    ]
    got = causes(rows)
    assert got[a] == "-" and got[b] == "#1 image.generated"
    assert got[rows[2]["event_id"]] == f"{outside[:8]} (another key)"
