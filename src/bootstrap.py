"""Composition root: builds the real ports from settings and wires handlers to their durable
consumers. Handlers stay plain functions; this is the one place that knows which adapter
implements which port."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from vaultline.adapters import metrics
from vaultline.adapters.bus.broker import (
    MSG_ID,
    Delivery,
    JetStreamPublisher,
    RawHandler,
    event_handler,
    make_broker,
    subscribe,
)
from vaultline.adapters.bus.provision import ProvisionReport, provision
from vaultline.adapters.bus.stream import JetStreamReader, connect
from vaultline.adapters.bus.topology import CONSUMERS, ConsumerSpec
from vaultline.adapters.db import PostgresUnitOfWorkFactory, create_pool, record_delivery_failure
from vaultline.adapters.db.dead_letters import PostgresDeadLetterStore
from vaultline.adapters.db.rebuild import ContentBuffer, TableSpec
from vaultline.adapters.outbox import OutboxRelay
from vaultline.adapters.platforms import PlatformResolver
from vaultline.events import Envelope
from vaultline.handlers import crop, dlq, tracker, upload
from vaultline.handlers import library as library_files
from vaultline.handlers.ingest import IngestResult, ingest
from vaultline.handlers.ports import Storage
from vaultline.settings import Settings

log = structlog.get_logger("vaultline.bootstrap")


@dataclass
class Ports:
    """Everything a handler factory may hand to a handler."""

    settings: Settings
    pool: asyncpg.Pool
    uow: PostgresUnitOfWorkFactory
    publisher: JetStreamPublisher
    js: JetStreamContext
    storage: Storage | None = None
    platforms: Any = None  # creator -> upload platform (adapters.platforms.PlatformResolver)
    extra: dict[str, Any] = field(default_factory=dict)


HandlerFactory = Callable[[Ports], RawHandler]


def _tracker(p: Ports) -> RawHandler:
    async def run(event: Envelope, d: Delivery) -> None:
        await tracker.handle(event, uow=p.uow, stream_seq=d.stream_seq)

    return event_handler(run)


def _crop(p: Ports) -> RawHandler:
    from vaultline.adapters.crop_runner import CropRunner

    runner = p.extra["crop_runner"] = CropRunner(threads=p.extra.get("concurrency", 1))
    assert p.storage is not None

    every = CONSUMERS["crop"].heartbeat_every_s

    async def run(event: Envelope, d: Delivery) -> None:
        await crop.handle(
            event, storage=p.storage, crop=runner, publisher=p.publisher, heartbeat=d.in_progress, heartbeat_every=every
        )

    return event_handler(run)


def _library(p: Ports) -> RawHandler:
    assert p.storage is not None

    async def run(event: Envelope, d: Delivery) -> None:
        await library_files.handle(event, storage=p.storage)

    return event_handler(run)


def _upload(p: Ports) -> RawHandler:
    from vaultline.adapters.db.uploads import PostgresUploadStore

    store = PostgresUploadStore(p.pool)
    assert p.storage is not None
    spec = CONSUMERS["upload"]
    max_deliver = spec.max_deliver_or(p.settings.max_deliver)

    async def run(event: Envelope, d: Delivery) -> None:
        await upload.handle(
            event,
            store=store,
            storage=p.storage,
            platform_for=p.platforms,
            vault_folder_for=lambda creator, vault: p.settings.creator(creator).vault_folder(vault),
            final_attempt=d.deliveries >= max_deliver,
            heartbeat=d.in_progress,
            heartbeat_every=spec.heartbeat_every_s,
        )

    return event_handler(run)


def _analytics(p: Ports) -> RawHandler:
    from vaultline.adapters.db.analytics import PostgresAnalyticsStore
    from vaultline.handlers import analytics

    store = PostgresAnalyticsStore(p.pool)

    async def run(event: Envelope, d: Delivery) -> None:
        if await analytics.handle(event, store=store, stream_seq=d.stream_seq):
            metrics.observe_event(event)  # business counters, once per event

    return event_handler(run)


def _sales(p: Ports) -> RawHandler:
    from vaultline.adapters.db.sales import PostgresSalesStore
    from vaultline.handlers import sales

    store = PostgresSalesStore(p.pool)

    async def run(event: Envelope, d: Delivery) -> None:
        await sales.handle(event, store=store, stream_seq=d.stream_seq)

    return event_handler(run)


def creator_configs(settings: Settings, ttl: float = 30.0) -> Callable[[str], Any]:
    """settings.creator with the TOML read at most every `ttl` seconds (persona edits show up
    without a restart, and a busy chat handler does not read the file per message)."""
    import time

    cache: dict[str, tuple[float, Any]] = {}

    def get(slug: str) -> Any:
        now = time.monotonic()
        hit = cache.get(slug)
        if hit is None or now - hit[0] > ttl:
            hit = cache[slug] = (now, settings.creator(slug))
        return hit[1]

    return get


def platform_names(platforms: Any) -> Callable[[str], Any]:
    """creator -> the platform's name, for ports that must know where a fan is but must never
    hold a platform (which could send)."""

    async def name_of(creator: str) -> str:
        return str((await platforms(creator)).name)

    return name_of


def chat_ports(p: Ports, drafter: Any) -> Any:
    """The chat handler's ports. None of them can send a message: offers and profiles get a
    platform *name* function, never the platform."""
    from vaultline.adapters.db.chat import PostgresChatStore, SalesFanProfiles, SalesOfferSource
    from vaultline.handlers.chat import ChatPorts

    s = p.settings
    configs = creator_configs(s)
    name_of = platform_names(p.platforms)
    return ChatPorts(
        store=PostgresChatStore(p.pool), drafter=drafter,
        offers=SalesOfferSource(p.pool, name_of, lambda c: configs(c).price_tiers()),
        profiles=SalesFanProfiles(p.pool, name_of), creator_config=configs, default_model=s.ollama_model,
        history=s.chat_history,
    )  # fmt: skip


def stored_platform_names(pool: asyncpg.Pool, data_dir: Any) -> Callable[[str], Any]:
    """creator -> "fanvue" when Fanvue tokens are stored for it, else "local" (what
    PlatformResolver picks), without building a client: for short-lived CLI commands."""
    resolver = PlatformResolver(pool, data_dir)

    async def name_of(creator: str) -> str:
        return "fanvue" if await resolver.has_fanvue(creator) else "local"

    return name_of


def inbox_ports(settings: Settings, pool: asyncpg.Pool, platform_of: Callable[[str], Any]) -> Any:
    """The inbox use cases' ports (CLI and admin app); the sender is separate (chat_sender).
    `platform_of`: creator -> platform name (platform_names / stored_platform_names)."""
    from vaultline.adapters.db.chat import PostgresChatStore, SalesFanProfiles
    from vaultline.handlers.inbox import InboxPorts

    async def content(cid: uuid.UUID) -> dict[str, Any] | None:
        row = await pool.fetchrow("SELECT * FROM content WHERE id = $1", cid)
        return dict(row) if row else None

    return InboxPorts(store=PostgresChatStore(pool), profiles=SalesFanProfiles(pool, platform_of),
                      creator_config=creator_configs(settings), content=content)  # fmt: skip


def chat_sender(pool: asyncpg.Pool, platforms: Any) -> Any:
    """The ONE ChatSender, given only to the inbox's approval action (handlers.inbox.send): an
    offer goes through issue 9's send guard (handlers.sends.send)."""
    from vaultline.adapters.chat_sender import GuardedChatSender

    return GuardedChatSender(pool, platforms)


