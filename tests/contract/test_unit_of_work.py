"""One set of cases for the in-memory unit of work (used by unit tests) and the Postgres one."""

from __future__ import annotations

import uuid

import pytest

from tests.fakes import FakeUnitOfWorkFactory
from vaultline.adapters.db import PostgresUnitOfWorkFactory
from vaultline.events import new_event


async def outbox_ids(uow) -> list[uuid.UUID]:
    if isinstance(uow, FakeUnitOfWorkFactory):
        return [e.event_id for e in uow.db.outbox]
    rows = await uow.pool.fetch("SELECT event_id FROM outbox ORDER BY id")
    return [r["event_id"] for r in rows]


def row(cid: uuid.UUID, **kw):
    return {"id": cid, "creator": "elena", "status": "generated", "tags": ["a", "b"], **kw}


class UnitOfWorkContract:
    """The cases; subclasses provide the `uow` fixture."""

    async def test_first_time_is_true_once_per_handler_and_event(self, uow):
        eid = uuid.uuid4()
        async with uow() as tx:
            assert await tx.first_time("tracker", eid, 1) is True
            assert await tx.first_time("tracker", eid, 1) is False
        async with uow() as tx:
            assert await tx.first_time("tracker", eid, 1) is False
            assert await tx.first_time("crop", eid, 1) is True

    async def test_an_exception_rolls_back_the_effect_and_the_processed_row(self, uow):
        eid, cid = uuid.uuid4(), uuid.uuid4()
        with pytest.raises(RuntimeError):
            async with uow() as tx:
                assert await tx.first_time("tracker", eid)
                await tx.content.upsert(row(cid))
                await tx.add_outbox(new_event("image.rejected", creator="elena", key=cid, payload={"reason": "x"}))
                raise RuntimeError("crash before commit")
        async with uow() as tx:
            assert await tx.content.get(cid) is None
            assert await tx.first_time("tracker", eid) is True
        assert await outbox_ids(uow) == []

    async def test_content_upsert_merges_and_roundtrips(self, uow):
        cid = uuid.uuid4()
        async with uow() as tx:
            await tx.content.upsert(row(cid, sha256="f" * 64, crop_box={"x0": 0, "y0": 0, "x1": 10, "y1": 20}))
        async with uow() as tx:
            await tx.content.upsert({"id": cid, "creator": "elena", "status": "in_review", "cut_y": 300})
        async with uow() as tx:
            got = await tx.content.get(cid, for_update=True)
        assert got["status"] == "in_review"
        assert got["cut_y"] == 300
        assert got["sha256"] == "f" * 64  # not in the second upsert: kept
        assert got["tags"] == ["a", "b"]
        assert got["crop_box"] == {"x0": 0, "y0": 0, "x1": 10, "y1": 20}

    async def test_outbox_keeps_each_event_once_in_order(self, uow):
        cid = uuid.uuid4()
        a = new_event("image.rejected", creator="elena", key=cid, payload={"reason": "blurry"})
        b = new_event("image.recrop_requested", creator="elena", key=cid, payload={"mode": "chin", "raw_key": "k"})
        async with uow() as tx:
            await tx.add_outbox(a)
            await tx.add_outbox(b)
            await tx.add_outbox(a)
        assert await outbox_ids(uow) == [a.event_id, b.event_id]


class TestFakeUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def uow(self):
        return FakeUnitOfWorkFactory()


class TestPostgresUnitOfWork(UnitOfWorkContract):
    @pytest.fixture
    def uow(self, pool):
        return PostgresUnitOfWorkFactory(pool)
