"""FastStream NATS broker, JetStream publisher and the consumer plumbing.

Handlers never see FastStream: `subscribe()` wraps a plain async function so that it gets
the decoded event and a `Delivery` (stream sequence, attempt number), and the broker
middlewares turn its exceptions into JetStream acknowledgements:
  success -> ack; transient error -> nak with an exponential delay;
  permanent error (bad event, bad input) -> term -> MSG_TERMINATED advisory -> dead_letters.
After max_deliver transient failures the server emits MAX_DELIVERIES -> dead_letters.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from faststream import AckPolicy, BaseMiddleware
from faststream.exceptions import HandlerException, NackMessage, RejectMessage
from faststream.nats import JStream, NatsBroker, NatsMessage, NatsToken, NatsUserPassword, PullSub
from nats.js.api import PubAck

from vaultline.adapters import metrics
from vaultline.adapters.bus.stream import nats_auth
from vaultline.adapters.bus.topology import EVENTS_STREAM, ConsumerSpec
from vaultline.domain.retry import TransientError, backoff_delay, is_permanent
from vaultline.events import Envelope, parse_event

log = structlog.get_logger("vaultline.bus")

MSG_ID = "Nats-Msg-Id"
H_TYPE = "Vl-Type"
H_CORRELATION = "Vl-Correlation-Id"
H_CAUSATION = "Vl-Causation-Id"


@dataclass(frozen=True)
class Delivery:
    """What a handler may want to know about the message it is processing."""

    consumer: str
    subject: str
    stream_seq: int
    deliveries: int  # 1 on the first delivery
    headers: dict[str, str]
    message: Any = None  # the raw NatsMessage, for in_progress() on long work

    async def in_progress(self) -> None:
        if self.message is not None:
            await self.message.in_progress()


def delivery_of(msg: NatsMessage) -> Delivery:
    meta = msg.raw_message.metadata
    return Delivery(
        consumer=meta.consumer or "",
        subject=msg.raw_message.subject,
        stream_seq=meta.sequence.stream,
        deliveries=meta.num_delivered,
        headers=dict(msg.headers or {}),
        message=msg,
    )


FailureRecorder = Callable[[Delivery, BaseException, bool], Awaitable[None]]


def make_broker(
    servers: str | list[str],
    *,
    on_failure: FailureRecorder | None = None,
    retry_base: float = 0.5,
    retry_cap: float = 60.0,
    log_level: int = logging.DEBUG,
) -> NatsBroker:
    urls, auth = nats_auth(servers if isinstance(servers, str) else ",".join(servers))
    # For every node, announced ones included (see nats_auth).
    security = (
        NatsToken(auth["token"]) if "token" in auth
        else NatsUserPassword(auth["user"], auth["password"]) if auth else None
    )  # fmt: skip
    return NatsBroker(
        urls,
        security=security,
        max_reconnect_attempts=-1,  # a worker waits out a node restart rather than dying
        # Backstop only: the retry middleware decides ack/nak/term explicitly.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        middlewares=[LogContextMiddleware, MetricsMiddleware, retry_middleware(base=retry_base, cap=retry_cap, on_failure=on_failure)],
        logger=structlog.get_logger("faststream"),
        # The level FastStream logs each Received/Processed line at (not a threshold):
        # DEBUG keeps them out of an INFO log.
        log_level=log_level,
        graceful_timeout=30.0,
    )


class LogContextMiddleware(BaseMiddleware):
    """Binds event_id, correlation_id, subject and handler to every log line of a handler."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        headers = msg.headers or {}
        meta = getattr(msg.raw_message, "metadata", None)
        with structlog.contextvars.bound_contextvars(
            event_id=headers.get(MSG_ID),
            correlation_id=headers.get(H_CORRELATION),
            subject=msg.raw_message.subject,
            handler=getattr(meta, "consumer", None),
        ):
            return await call_next(msg)


class MetricsMiddleware(BaseMiddleware):
    """Per handler (durable consumer): messages handled and failed, and the time each took.
    Sits outside the retry middleware, so it sees the nak (transient) or term (permanent)."""

    async def consume_scope(self, call_next: Any, msg: Any) -> Any:
        meta = getattr(msg.raw_message, "metadata", None)
        handler = getattr(meta, "consumer", None) or "unknown"
        start = time.perf_counter()
        failed: str | None = None
        try:
            return await call_next(msg)
        except RejectMessage:
            failed = "permanent"
            raise
        except NackMessage:
            failed = "transient"
            raise
        except HandlerException:  # an explicit ack or skip: handled
            raise
        except Exception:  # anything the retry middleware let through: nacked by the ack policy
            failed = "transient"
            raise
        finally:
            metrics.observe_handled(handler, time.perf_counter() - start, failed=failed)