def _chat(p: Ports) -> RawHandler:
    from vaultline.adapters.ollama import OllamaDrafter
    from vaultline.handlers import chat

    s = p.settings
    drafter = p.extra["ollama"] = OllamaDrafter(s.ollama_host, timeout=s.ollama_timeout)
    ports = chat_ports(p, drafter)
    spec = CONSUMERS["chat"]
    max_deliver = spec.max_deliver_or(s.max_deliver)

    async def run(event: Envelope, d: Delivery) -> None:
        await chat.handle(event, ports=ports, heartbeat=d.in_progress, heartbeat_every=spec.heartbeat_every_s,
                          final_attempt=d.deliveries >= max_deliver)  # fmt: skip

    return event_handler(run)


def _dlq(p: Ports) -> RawHandler:
    reader, store = JetStreamReader(p.js), PostgresDeadLetterStore(p.pool)

    async def run(body: bytes, d: Delivery) -> None:
        await dlq.handle(body, reader=reader, store=store)

    return run


# name -> factory. The consumer of the same name in topology.CONSUMERS says what it reads.
HANDLERS: dict[str, HandlerFactory] = {
    "tracker": _tracker,
    "crop": _crop,
    "library": _library,
    "upload": _upload,
    "analytics": _analytics,
    "sales": _sales,
    "chat": _chat,
    "dlq": _dlq,
}


