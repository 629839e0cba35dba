"""Streams and durable consumers, declared once here. `vaultline provision` applies this to
the server; subscribers only bind (JStream(..., declare=False)), so code never overwrites
the server's configuration by accident."""

from __future__ import annotations

from dataclasses import dataclass

EVENTS_STREAM = "EVENTS"
ADVISORIES_STREAM = "ADVISORIES"
ADVISORY_SUBJECTS: tuple[str, ...] = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{EVENTS_STREAM}.*",
    f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{EVENTS_STREAM}.*",
)
DUPLICATE_WINDOW_S = 300.0  # must exceed how long a publisher keeps retrying one event
ADVISORIES_MAX_AGE_S = 30 * 24 * 3600.0


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable pull consumer = one handler. Scale it by running more workers on it."""

    name: str
    filter_subjects: tuple[str, ...]
    stream: str = EVENTS_STREAM
    ack_wait_s: float = 60.0
    max_deliver: int | None = None  # None: settings.max_deliver
    max_ack_pending: int = 1000
    description: str = ""
    # Fields JetStream cannot change on an existing consumer; provision recreates only if asked.
    deliver_policy: str = "all"
    opt_start_seq: int | None = None


CONSUMERS: dict[str, ConsumerSpec] = {
    spec.name: spec
    for spec in (
        ConsumerSpec(
            "tracker",
            ("image.>", "media.>"),
            description="projects every image/media event into the content table",
        ),
        ConsumerSpec(
            "crop",
            ("image.generated.>", "image.recrop_requested.>"),
            ack_wait_s=120.0,
            description="face-aware crop of new images",
        ),
        ConsumerSpec(
            "library",
            ("image.approved.>", "image.rejected.>"),
            description="files decided images: 3_review/ -> 4_approved/<vault>/ or rejected/",
        ),
        ConsumerSpec(
            "upload",
            ("image.approved.>", "media.upload_retry_requested.>"),
            ack_wait_s=300.0,  # a multipart upload and the wait for the media to be ready
            description="uploads approved images into the platform's vault folders",
        ),
        ConsumerSpec(
            "analytics",
            ("image.>", "media.>", "message.>", "reply.>", "sale.>", "fan.>"),
            description="daily aggregates per creator: funnel, offers, sales, conversion, replies, top content/fans",
        ),
        ConsumerSpec(
            "dlq",
            ADVISORY_SUBJECTS,
            stream=ADVISORIES_STREAM,
            description="records max-deliveries / terminated advisories as dead_letters rows",
        ),
    )
}
