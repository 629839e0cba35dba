"""Replay and audit over the EVENTS stream: rebuild every projection into a fresh schema and
compare it with the live tables, re-run one handler from a point, export a window of events.

The handlers are the real ones (bootstrap.REPLAYABLE); only the unit of work differs."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from vaultline.adapters.bus.stream import (
    StoredEvent,
    connect,
    last_seq,
    read_events,
    read_events_in_process,
    read_frames,
    start_reader,
)
from vaultline.adapters.db import create_pool
from vaultline.adapters.db.rebuild import (
    BatchPool,
    ContentBuffer,
    TableDiff,
    compare_table,
    connect_schema,
    create_rebuild_schema,
    drop_schema,
    live_schema,
    stamp,
    swap,
)
from vaultline.bootstrap import REPLAYABLE, Projector
from vaultline.settings import Settings

log = structlog.get_logger("vaultline.replay")
BATCH = 500  # events per rebuild transaction
READ_BATCH = 1000


def subject_matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: `*` one token, `>` the rest."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return len(s) > i
        if i >= len(s) or (tok != "*" and tok != s[i]):
            return False
    return len(p) == len(s)


@dataclass
class RebuildResult:
    schema: str
    live: str
    events: int = 0
    applied: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # events a handler refused (live: dead letters)
    tables: dict[str, TableDiff] = field(default_factory=dict)
    backup: str | None = None

    @property
    def differences(self) -> int:
        return sum(len(t.differences) for t in self.tables.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "tables": {n: t.summary() for n, t in self.tables.items()},
            "differences": self.differences,
        }


Progress = Callable[[int, int], None]  # (events done, events total)


@dataclass(frozen=True)
class _Feeder:
    filters: tuple[str, ...]
    apply: Projector
    bulk: bool  # runs over the ContentBuffer; else on SQL (buffer flushed before, cleared after)
    content: bool = True  # on SQL and touches content: needs that flush before and clear after


async def _feed(pool: BatchPool, buffer: ContentBuffer, feeders: list[_Feeder], batch: list[StoredEvent],
                result: RebuildResult) -> None:  # fmt: skip
    """One transaction for the batch; when any event fails, the batch is redone with a savepoint
    per event so only the failing events are left out (as live they would be dead letters)."""
    conn = pool.conn

    async def one(f: _Feeder, se: StoredEvent, isolated: bool) -> None:
        assert se.event is not None
        shares = not f.bulk and f.content
        if shares:
            await buffer.flush()  # the SQL handler sees every row projected before this event
        try:
            if isolated:  # a savepoint per event: a failure undoes this event only
                async with conn.raw.transaction():
                    done = await f.apply(se.event, se.seq)
                    await buffer.flush()
            else:
                done = await f.apply(se.event, se.seq)
            result.applied += bool(done)
        except Exception:
            if isolated:
                buffer.discard_pending()
            raise
        finally:
            if shares:
                buffer.clear()  # it may have changed content rows (purchase counters)

    routes = _router(feeders)

    async def run(isolated: bool) -> None:
        if any(f.content for f in feeders):  # (analytics alone in its process reads no content)
            keys = {se.event.key for se in batch if se.event is not None}  # (each image has several events)
            tracker_keys = [k for k in map(_as_uuid, keys) if k is not None]
            buffer.expected = tracker_keys
            await buffer.prefetch(tracker_keys)
        for se in batch:
            for f in routes(se):
                if not isolated:
                    await one(f, se, isolated)
                    continue
                try:
                    await one(f, se, isolated)
                except Exception as e:  # noqa: BLE001 - reported, never hidden
                    assert se.event is not None
                    result.failed.append({"seq": se.seq, "type": se.event.type, "error": f"{type(e).__name__}: {e}"})
        await buffer.flush()

    applied_before = result.applied
    try:
        async with conn.raw.transaction():
            await run(False)
        buffer.committed()
        return
    except Exception:
        result.applied = applied_before
        buffer.rollback()
    async with conn.raw.transaction():
        await run(True)
    buffer.committed()


def _as_uuid(key: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(key)
    except ValueError:
        return None


def _router(feeders: list[_Feeder]) -> Callable[[StoredEvent], list[_Feeder]]:
    """The feeders whose filters match an event's subject. Subjects are `{type}.{creator}.{key}`
    (a type is two tokens); when no filter looks past the type, the answer is the same for every
    event of a type and is worked out once per type, not per event."""
    by_type = all(t in ("*", ">") for f in feeders for p in f.filters for t in p.split(".")[2:])
    cache: dict[str, list[_Feeder]] = {}

    def match(subject: str) -> list[_Feeder]:
        return [f for f in feeders if any(subject_matches(p, subject) for p in f.filters)]

    def route(se: StoredEvent) -> list[_Feeder]:
        if not by_type or se.subject.count(".") != 3:
            return match(se.subject)
        type_ = se.subject.rsplit(".", 2)[0]
        found = cache.get(type_)
        if found is None:
            found = cache[type_] = match(se.subject)
        return found

    return route


async def _read_batches(chunks: AsyncIterator[list[StoredEvent]], end: int,
                        out: "asyncio.Queue[list[StoredEvent] | None]", result: RebuildResult) -> None:  # fmt: skip
    batch: list[StoredEvent] = []
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                for se in chunk:
                    if se.seq > end:
                        break
                    result.events += 1
                    if se.event is None:
                        result.failed.append({"seq": se.seq, "type": None, "error": se.error})
                    else:
                        batch.append(se)
                    if len(batch) >= BATCH:
                        await out.put(batch)
                        batch = []
                if chunk and chunk[-1].seq >= end:
                    break
        if batch:
            await out.put(batch)
    finally:
        await out.put(None)  # also when reading failed: the feeder stops, `await reader` raises


def _feeders(names: Sequence[str], pool: BatchPool, buffer: ContentBuffer) -> list[_Feeder]:
    return [_Feeder(r.filter_subjects(n), r.bulk(buffer) if r.bulk else r.projector(pool), r.bulk is not None,
                    r.content) for n in names for r in (REPLAYABLE[n],)]  # fmt: skip


async def _feed_all(pool: BatchPool, buffer: ContentBuffer, feeders: list[_Feeder],
                    chunks: AsyncIterator[list[StoredEvent]], end: int, result: RebuildResult,
                    progress: Progress | None = None) -> None:  # fmt: skip
    # Reading and parsing the stream overlaps with the database's work on the previous batch.
    batches: asyncio.Queue[list[StoredEvent] | None] = asyncio.Queue(maxsize=4)
    reader = asyncio.create_task(_read_batches(chunks, end, batches, result))
    # The rebuild keeps every projected row alive: Python's automatic full collections
    # would walk them again and again (half the time at 100,000 events). The feeding makes no
    # cyclic garbage (collecting the young generations once per batch found none at 100,000
    # events, in ~7% of this process's time): no collection while feeding; at its end what it
    # allocated goes to the oldest generation unwalked (freeze + unfreeze), where any cycle is
    # collected by the next full collection.
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        while (batch := await batches.get()) is not None:
            await _feed(pool, buffer, feeders, batch, result)
            if progress:
                progress(batch[-1].seq, end)
        await reader
    finally:
        if not reader.done():  # the feeding failed: stop the reader and its child process now
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        gc.freeze()
        gc.unfreeze()
        if gc_was_on:
            gc.enable()


_PART_DATABASE_URL = "REPLAY_PART_DATABASE_URL"


class _Part:
    """A projection rebuilt in its own process (Replayable.own_process), on the other core: fed
    the same frames of the stream (read_events_in_process `copies`), with its own connection
    and transactions into the same schema. Its result comes back as JSON at its end."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name, self.proc = name, proc

    @classmethod
    async def start(cls, name: str, database_url: str) -> "_Part":
        """Started before the schema exists: its imports (~1 s) overlap with the migrations."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vaultline.entrypoints.replay", name,
            # The URL may carry a password: in the environment, not on a command line.
            env={**os.environ, _PART_DATABASE_URL: database_url},
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(name, proc)

    def begin(self, schema: str, end: int) -> asyncio.StreamWriter:
        """The schema is ready: what to project into, up to which seq; the frames follow."""
        assert self.proc.stdin is not None
        # This process may run ahead of the part by this much (the frames of ~50,000 events)
        # instead of the pipe's 64 KiB: neither waits for the other's slower moments.
        self.proc.stdin.transport.set_write_buffer_limits(high=32 << 20)
        self.proc.stdin.write(json.dumps({"schema": schema, "end": end, "batch": BATCH}).encode() + b"\n")
        return self.proc.stdin

    def failed(self) -> RuntimeError:
        return RuntimeError(f"the {self.name} projection's rebuild process failed (exit {self.proc.returncode})")

    async def finish(self, result: RebuildResult) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        out = await self.proc.stdout.read()
        if await self.proc.wait() != 0 or not out:
            raise self.failed()
        part = json.loads(out)
        result.applied += part["applied"]
        result.failed += part["failed"]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        await self.proc.wait()


async def _rebuild_part(name: str, database_url: str) -> dict[str, Any] | None:
    """The child of _Part: one projection fed the frames on stdin, after a line saying where."""
    global BATCH
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=1 << 22)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), os.fdopen(0, "rb"))
    line = await stdin.readline()
    if not line:
        return None  # the parent stopped before the schema was ready
    where = json.loads(line)
    BATCH = where["batch"]
    conn = await connect_schema(database_url, where["schema"])
    pool, buffer = BatchPool(conn), ContentBuffer(conn)
    result = RebuildResult(schema=where["schema"], live="")
    try:
        await _feed_all(pool, buffer, _feeders([name], pool, buffer), read_frames(stdin), where["end"], result)
    finally:
        await conn.close()
    # Unreadable events are the parent's to report (it reads the same ones).
    return {"applied": result.applied, "failed": [f for f in result.failed if f["type"] is not None]}


async def rebuild(
    s: Settings, *, progress: Progress | None = None, keep: bool = True, schema: str | None = None
) -> RebuildResult:
    """Feed every stored event to every replayable handler into a fresh schema, then compare.
    `keep=False`: drop the schema again when the rebuild fails (the caller drops it after use)."""
    names = [n for n, r in REPLAYABLE.items() if r.in_rebuild and not r.own_process]
    # The child processes start first: their imports (~1 s) overlap with the schema's migrations.
    parts: list[_Part] = []
    stream_reader: asyncio.subprocess.Process | None = None
    nc, js = await connect(s.nats_url, name="vaultline-replay")
    try:
        for n, r in REPLAYABLE.items():
            if r.in_rebuild and r.own_process:
                parts.append(await _Part.start(n, s.database_url))
        end = await last_seq(js)
        stream_reader = await start_reader(s.nats_url, batch=READ_BATCH)  # reads at least up to `end`
        return await _rebuild(s, names, parts, stream_reader, end, progress=progress, keep=keep, schema=schema)
    finally:
        await nc.close()
        for p in parts:  # one still running (this one failed) holds its transaction in the schema
            await p.stop()
        if stream_reader is not None and stream_reader.returncode is None:  # never read (failed before)
            stream_reader.kill()
            await stream_reader.wait()


async def _rebuild(s: Settings, names: list[str], parts: list[_Part], stream_reader: asyncio.subprocess.Process,
                   end: int, *, progress: Progress | None, keep: bool, schema: str | None) -> RebuildResult:  # fmt: skip
    import asyncpg

    admin = await asyncpg.connect(s.database_url)
    live = await live_schema(admin)
    result = RebuildResult(schema=schema or f"rebuild_{stamp()}", live=live)
    await create_rebuild_schema(s.database_url, result.schema)
    conn = await connect_schema(s.database_url, result.schema)
    pool, buffer = BatchPool(conn), ContentBuffer(conn)
    try:
        copies = [p.begin(result.schema, end) for p in parts]
        chunks = read_events_in_process(s.nats_url, batch=READ_BATCH, copies=copies, started=stream_reader)
        try:
            try:
                await _feed_all(pool, buffer, _feeders(names, pool, buffer), chunks, end, result, progress)
            except (BrokenPipeError, ConnectionResetError):
                for p in parts:  # a part stopped reading: it failed
                    if p.proc.returncode is not None or await _exited(p.proc):
                        raise p.failed() from None
                raise
            for p in parts:
                await p.finish(result)
            result.failed.sort(key=lambda f: f["seq"])  # the parts' failures among this process's
        finally:
            for p in parts:  # stopped before the schema may be dropped: it holds a transaction there
                await p.stop()
        if progress:
            progress(max(end, result.events), max(end, result.events))
        for r in REPLAYABLE.values():
            for spec in r.tables:
                result.tables[spec.name] = await compare_table(admin, spec, live, result.schema)
    except BaseException:
        if not keep:
            await drop_schema(admin, result.schema)
        raise
    finally:
        await conn.close()
        await admin.close()
    return result


async def _exited(proc: asyncio.subprocess.Process, within: float = 5.0) -> bool:
    try:
        await asyncio.wait_for(proc.wait(), within)
        return True
    except asyncio.TimeoutError:
        return False


async def compare(s: Settings, rebuilt: str) -> dict[str, TableDiff]:
    import asyncpg

    conn = await asyncpg.connect(s.database_url)
    try:
        live = await live_schema(conn)
        return {spec.name: await compare_table(conn, spec, live, rebuilt)
                for r in REPLAYABLE.values() for spec in r.tables}  # fmt: skip
    finally:
        await conn.close()


async def swap_live(s: Settings, rebuilt: str) -> str:
    """Make `rebuilt` the live schema; returns the backup schema's name (the old live tables)."""
    import asyncpg

    conn = await asyncpg.connect(s.database_url)
    try:
        live = await live_schema(conn)
        backup = f"replay_backup_{stamp()}"
        specs = [spec for r in REPLAYABLE.values() for spec in r.tables]
        await swap(conn, specs, live, rebuilt, backup)
        return backup
    finally:
        await conn.close()


