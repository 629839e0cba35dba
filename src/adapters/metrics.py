"""Every Prometheus metric vaultline exports is defined here, and only here.

Counters and histograms move as work happens in this process (the bus middleware, the
analytics consumer, the Ollama adapter); gauges that describe shared state (consumer lag,
dead letters, outbox backlog, images per stage) are read from JetStream and PostgreSQL when
/metrics is scraped. `/metrics` is served by the admin app and by every `vaultline worker`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from vaultline.events import Envelope

log = structlog.get_logger("vaultline.metrics")

# --------------------------------------------------------------------------- definitions

EVENTS_HANDLED = Counter("vaultline_events_handled", "Messages a handler finished (acked).", ["handler"])
EVENTS_FAILED = Counter(
    "vaultline_events_failed", "Messages a handler failed: transient (retried later) or permanent (dead letter).",
    ["handler", "kind"],
)  # fmt: skip
HANDLER_SECONDS = Histogram(
    "vaultline_handler_seconds", "Time a handler spent on one message.", ["handler"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)  # fmt: skip
DEAD_LETTERS = Gauge("vaultline_dead_letters", "Dead letters neither retried nor dropped, per consumer.", ["consumer"])
OUTBOX_BACKLOG = Gauge("vaultline_outbox_backlog", "Outbox rows committed but not yet published.")
OUTBOX_OLDEST_SECONDS = Gauge("vaultline_outbox_oldest_seconds", "Age of the oldest unpublished outbox row.")
CONSUMER_PENDING = Gauge(
    "vaultline_consumer_pending", "Messages not yet delivered to a durable consumer.", ["stream", "consumer"]
)
CONSUMER_ACK_PENDING = Gauge(
    "vaultline_consumer_ack_pending", "Messages delivered to a durable consumer and not acked yet.", ["stream", "consumer"]
)
CONSUMER_REDELIVERED = Gauge(
    "vaultline_consumer_redelivered", "Messages redelivered and not acked yet.", ["stream", "consumer"]
)
CONTENT = Gauge("vaultline_content", "Images per pipeline stage (content rows by status).", ["status"])
IMAGES = Counter("vaultline_images", "Images entering a stage (counted by the analytics consumer).", ["stage"])
UPLOADS = Counter("vaultline_uploads", "Uploads to the platform by result (ok | failed).", ["result"])
SENDS = Counter("vaultline_sends", "Media sent to fans by result (sent | refused | failed).", ["result"])
SALES = Counter("vaultline_sales", "Sales by kind.", ["kind"])
SALES_CENTS = Counter("vaultline_sales_cents", "Gross sales amount in cents by kind.", ["kind"])
OLLAMA_SECONDS = Histogram(
    "vaultline_ollama_seconds", "Latency of one Ollama call.", ["model", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
)  # fmt: skip
OLLAMA_UP = Gauge("vaultline_ollama_up", "1 when the last Ollama call succeeded, 0 when it failed.")
SCRAPE_ERRORS = Counter("vaultline_metrics_refresh_errors", "Failures reading state for /metrics.", ["source"])

# Names as they appear in the exposition (counters get _total, histograms _bucket/_sum/_count).
EXPORTED: frozenset[str] = frozenset(
    name
    for metric in (EVENTS_HANDLED, EVENTS_FAILED, HANDLER_SECONDS, DEAD_LETTERS, OUTBOX_BACKLOG, OUTBOX_OLDEST_SECONDS,
                   CONSUMER_PENDING, CONSUMER_ACK_PENDING, CONSUMER_REDELIVERED, CONTENT, IMAGES, UPLOADS, SENDS,
                   SALES, SALES_CENTS, OLLAMA_SECONDS, OLLAMA_UP, SCRAPE_ERRORS)  # fmt: skip
    for name in (
        (f"{metric._name}_total",) if isinstance(metric, Counter)
        else (f"{metric._name}_bucket", f"{metric._name}_sum", f"{metric._name}_count") if isinstance(metric, Histogram)
        else (metric._name,)
    )
)  # fmt: skip


# --------------------------------------------------------------------------- observing


def observe_handled(handler: str, seconds: float, *, failed: str | None = None) -> None:
    """One message through a handler; `failed` is 'transient' or 'permanent'."""
    HANDLER_SECONDS.labels(handler).observe(seconds)
    if failed is None:
        EVENTS_HANDLED.labels(handler).inc()
    else:
        EVENTS_FAILED.labels(handler, failed).inc()


def observe_ollama(seconds: float, *, model: str, ok: bool) -> None:
    """For the chat adapter: one call to Ollama, successful or not."""
    OLLAMA_SECONDS.labels(model, "ok" if ok else "error").observe(seconds)
    OLLAMA_UP.set(1 if ok else 0)


def observe_send(result: str) -> None:
    """For the send path: a send that went out ('sent'), was refused by the guard, or failed."""
    SENDS.labels(result).inc()


_STAGES = {"image.generated": "generated", "image.cropped": "cropped", "image.crop_failed": "crop_failed",
           "image.approved": "approved", "image.rejected": "rejected", "media.uploaded": "uploaded"}  # fmt: skip


def observe_event(event: Envelope) -> None:
    """Business counters from an event counted once (the analytics consumer calls this after
    its transaction committed a first-time event)."""
    stage = _STAGES.get(event.type)
    if stage:
        IMAGES.labels(stage).inc()
    if event.type == "media.uploaded":
        UPLOADS.labels("ok").inc()
    elif event.type == "media.upload_failed":
        UPLOADS.labels("failed").inc()
    elif event.type == "media.sent":
        SENDS.labels("sent").inc()
    elif event.type == "sale.recorded":
        SALES.labels(event.payload.kind).inc()
        SALES_CENTS.labels(event.payload.kind).inc(event.payload.gross_cents)


# --------------------------------------------------------------------------- scrape-time state


async def refresh(pool: Any = None, js: Any = None, consumers: Any = None, *, timeout: float = 3.0) -> None:
    """Read consumer lag from JetStream and backlog/dead letters/stages from PostgreSQL into
    the gauges. A source that fails is counted in vaultline_metrics_refresh_errors_total and
    keeps its last value: /metrics itself never fails because a dependency is down."""
    tasks = []
    if js is not None:
        tasks.append(_guard("jetstream", _refresh_consumers(js, consumers), timeout))
    if pool is not None:
        tasks.append(_guard("postgres", _refresh_db(pool), timeout))
    await asyncio.gather(*tasks)


async def _guard(source: str, coro: Any, timeout: float) -> None:
    try:
        await asyncio.wait_for(coro, timeout)
    except Exception as e:
        SCRAPE_ERRORS.labels(source).inc()
        log.warning("metrics refresh failed", source=source, error=repr(e))


async def _refresh_consumers(js: Any, consumers: Any = None) -> None:
    from vaultline.adapters.bus.topology import CONSUMERS

    for spec in (consumers or CONSUMERS).values():
        try:
            info = await js.consumer_info(spec.stream, spec.name)
        except Exception:  # not provisioned (yet): nothing to report
            continue
        CONSUMER_PENDING.labels(spec.stream, spec.name).set(info.num_pending or 0)
        CONSUMER_ACK_PENDING.labels(spec.stream, spec.name).set(info.num_ack_pending or 0)
        CONSUMER_REDELIVERED.labels(spec.stream, spec.name).set(info.num_redelivered or 0)


async def _refresh_db(pool: Any) -> None:
    from vaultline.adapters.bus.topology import CONSUMERS

    async with pool.acquire() as conn:
        dead = dict(await conn.fetch(
            "SELECT consumer, count(*) FROM dead_letters WHERE redriven_at IS NULL AND dropped_at IS NULL "
            "GROUP BY consumer"
        ))  # fmt: skip
        backlog = await conn.fetchrow(
            "SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age "
            "FROM outbox WHERE published_at IS NULL"
        )
        stages = dict(await conn.fetch("SELECT status, count(*) FROM content GROUP BY status"))
    for consumer in set(CONSUMERS) | set(dead):
        DEAD_LETTERS.labels(consumer).set(dead.get(consumer, 0))
    OUTBOX_BACKLOG.set(backlog["n"])
    OUTBOX_OLDEST_SECONDS.set(float(backlog["age"]))
    for status in set(stages) | {k[0] for k in _label_sets(CONTENT)}:
        CONTENT.labels(status).set(stages.get(status, 0))


def _label_sets(metric: Any) -> list[tuple[str, ...]]:
    return list(metric._metrics.keys())


def exposition() -> tuple[bytes, str]:
    """The text format body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