# --------------------------------------------------------------------------- replay

# A projector: the real handler's handle() bound to stores over `pool` (the live pool, or the
# rebuild's BatchPool into a fresh schema). Returns False when the event was already processed.
Projector = Callable[[Envelope, int], Awaitable[bool]]


@dataclass(frozen=True)
class Replayable:
    """A handler whose Postgres effects are a pure function of the events it consumes: `replay
    --rebuild` feeds it every stored event matching its consumer's filter; `replay --handler`
    re-runs it from a point. `tables`: what it projects, compared row by row."""

    projector: Callable[[Any], Projector]
    tables: tuple[TableSpec, ...]
    # Optional: the same handler over the rebuild's in-memory ContentBuffer (no round trip per
    # event). Without it the rebuild runs `projector` on SQL, flushing the buffer first.
    bulk: Callable[[ContentBuffer], Projector] | None = None
    # False: `replay --handler` only (its tables are in rebuild.NOT_COMPARED, carried on --swap).
    in_rebuild: bool = True
    # Reads or writes `content` with SQL: the rebuild flushes the tracker's ContentBuffer before
    # each of its events and forgets the buffer's cached rows after. False for projections that
    # never touch content (analytics, chat): the buffer stays as it is.
    content: bool = True
    # The events it projects, when they are not its live consumer's (chat: the inbox writes
    # its rows live together with message.sent / reply.discarded; a replay applies those).
    subjects: tuple[str, ...] | None = None
    # True: `replay --rebuild` feeds it in a process of its own, on the other core (its tables
    # and its rows in memory are its alone: no other projection reads or writes them).
    own_process: bool = False

    def filter_subjects(self, name: str) -> tuple[str, ...]:
        return self.subjects or CONSUMERS[name].filter_subjects


def _tracker_projector(pool: Any) -> Projector:
    uow = PostgresUnitOfWorkFactory(pool)

    async def apply(event: Envelope, seq: int) -> bool:
        return await tracker.handle(event, uow=uow, stream_seq=seq)

    return apply


def _tracker_bulk(buffer: ContentBuffer) -> Projector:
    async def apply(event: Envelope, seq: int) -> bool:
        return await tracker.handle(event, uow=buffer.uow, stream_seq=seq)

    return apply


def _with_store(handle: Callable[..., Awaitable[bool]], store: Any) -> Projector:
    """A handler whose port is a store (`handle(event, store=, stream_seq=)`) as a Projector."""

    async def apply(event: Envelope, seq: int) -> bool:
        return await handle(event, store=store, stream_seq=seq)

    return apply


def _sales_projector(pool: Any) -> Projector:
    from vaultline.adapters.db.sales import PostgresSalesStore
    from vaultline.handlers import sales

    return _with_store(sales.handle, PostgresSalesStore(pool))


def _sales_bulk(buffer: ContentBuffer) -> Projector:
    """The same handler over the rebuild's rows in memory (adapters.db.rebuild_sales)."""
    from vaultline.adapters.db.rebuild_sales import BufferedSalesStore
    from vaultline.handlers import sales

    return _with_store(sales.handle, BufferedSalesStore(buffer))


def _analytics_projector(pool: Any) -> Projector:
    from vaultline.adapters.db.analytics import PostgresAnalyticsStore
    from vaultline.handlers import analytics

    return _with_store(analytics.handle, PostgresAnalyticsStore(pool))