async def drop(s: Settings, schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(s.database_url)
    try:
        await drop_schema(conn, schema)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- one handler


@dataclass
class HandlerReplay:
    handler: str
    seen: int = 0
    applied: int = 0
    skipped: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"handler": self.handler, "seen": self.seen, "applied": self.applied, "skipped": self.skipped,
                "failed": self.failed}  # fmt: skip


async def replay_handler(
    s: Settings, name: str, *, from_seq: int | None = None, since: datetime | None = None
) -> HandlerReplay:
    """Re-run one handler through a new ephemeral consumer on its own filter subjects, from a
    stream sequence or a time, on the live database: what it has done is skipped
    (processed_events; chat's projection by the state of its rows)."""
    if name not in REPLAYABLE:
        raise ValueError(f"handler {name!r} cannot be replayed; replayable: {', '.join(REPLAYABLE)}")
    pool = await create_pool(s.database_url, min_size=1, max_size=2)
    apply = REPLAYABLE[name].projector(pool)
    result = HandlerReplay(name)
    nc, js = await connect(s.nats_url, name="vaultline-replay")
    try:
        end = await last_seq(js)
        async for se in read_events(js, subjects=REPLAYABLE[name].filter_subjects(name), start_seq=from_seq,
                                    start_time=since, batch=READ_BATCH):  # fmt: skip
            if se.seq > end:
                break
            result.seen += 1
            if se.event is None:
                result.failed.append({"seq": se.seq, "error": se.error})
                continue
            try:
                if await apply(se.event, se.seq):
                    result.applied += 1
                else:
                    result.skipped += 1
            except Exception as e:  # noqa: BLE001 - reported per event
                result.failed.append({"seq": se.seq, "error": f"{type(e).__name__}: {e}"})
    finally:
        await nc.close()
        await pool.close()
    return result


