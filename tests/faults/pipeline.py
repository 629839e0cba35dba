"""A bounded image run for the fault tests, and the checks every one of them ends with.

- `small_face_png(i)`: distinct small images (an lfw face on a 208x304 canvas), so a crop takes
  ~30 ms and the run is about the bus, the database and the platform, not MediaPipe.
- `Comfy`: ComfyUI writing them into a watched output folder; the real folder watcher ingests
  them and retries an ingest that fails while NATS or PostgreSQL is down.
- `running_pipeline`: one process running every pipeline handler (crop, tracker, library,
  upload to the local platform, dlq), the relay, the watcher and the reviewer.
- `Reviewer`: a person approving whatever reaches review, through the review use case (one
  transaction: the row and `image.approved` in the outbox, published by the relay). It keeps
  going through outages (a failed round is tried again at the next one).
- `settled`: the outbox is published and the consumers have nothing pending or in flight.
- `assert_exactly_once`: every image went generated -> cropped -> approved -> uploaded with
  exactly one event of each in the stream; the tracker processed every event it reads once;
  the dead letters are exactly the expected ones (none, but for the poison test).
- `rebuild_report`: `vaultline replay --rebuild --json` against the stack (its own process).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import structlog

from tests.children import vl
from tests.images import CANVAS_H, CANVAS_W, Placement, canvas, png_bytes
from vaultline.adapters.bus.stream import StoredEvent, read_events
from vaultline.adapters.bus.topology import CONSUMERS
from vaultline.adapters.db import PostgresUnitOfWorkFactory
from vaultline.bootstrap import Runtime
from vaultline.domain.errors import UserError
from vaultline.entrypoints.drivers.comfy_folders import watch_comfy_folders
from vaultline.entrypoints.replay import subject_matches
from vaultline.handlers import review
from vaultline.settings import Settings

log = structlog.get_logger("tests.faults")

SMALL = (CANVAS_W // 4, CANVAS_H // 4)  # 208x304: the ComfyUI portrait shape, a 16th of its pixels
VAULTS = ("feed", "ppv", "archive")
PIPELINE = ("image.generated", "image.cropped", "image.approved", "media.uploaded")


def small_face_png(i: int) -> bytes:
    """Image i (distinct bytes for i < 1000): one of the 100 lfw faces, shifted by i // 100."""
    w, h = SMALL
    face = Placement(f"lfw:{i % 100}", center=(w / 2 - 40 + 8 * (i // 100 % 10), h * 0.3), width=w * 0.45)
    return png_bytes(canvas([face], size=SMALL))


def vault_of(cid: uuid.UUID) -> str:
    return VAULTS[cid.int % len(VAULTS)]


class Comfy:
    """ComfyUI's output folder of creator `elena`: `write(range)` saves images into it; the
    watcher's outcome per file lands in `results`, each failed attempt it will retry in `retries`."""

    creator = "elena"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.results: dict[Path, Any] = {}
        self.retries: list[str] = []

    def path(self, i: int) -> Path:
        return self.folder / f"ComfyUI_{i:05d}_.png"

    def write(self, images: Iterable[int]) -> None:
        for i in images:
            self.path(i).write_bytes(small_face_png(i))

    def on_result(self, path: Path, result: Any) -> None:
        self.results[path] = result

    def on_retry(self, path: Path, error: BaseException) -> None:
        self.retries.append(f"{path.name}: {error!r}")

    @property
    def ids(self) -> set[uuid.UUID]:
        """The content ids of every file written so far. "duplicate" counts: an attempt whose
        acknowledgement was lost (NATS went away) may have been stored, and the retry is then
        told the image already exists."""
        assert all(getattr(r, "status", None) in ("ingested", "duplicate") for r in self.results.values()), self.results
        return {r.content_id for r in self.results.values()}

    def settings(self, nats_url: str, database_url: str, data_dir: Path, **kw: Any) -> Settings:
        """Settings of a stack watching this folder for `elena` (production retry defaults)."""
        data_dir.mkdir(parents=True, exist_ok=True)
        config = data_dir / "vaultline.toml"
        config.write_text(f'[creators.{self.creator}]\ncomfy_output_dirs = ["{self.folder}"]\n')
        return Settings(nats_url=nats_url, database_url=database_url, data_dir=data_dir, config_file=config, **kw)


# analytics too: `replay --rebuild` compares its aggregates with the live ones.
HANDLERS = ("tracker", "crop", "library", "upload", "analytics", "dlq")


@contextlib.asynccontextmanager
async def running_pipeline(settings: Settings, comfy: Comfy, pool: Any) -> AsyncIterator[Runtime]:
    """Every pipeline handler, the relay, the watcher on `comfy` and a reviewer, in this process."""
    async with Runtime(settings, list(HANDLERS), concurrency=2) as rt, Reviewer(pool):
        rt.add_task(watch_comfy_folders(rt, comfy.creator, [comfy.folder], on_result=comfy.on_result,
                                        on_retry=comfy.on_retry))  # fmt: skip
        yield rt


class Reviewer:
    """Approves every image in review into a vault (ppv at $9.99), `every` seconds, until stopped."""

    def __init__(self, pool: Any, *, every: float = 0.2) -> None:
        self.pool = pool
        self.uow = PostgresUnitOfWorkFactory(pool)
        self.every = every
        self._task: asyncio.Task[None] | None = None

    async def _round(self) -> None:
        for row in await self.pool.fetch("SELECT id FROM content WHERE status = 'in_review' ORDER BY status_at"):
            cid = row["id"]
            vault = vault_of(cid)
            decision = {"vault": vault, "price_cents": 999 if vault == "ppv" else None}
            with contextlib.suppress(UserError):  # decided meanwhile (not with one reviewer; harmless)
                await review.approve(self.uow, cid, decision, "faults-test")

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except Exception as e:  # the database is down: the person tries again later
                log.info("review round failed", error=repr(e))
            await asyncio.sleep(self.every)  # the reviewer's pace, not synchronisation

    async def __aenter__(self) -> "Reviewer":
        self._task = asyncio.create_task(self._run(), name="reviewer")
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def count_status(pool: Any, status: str) -> int:
    """Rows in `status`; 0 while the database cannot answer (for wait_until during outages)."""
    try:
        return await pool.fetchval("SELECT count(*) FROM content WHERE status = $1", status)
    except Exception:
        return 0


async def at_least(pool: Any, status: str, n: int) -> bool:
    return await count_status(pool, status) >= n


async def settled(js: Any, pool: Any, names: tuple[str, ...]) -> bool:
    """Nothing left to do: every committed outbox row is published, and every named durable
    consumer has nothing pending and nothing in flight."""
    if await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"):
        return False
    for name in names:
        info = await js.consumer_info(CONSUMERS[name].stream, name)
        if info.num_pending or info.num_ack_pending:
            return False
    return True


async def stored_events(js: Any) -> list[StoredEvent]:
    return [se async for se in read_events(js)]


async def assert_exactly_once(
    js: Any, pool: Any, ids: set[uuid.UUID], *, poison: frozenset[str] = frozenset(),
    dead_letters: frozenset[tuple[str, str, uuid.UUID | None]] = frozenset(),
) -> dict[str, list[StoredEvent]]:
    """Each image: one event of each pipeline step in the stream, status `uploaded` with its
    media uuid, its upload `done`; the tracker has one processed_events row per event it
    reads and nothing else; the dead letters are exactly `dead_letters` (consumer, reason,
    event id). Events keyed by a `poison` key and stored bodies that are not events are the
    test's own poison (checked by the caller). Returns the stored events by type."""
    events = await stored_events(js)
    valid = [se for se in events if se.event is not None]
    assert poison or len(valid) == len(events), [se.error for se in events if se.event is None]
    by_type: dict[str, list[StoredEvent]] = {}
    for se in valid:
        if se.event.key not in poison:
            by_type.setdefault(se.event.type, []).append(se)
    for t in PIPELINE:
        keys = Counter(uuid.UUID(se.event.key) for se in by_type.get(t, []))
        assert set(keys) == ids, f"{t}: {len(set(keys) - ids)} unknown, {len(ids - set(keys))} missing"
        assert max(keys.values()) == 1, f"{t} twice for {[k for k, n in keys.items() if n > 1][:5]}"
    assert set(by_type) <= set(PIPELINE), set(by_type) - set(PIPELINE)

    rows = await pool.fetch("SELECT id, status, fanvue_media_uuid, vault FROM content")
    rows = [r for r in rows if str(r["id"]) not in poison]
    assert {r["id"] for r in rows} == ids
    assert Counter(r["status"] for r in rows) == {"uploaded": len(ids)}
    media = [r["fanvue_media_uuid"] for r in rows]
    assert all(media) and len(set(media)) == len(ids)  # one media each, none shared
    assert all(r["vault"] == vault_of(r["id"]) for r in rows)
    steps = await pool.fetch("SELECT content_id, step FROM uploads")
    assert Counter(r["step"] for r in steps if str(r["content_id"]) not in poison) == {"done": len(ids)}

    tracker = CONSUMERS["tracker"].filter_subjects
    tracker_reads = {se.event.event_id for se in valid if any(subject_matches(f, se.subject) for f in tracker)}
    processed = [r[0] for r in await pool.fetch("SELECT event_id FROM processed_events WHERE handler = 'tracker'")]
    assert len(processed) == len(set(processed)) and set(processed) == tracker_reads  # each once, none skipped
    dead = await pool.fetch("SELECT consumer, reason, event_id FROM dead_letters")
    assert {(r["consumer"], r["reason"], r["event_id"]) for r in dead} == dead_letters
    assert len(dead) == len(dead_letters)
    return by_type


async def rebuild_report(settings: Any) -> dict[str, Any]:
    """`vaultline replay --rebuild --json` as an operator runs it; it must exit 0 (no difference)."""
    result = await vl(settings, "replay", "--rebuild", "--json")
    assert result.exit_code == 0, result.output[-3000:]
    report = json.loads(result.stdout)
    assert report["differences"] == 0, report
    return report