def _analytics_bulk(buffer: ContentBuffer) -> Projector:
    """The same handler over the rebuild's rows in memory (analytics.BufferedAnalyticsStore)."""
    from vaultline.adapters.db.analytics import BufferedAnalyticsStore
    from vaultline.handlers import analytics

    return _with_store(analytics.handle, BufferedAnalyticsStore(buffer))


def _chat_projector(pool: Any) -> Projector:
    from vaultline.adapters.db.chat import PostgresChatProjection
    from vaultline.handlers import chat

    store = PostgresChatProjection(pool)

    async def apply(event: Envelope, seq: int) -> bool:
        return await chat.project(event, store=store)

    return apply


def _chat_projected() -> tuple[str, ...]:
    from vaultline.handlers.chat import PROJECTED

    return PROJECTED


def _analytics_tables() -> tuple[TableSpec, ...]:
    from vaultline.adapters.db.analytics import TABLES

    # Every aggregate is a pure function of the events, compared by its primary key (a table
    # added to analytics.TABLES without its key here fails at import).
    keys = {
        "analytics_daily": ("creator", "day", "metric", "dim"),
        "analytics_content": ("creator", "content_id"),
        "analytics_sends": ("creator", "message_uuid", "content_id"),
        "analytics_messages": ("creator", "message_uuid"),
        "analytics_sales": ("creator", "dedupe_key"),
        "analytics_content_daily": ("creator", "day", "content_id"),
        "analytics_content_sends_daily": ("creator", "day", "content_id"),
        "analytics_fan_daily": ("creator", "day", "fan_id"),
        "analytics_fans": ("creator", "fan_id"),
        "analytics_reply_waiting": ("creator", "fan_id"),
        "analytics_reply_times": ("creator", "event_id"),
        "analytics_reply_hist": ("creator", "day", "bucket"),
    }
    return tuple(TableSpec(t, keys[t]) for t in TABLES)


# The one list of projections (in feeding order: content before the sales that count on it).
# A new projection adds its entry here (and its tables leave rebuild.NOT_COMPARED).
REPLAYABLE: dict[str, Replayable] = {
    "tracker": Replayable(_tracker_projector, (TableSpec("content", ("id",)),), bulk=_tracker_bulk),
    "sales": Replayable(
        _sales_projector,
        (
            # tags and notes are the operator's; carried over on --swap.
            TableSpec("fans", ("creator", "platform", "fan_id"), ignore=("tags", "notes"), carry=(
                "UPDATE {new}.fans n SET tags = o.tags, notes = o.notes FROM {old}.fans o "
                "WHERE (n.creator, n.platform, n.fan_id) = (o.creator, o.platform, o.fan_id)",
            )),
            # Only sent rows come from events (media.sent); reservations in flight are the send
            # use case's and carried over. Row and attempt ids are generated.
            TableSpec("sends", ("content_id", "platform", "fan_id", "message_uuid"),
                      ignore=("id", "attempt_id", "reserved_at"), where="status = 'sent'",
                      carry=("INSERT INTO {new}.sends SELECT * FROM {old}.sends WHERE status <> 'sent'",)),
            TableSpec("sales", ("creator", "dedupe_key"), ignore=("matched_send_id",)),
            TableSpec("sale_keys", ("creator", "dedupe_key")),
        ),  # fmt: skip
        bulk=_sales_bulk,
    ),
    "chat": Replayable(
        _chat_projector,
        (
            # Generated ids (and the ids that point at them) differ; the relation is compared
            # through message_event_id.
            TableSpec("messages", ("event_id",), ignore=("id",)),
            # A suggestion still pending (the chat handler's retries: attempts, reason) or being
            # sent (a person's claim in flight) is its use case's working state: not compared,
            # carried over on --swap onto the rebuilt row while that one is still open.
            TableSpec("suggestions", ("message_event_id",), ignore=("id", "message_id", "sent_message_id"),
                      where="status NOT IN ('pending', 'sending')", carry=(
                "UPDATE {new}.suggestions n SET status = o.status, reason = o.reason, model = o.model, "
                "attempts = o.attempts FROM {old}.suggestions o WHERE n.message_event_id = o.message_event_id "
                "AND ((o.status = 'pending' AND n.status = 'pending') "
                "OR (o.status = 'sending' AND n.status IN ('pending', 'ready', 'failed', 'flagged')))",
            )),
        ),  # fmt: skip
        content=False,
        subjects=tuple(f"{t}.>" for t in _chat_projected()),
    ),
    "analytics": Replayable(_analytics_projector, _analytics_tables(), bulk=_analytics_bulk, content=False,
                            own_process=True),
}