# --------------------------------------------------------------------------- audit export


async def audit_events(
    s: Settings, *, since: datetime, until: datetime, creator: str | None = None
) -> AsyncIterator[StoredEvent]:
    """Every event stored in [since, until), oldest first (optionally one creator's)."""
    subject = f"*.*.{creator}.*" if creator else ">"
    nc, js = await connect(s.nats_url, name="vaultline-audit")
    try:
        end = await last_seq(js)
        async for se in read_events(js, subject=subject, start_time=since, batch=READ_BATCH):
            if se.seq > end or (se.stored_at is not None and se.stored_at >= until):
                break
            yield se
    finally:
        await nc.close()


def causes(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """event_id -> a readable 'caused by' for each row: the causing event's seq and type when it
    is among the rows, else its id."""
    by_id = {r.get("event_id"): r for r in rows if r.get("event_id")}
    out: dict[str, str] = {}
    for r in rows:
        cause = r.get("causation_id")
        if not r.get("event_id"):
            continue
        if not cause:
            out[r["event_id"]] = "-"
        elif cause in by_id:
            c = by_id[cause]
            out[r["event_id"]] = f"#{c['seq']} {c['type']}"
        else:
            out[r["event_id"]] = f"{uuid.UUID(cause)!s:.8} (another key)"
    return out


def _part_main() -> None:
    """`python -m vaultline.entrypoints.replay NAME` (started by _Part): the result as JSON on
    the original stdout (stdout itself goes to stderr, so no log line can corrupt it)."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    part = asyncio.run(_rebuild_part(sys.argv[1], os.environ[_PART_DATABASE_URL]))
    if part is not None:
        out.write(json.dumps(part, default=str))
        out.flush()


if __name__ == "__main__":
    _part_main()
