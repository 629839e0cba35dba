"""In-memory fakes of the ports, for unit tests only. Each has a contract test against the
real adapter (tests/contract/)."""

from __future__ import annotations

import contextlib
import copy
import uuid
from typing import Any

from vaultline.events import Envelope


class FakePublisher:
    def __init__(self) -> None:
        self.events: list[Envelope] = []
        self._ids: set[uuid.UUID] = set()

    async def publish(self, event: Envelope) -> None:
        # Like JetStream's duplicate window: the same event id is stored once.
        if event.event_id not in self._ids:
            self._ids.add(event.event_id)
            self.events.append(event)

    def of_type(self, type_: str) -> list[Envelope]:
        return [e for e in self.events if e.type == type_]


class FakeDatabase:
    def __init__(self) -> None:
        self.content: dict[uuid.UUID, dict[str, Any]] = {}
        self.processed: set[tuple[str, uuid.UUID]] = set()
        self.outbox: list[Envelope] = []


class FakeContentRepository:
    def __init__(self, rows: dict[uuid.UUID, dict[str, Any]]) -> None:
        self._rows = rows

    async def get(self, content_id: uuid.UUID, *, for_update: bool = False) -> dict[str, Any] | None:
        row = self._rows.get(content_id)
        return copy.deepcopy(row) if row else None

    async def upsert(self, row: dict[str, Any]) -> None:
        current = self._rows.get(row["id"], {})
        self._rows[row["id"]] = {**current, **copy.deepcopy(row)}


class FakeUnitOfWork:
    """Works on a copy of the database and swaps it in on commit: a failure rolls back."""

    def __init__(self, db: FakeDatabase) -> None:
        self._db = db

    async def __aenter__(self) -> "FakeUnitOfWork":
        self._work = copy.deepcopy(self._db)
        self.content = FakeContentRepository(self._work.content)
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self._db.__dict__.update(self._work.__dict__)

    async def first_time(self, handler: str, event_id: uuid.UUID, stream_seq: int | None = None) -> bool:
        key = (handler, event_id)
        if key in self._work.processed:
            return False
        self._work.processed.add(key)
        return True

    async def add_outbox(self, event: Envelope) -> None:
        if all(e.event_id != event.event_id for e in self._work.outbox):
            self._work.outbox.append(event)


class FakeUnitOfWorkFactory:
    def __init__(self, db: FakeDatabase | None = None) -> None:
        self.db = db or FakeDatabase()

    def __call__(self) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.db)


class FakeContentIndex:
    """ContentIndex for ingest: content ids and perceptual hashes per creator."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, tuple[str, str]] = {}  # id -> (creator, phash)

    def add(self, content_id: uuid.UUID, creator: str, phash: str) -> None:
        self.rows[content_id] = (creator, phash)

    async def exists(self, content_id: uuid.UUID) -> bool:
        return content_id in self.rows

    async def nearest(self, creator: str, phash: str, exclude: uuid.UUID) -> tuple[uuid.UUID, int] | None:
        best = None
        for cid, (c, h) in self.rows.items():
            if c != creator or cid == exclude or len(h) != 16:
                continue
            d = bin(int(h, 16) ^ int(phash, 16)).count("1")
            if best is None or d < best[1]:
                best = (cid, d)
        return best


class FakeUploadStore:
    """UploadStore in memory: states, the content rows' review keys, and what would go to
    the outbox with each conclusion."""

    def __init__(self) -> None:
        import dataclasses

        self._copy = dataclasses.replace
        self.states: dict[uuid.UUID, Any] = {}
        self.review: dict[uuid.UUID, tuple[str, str]] = {}
        self.outbox: list[Envelope] = []
        self.saves: list[str] = []
        self.locked: set[uuid.UUID] = set()

    async def start(self, state):
        if state.content_id not in self.states:
            self.states[state.content_id] = self._copy(state)
        return self._copy(self.states[state.content_id])

    async def get(self, content_id: uuid.UUID):
        state = self.states.get(content_id)
        return self._copy(state) if state else None

    def _check(self, state, expected_step: str) -> None:
        from vaultline.handlers.upload import LostRace

        stored = self.states.get(state.content_id)
        if stored is None or stored.step != expected_step:
            raise LostRace(f"upload of {state.content_id} is no longer at step {expected_step!r}")

    async def save(self, state, expected_step: str) -> None:
        self._check(state, expected_step)
        self.states[state.content_id] = self._copy(state)
        self.saves.append(state.step)

    @contextlib.asynccontextmanager
    async def exclusive(self, content_id: uuid.UUID):
        if content_id in self.locked:
            yield False
            return
        self.locked.add(content_id)
        try:
            yield True
        finally:
            self.locked.discard(content_id)

    async def finish(self, state, uploaded: Envelope, expected_step: str) -> None:
        self._check(state, expected_step)
        self.states[state.content_id] = self._copy(state, step="done")
        self.outbox.append(uploaded)

    async def fail(self, state, failed: Envelope, expected_step: str) -> None:
        self._check(state, expected_step)
        self.states[state.content_id] = self._copy(state, step="failed")
        self.outbox.append(failed)

    async def review_key(self, content_id: uuid.UUID):
        return self.review.get(content_id)


class FakeDrafter:
    """Drafter port in memory: answers from a script (a ModelAnswer, or an exception to raise),
    then a default one-draft answer. Records every call. Contract: tests/contract/test_drafter.py."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[tuple[str, list[dict[str, str]]]] = []

    async def draft(self, model: str, messages: list[dict[str, str]]) -> Any:
        from vaultline.domain.chat import ModelAnswer

        self.calls.append((model, messages))
        item = self.script.pop(0) if self.script else None
        if isinstance(item, BaseException):
            raise item
        if item is None:
            last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            return ModelAnswer(drafts=[f"thanks for writing: {last[:80]}" if last else "hey you"])
        return item

    async def close(self) -> None:
        return None