def retry_middleware(*, base: float, cap: float, on_failure: FailureRecorder | None) -> type[BaseMiddleware]:
    class RetryMiddleware(BaseMiddleware):
        async def consume_scope(self, call_next: Any, msg: Any) -> Any:
            try:
                return await call_next(msg)
            except HandlerException:
                raise  # an explicit Ack/Nack/Reject from the handler wins
            except Exception as exc:
                delivery = delivery_of(msg)
                permanent = is_permanent(exc)
                if on_failure is not None:
                    try:
                        await on_failure(delivery, exc, permanent)
                    except Exception:  # recording must never turn into a lost message
                        log.exception("could not record delivery failure")
                if permanent:
                    log.error("permanent failure: message terminated", error=repr(exc), deliveries=delivery.deliveries)
                    raise RejectMessage() from exc
                delay = backoff_delay(delivery.deliveries, base=base, cap=cap)
                log.warning(
                    "transient failure: retrying", error=repr(exc), deliveries=delivery.deliveries, retry_in_s=delay
                )
                raise NackMessage(delay=delay) from exc

    return RetryMiddleware


RawHandler = Callable[[bytes, Delivery], Awaitable[None]]
EventHandler = Callable[[Envelope, Delivery], Awaitable[None]]


def subscribe(
    broker: NatsBroker,
    spec: ConsumerSpec,
    handler: RawHandler,
    *,
    concurrency: int = 1,
    batch_size: int = 1,
    fetch_timeout: float = 1.0,
) -> Any:
    """Bind `handler` to the provisioned durable consumer `spec.name` (never declares it)."""

    async def consume(msg: NatsMessage) -> None:
        await handler(msg.body, delivery_of(msg))

    consume.__name__ = f"consume_{spec.name}"
    kwargs: dict[str, Any] = {}
    if concurrency > 1:
        kwargs["max_workers"] = concurrency
    return broker.subscriber(
        spec.filter_subjects[0],
        stream=JStream(spec.stream, declare=False),
        durable=spec.name,
        pull_sub=PullSub(batch_size=batch_size, timeout=fetch_timeout),
        **kwargs,
    )(consume)


def event_handler(fn: EventHandler) -> RawHandler:
    """Decode the body into an Envelope first; an undecodable body is a permanent error."""

    async def raw(body: bytes, delivery: Delivery) -> None:
        await fn(parse_event(body), delivery)

    raw.__name__ = getattr(fn, "__name__", "event_handler")
    return raw


def event_headers(event: Envelope) -> dict[str, str]:
    """The headers every published event carries (the publisher and the outbox relay use this)."""
    headers = {MSG_ID: str(event.event_id), H_TYPE: event.type, H_CORRELATION: str(event.correlation_id)}
    if event.causation_id:
        headers[H_CAUSATION] = str(event.causation_id)
    return headers


class JetStreamPublisher:
    """Publisher port: every event goes through JetStream with Nats-Msg-Id = event_id, and
    publish() returns only once the stream has stored it (PubAck)."""

    def __init__(self, broker: NatsBroker, *, timeout: float = 5.0) -> None:
        self._broker = broker
        self._timeout = timeout

    async def publish(self, event: Envelope) -> None:
        await self.publish_raw(
            event.subject, event.to_json(), event_headers(event), correlation_id=str(event.correlation_id)
        )

    async def publish_raw(
        self, subject: str, body: bytes, headers: dict[str, str], *, correlation_id: str | None = None
    ) -> PubAck:
        if MSG_ID not in headers:
            raise ValueError("every event needs a Nats-Msg-Id header for deduplication")
        try:
            ack = await self._broker.publish(
                body,
                subject,
                headers={"content-type": "application/json", **headers},
                correlation_id=correlation_id,
                stream=EVENTS_STREAM,
                timeout=self._timeout,
            )
        except Exception as e:  # timeouts, no responders, disconnected: try again later
            raise TransientError(f"publish to {subject} failed: {e!r}") from e
        if not isinstance(ack, PubAck):
            raise TransientError(f"publish to {subject} got no PubAck ({ack!r})")
        return ack
