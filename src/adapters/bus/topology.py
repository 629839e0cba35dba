"""Streams and durable consumers, declared once here. `vaultline provision` applies this to
the server; subscribers only bind (JStream(..., declare=False)), so code never overwrites
the server's configuration by accident."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from vaultline.events import STREAM_SUBJECTS

EVENTS_STREAM = "EVENTS"
ADVISORIES_STREAM = "ADVISORIES"
ADVISORY_SUBJECTS: tuple[str, ...] = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{EVENTS_STREAM}.*",
    f"$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.{EVENTS_STREAM}.*",
)
DUPLICATE_WINDOW_S = 300.0  # must exceed how long a publisher keeps retrying one event
ADVISORIES_MAX_AGE_S = 30 * 24 * 3600.0


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    # limits, never workqueue/interest: those delete acked messages and the audit trail.
    common = {"retention": RetentionPolicy.LIMITS, "storage": StorageType.FILE, "discard": DiscardPolicy.OLD,
              "num_replicas": replicas}  # fmt: skip
    return [
        StreamConfig(
            name=EVENTS_STREAM,
            description="vaultline events: the audit trail; Postgres tables are projections of it",
            subjects=list(STREAM_SUBJECTS),
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_direct=True,
            **common,
        ),
        StreamConfig(
            name=ADVISORIES_STREAM,
            description="max-deliveries and terminated advisories of EVENTS consumers (dead letters)",
            subjects=list(ADVISORY_SUBJECTS),
            max_age=ADVISORIES_MAX_AGE_S,
            **common,
        ),
    ]


@dataclass(frozen=True)
class ConsumerSpec:
    """One durable pull consumer = one handler. Scale it by running more workers on it."""

    name: str
    filter_subjects: tuple[str, ...]
    stream: str = EVENTS_STREAM
    # Short, so a crashed worker's message comes back within seconds; long work keeps its
    # message with in_progress heartbeats every heartbeat_every_s (handlers.heartbeat).
    ack_wait_s: float = 30.0
    max_deliver: int | None = None  # None: settings.max_deliver
    max_ack_pending: int = 1000
    description: str = ""
    # Fields JetStream cannot change on an existing consumer; provision recreates only if asked.
    deliver_policy: str = "all"
    opt_start_seq: int | None = None

    @property
    def heartbeat_every_s(self) -> float:
        """How often long work sends in_progress: three beats per ack_wait."""
        return self.ack_wait_s / 3

    def max_deliver_or(self, default: int) -> int:
        """The one place max_deliver is resolved: the spec's own, else the configured default."""
        return self.max_deliver or default


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
            description="face-aware crop of new images (heartbeats while a large image is cropped)",
        ),
        ConsumerSpec(
            "library",
            ("image.approved.>", "image.rejected.>"),
            description="files decided images: 3_review/ -> 4_approved/<vault>/ or rejected/",
        ),
        ConsumerSpec(
            "upload",
            ("image.approved.>", "media.upload_retry_requested.>"),
            description="uploads approved images into the platform's vault folders (heartbeats while it "
            "waits on the platform: 429 pauses, parts, polling for ready)",
        ),
        ConsumerSpec(
            "sales",
            ("sale.recorded.>", "media.sent.>", "message.received.>", "fan.>"),
            description="sales, sends and fans projections: matches purchases to sends, counts each sale once",
        ),
        ConsumerSpec(
            "chat",
            ("message.received.>",),
            # Ollama down: the suggestion stays pending and the bus redelivers with backoff
            # (capped at VAULTLINE_RETRY_MAX_DELAY) for about half an hour before `failed`.
            max_deliver=40,
            description="drafts reply suggestions for fan messages (heartbeats while the model writes; never sends)",
        ),
        ConsumerSpec(
            "dlq",
            ADVISORY_SUBJECTS,
            stream=ADVISORIES_STREAM,
            description="records max-deliveries / terminated advisories as dead_letters rows",
        ),
    )
}