def build_storage(settings: Settings) -> Storage | None:
    """Local folders by default; S3 when a bucket is configured."""
    try:
        if settings.s3_bucket:
            from vaultline.adapters.storage.s3 import S3Storage

            return S3Storage(settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region)
        from vaultline.adapters.storage.local import LocalStorage

        return LocalStorage(settings.library_root)
    except ImportError:  # storage adapters not installed in this build
        return None


class Runtime:
    """Handlers + outbox relay on one NATS connection and one Postgres pool.

    `vaultline run` starts one with every handler; `vaultline worker NAME` with one."""

    def __init__(
        self,
        settings: Settings,
        handlers: list[str],
        *,
        concurrency: int = 1,
        batch_size: int = 1,
        custom: dict[str, tuple[ConsumerSpec, HandlerFactory]] | None = None,
        relay: bool = True,
        do_provision: bool = True,
        platforms: Any = None,
    ) -> None:
        if not settings.nats_url or not settings.database_url:
            raise ValueError("Runtime needs settings.nats_url and settings.database_url")
        self.settings = settings
        self.custom = custom or {}
        unknown = [h for h in handlers if h not in HANDLERS and h not in self.custom]
        if unknown:
            raise ValueError(f"unknown handler(s): {', '.join(unknown)}; known: {', '.join(sorted(HANDLERS))}")
        self.handlers = handlers
        self.concurrency = concurrency
        # Messages fetched per pull; >1 raises throughput, processed concurrently.
        self.batch_size = batch_size
        self.relay_enabled = relay
        self.do_provision = do_provision
        self._platforms = platforms  # tests point uploads at a test platform
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self.pool: asyncpg.Pool | None = None
        self.nc: NATS | None = None
        self.ports: Ports | None = None
        self.provision_report: ProvisionReport | None = None

    def _spec(self, name: str) -> ConsumerSpec:
        return self.custom[name][0] if name in self.custom else CONSUMERS[name]

    def _factory(self, name: str) -> HandlerFactory:
        return self.custom[name][1] if name in self.custom else HANDLERS[name]

    async def _record_failure(self, d: Delivery, exc: BaseException, permanent: bool) -> None:
        try:
            event_id: uuid.UUID | None = uuid.UUID(d.headers.get(MSG_ID, ""))
        except ValueError:
            event_id = None
        assert self.pool is not None
        await record_delivery_failure(
            self.pool,
            consumer=d.consumer,
            stream_seq=d.stream_seq,
            event_id=event_id,
            deliveries=d.deliveries,
            error=f"{type(exc).__name__}: {exc}",
            permanent=permanent,
        )

    async def start(self) -> None:
        s = self.settings
        self.pool = await create_pool(s.database_url, max_size=max(4, self.concurrency * 2 + 2))
        self.nc, js = await connect(s.nats_url, name="vaultline-runtime", long_lived=True)
        if self.do_provision:
            consumers = {n: self._spec(n) for n in self.handlers} | dict(CONSUMERS)
            self.provision_report = await provision(
                js, replicas=s.stream_replicas, default_max_deliver=s.max_deliver, consumers=consumers
            )
        self.broker = make_broker(
            s.nats_url, on_failure=self._record_failure, retry_base=s.retry_base_delay, retry_cap=s.retry_max_delay
        )
        self.publisher = JetStreamPublisher(self.broker)
        self.ports = Ports(
            settings=s,
            pool=self.pool,
            uow=PostgresUnitOfWorkFactory(self.pool),
            publisher=self.publisher,
            js=js,
            storage=build_storage(s),
            platforms=self._platforms or PlatformResolver(self.pool, s.data_dir, s.fanvue),
            extra={"concurrency": self.concurrency},
        )
        for name in self.handlers:
            handler = self._factory(name)(self.ports)
            subscribe(self.broker, self._spec(name), handler, concurrency=self.concurrency, batch_size=self.batch_size)
        await self.broker.start()
        if self.relay_enabled:
            self._tasks.append(asyncio.create_task(OutboxRelay(self.pool, self.publisher).run(self._stop)))
        log.info("runtime started", handlers=self.handlers)

    def add_task(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self._tasks.append(task)
        return task

    async def stop(self) -> None:
        """Stop consuming first (in-flight handlers finish and ack), then close connections."""
        self._stop.set()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self.ports is not None:
            runner = self.ports.extra.get("crop_runner")
            if runner is not None:
                await asyncio.to_thread(runner.close)
            drafter = self.ports.extra.get("ollama")
            if drafter is not None:
                with contextlib.suppress(Exception):
                    await drafter.close()
            with contextlib.suppress(Exception):
                await self.ports.platforms.close()
            close = getattr(self.ports.storage, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await self.nc.close()
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)
        log.info("runtime stopped")

    @property
    def stop_event(self) -> asyncio.Event:
        return self._stop

    async def __aenter__(self) -> "Runtime":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


# --------------------------------------------------------------------------- the stack's parts


class Ingestor:
    """The ingest use case with real ports, for every producer (watcher, HTTP hook, CLI)."""

    def __init__(self, ports: Ports) -> None:
        from vaultline.adapters.db import PostgresContentIndex

        assert ports.storage is not None
        self.ports = ports
        self.index = PostgresContentIndex(ports.pool)

    async def ingest_bytes(
        self, data: bytes, *, filename: str, source: str, creator: str | None = None, mode: str | None = None
    ) -> IngestResult:
        from vaultline.adapters.image_facts import describe_image

        facts = await asyncio.to_thread(describe_image, data)
        # Explicit arguments win, then what our ComfyUI node wrote into the PNG, then config.
        creator = creator or facts.vaultline_tag.get("creator") or self.ports.settings.default_creator
        config = self.ports.settings.creator(creator)
        mode = mode or facts.vaultline_tag.get("crop_mode") or config.crop_mode
        return await ingest(
            data,
            facts,
            creator=creator,
            filename=filename,
            mode=mode,
            source=source,
            storage=self.ports.storage,
            publisher=self.ports.publisher,
            index=self.index,
        )


def background_tasks(runtime: Runtime) -> list[Any]:
    """Long-running coroutines `vaultline run` adds beside the handlers: one folder watcher
    per creator with ComfyUI output folders configured, the review-folder watcher that
    turns files moved by hand into decisions, and the Fanvue sync loop."""
    from vaultline.entrypoints.drivers.comfy_folders import watch_comfy_folders

    tasks = []
    if runtime.settings.fanvue_sync_interval > 0:
        tasks.append(fanvue_sync(runtime))
    for slug, creator in runtime.settings.creators().items():
        if creator.comfy_output_dirs:
            tasks.append(watch_comfy_folders(runtime, slug, list(creator.comfy_output_dirs)))
    if not runtime.settings.s3_bucket:  # deciding by moving files needs the library on local disk
        from vaultline.entrypoints.drivers.folder_review import watch_review_folders

        assert runtime.ports is not None
        s = runtime.settings
        tasks.append(watch_review_folders(runtime.ports.uow, s, s.library_root, runtime.stop_event))
    return tasks


async def fanvue_sync(runtime: Runtime) -> None:
    """The sync loop for every creator uploading to Fanvue, through that creator's upload client:
    one token bucket, so polling and uploads share Fanvue's request budget."""
    from datetime import timedelta

    from vaultline.adapters.db.fanvue import PostgresFanvueStore
    from vaultline.handlers.fanvue_sync import sync_loop

    assert runtime.ports is not None
    ports = runtime.ports

    async def api_for(creator: str) -> Any:
        platform = await ports.platforms(creator)
        return getattr(platform, "client", None) if getattr(platform, "name", None) == "fanvue" else None

    s = runtime.settings
    await sync_loop(PostgresFanvueStore(ports.pool), api_for, interval_s=s.fanvue_sync_interval,
                    stop=runtime.stop_event, earnings_lookback=timedelta(days=s.fanvue_earnings_lookback_days))
