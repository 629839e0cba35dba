"""ContentIndex: the fake used by ingest unit tests against PostgreSQL (bit_count on hex phash)."""

import uuid

import pytest

from tests.fakes import FakeContentIndex
from vaultline.adapters.db import PostgresContentIndex


class ContentIndexContract:
    async def test_exists(self, index):
        a = uuid.uuid4()
        await index.add(a, "elena", "ffff0000ffff0000")
        assert await index.exists(a) is True
        assert await index.exists(uuid.uuid4()) is False

    async def test_nearest_by_hamming_distance_within_the_creator(self, index):
        a, b, c, me = (uuid.uuid4() for _ in range(4))
        await index.add(a, "elena", "ffff0000ffff0000")
        await index.add(b, "elena", "ffff0000ffff000f")  # 4 bits from the query
        await index.add(c, "mia", "ffff0000ffff00ff")  # closer, but another creator
        await index.add(me, "elena", "ffff0000ffff00fe")  # excluded: the image itself
        assert await index.nearest("elena", "ffff0000ffff00ff", exclude=me) == (b, 4)
        assert await index.nearest("nobody", "ffff0000ffff00ff", exclude=me) is None

    async def test_images_without_a_hash_are_never_near(self, index):
        a = uuid.uuid4()
        await index.add(a, "elena", "")
        assert await index.nearest("elena", "0000000000000000", exclude=uuid.uuid4()) is None


class _Fake(FakeContentIndex):
    async def add(self, content_id, creator, phash):  # async like the Postgres helper below
        super().add(content_id, creator, phash)


class TestFakeContentIndex(ContentIndexContract):
    @pytest.fixture
    def index(self):
        return _Fake()


class _Postgres(PostgresContentIndex):
    def __init__(self, pool):
        super().__init__(pool)
        self.pool = pool

    async def add(self, content_id, creator, phash):
        await self.pool.execute(
            "INSERT INTO content(id, creator, status, phash) VALUES ($1, $2, 'generated', $3)",
            content_id, creator, phash,
        )  # fmt: skip


class TestPostgresContentIndex(ContentIndexContract):
    @pytest.fixture
    def index(self, pool):
        return _Postgres(pool)
