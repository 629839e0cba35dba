"""UploadStore: the in-memory fake used by the handler's unit tests against PostgreSQL."""

import uuid

import pytest

from tests.fakes import FakeUploadStore
from vaultline.adapters.db.uploads import PostgresUploadStore
from vaultline.events import new_event
from vaultline.handlers.upload import LostRace, UploadState


def state(cid, **kw):
    return UploadState(cid, "elena", "fanvue", "ppv", "elena-ppv", uuid.uuid4(), **kw)


class UploadStoreContract:
    async def test_start_inserts_once_and_returns_the_stored_state(self, store):
        cid = uuid.uuid4()
        first = await store.start(state(cid))
        assert first.step == "pending"
        first.step, first.media_uuid, first.parts = "parts_done", "m1", [{"part_number": 1, "etag": '"x"'}]
        await store.save(first, "pending")
        again = await store.start(state(cid))  # a redelivery of the approval
        assert (again.step, again.media_uuid, again.parts) == ("parts_done", "m1", [{"part_number": 1, "etag": '"x"'}])
        assert again.approval_event_id == first.approval_event_id

    async def test_save_is_compare_and_set_from_the_step_read(self, store):
        cid = uuid.uuid4()
        s = await store.start(state(cid))
        s.step, s.media_uuid = "created", "m1"
        await store.save(s, "pending")
        late = await store.get(cid)
        late.step, late.media_uuid = "created", "m2"  # a second run that read 'pending' earlier
        with pytest.raises(LostRace):
            await store.save(late, "pending")
        with pytest.raises(LostRace):
            await store.finish(late, new_event("media.uploaded", creator="elena", key=cid, payload={
                "platform": "fanvue", "media_uuid": "m2", "vault": "ppv", "vault_folder": "elena-ppv"}), "pending")
        assert (await store.get(cid)).media_uuid == "m1"

    async def test_exclusive_admits_one_run_per_content(self, store):
        cid, other = uuid.uuid4(), uuid.uuid4()
        async with store.exclusive(cid) as first:
            assert first is True
            async with store.exclusive(cid) as second:
                assert second is False
            async with store.exclusive(other) as unrelated:
                assert unrelated is True
        async with store.exclusive(cid) as again:
            assert again is True

    async def test_get_returns_none_until_started(self, store):
        cid = uuid.uuid4()
        assert await store.get(cid) is None
        await store.start(state(cid))
        assert (await store.get(cid)).step == "pending"

    async def test_finish_and_fail_conclude_with_their_event(self, store):
        for conclude, step, etype, payload in (
            (store.finish, "done", "media.uploaded",
             {"platform": "fanvue", "media_uuid": "m", "vault": "ppv", "vault_folder": "elena-ppv"}),
            (store.fail, "failed", "media.upload_failed", {"platform": "fanvue", "reason": "403"}),
        ):  # fmt: skip
            cid = uuid.uuid4()
            s = await store.start(state(cid))
            event = new_event(etype, creator="elena", key=cid, payload=payload)
            await conclude(s, event, "pending")
            assert (await store.start(state(cid))).step == step
            assert await self.outbox_has(store, event.event_id)

    async def test_review_key_of_projected_content(self, store):
        cid = uuid.uuid4()
        assert await store.review_key(cid) is None
        await self.add_content(store, cid, "elena/3_review/a--x.png", "a.png")
        assert await store.review_key(cid) == ("elena/3_review/a--x.png", "a.png")


class TestFakeUploadStore(UploadStoreContract):
    @pytest.fixture
    def store(self):
        return FakeUploadStore()

    async def outbox_has(self, store, event_id):
        return any(e.event_id == event_id for e in store.outbox)

    async def add_content(self, store, cid, key, name):
        store.review[cid] = (key, name)


class TestPostgresUploadStore(UploadStoreContract):
    @pytest.fixture
    def store(self, pool):
        s = PostgresUploadStore(pool)
        s.pool = pool
        return s

    async def outbox_has(self, store, event_id):
        return bool(await store.pool.fetchval("SELECT 1 FROM outbox WHERE event_id = $1", event_id))

    async def add_content(self, store, cid, key, name):
        await store.pool.execute(
            "INSERT INTO content(id, creator, status, review_key, original_filename) VALUES ($1, 'elena', 'in_review', $2, $3)",
            cid, key, name,
        )  # fmt: skip
