"""Event envelope, typed payloads, subjects and ids. No I/O.

Every state change in vaultline is one `Envelope` on the EVENTS stream. The subject is
`{type}.{creator}.{key}` so consumers filter on the type and the history of one image is
`*.*.<creator>.<content_id>`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

# Fixed forever: changing it would change every derived id.
NAMESPACE = uuid.UUID("6f3c1a52-8a0e-4f4c-9d7e-3a1b5c2d9e10")

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
# A subject token: no dots, spaces or wildcards.
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

CropMode = Literal["no_face", "chin", "lips_only"]
Vault = Literal["feed", "ppv", "archive"]
CROP_MODES: tuple[str, ...] = ("no_face", "chin", "lips_only")
VAULTS: tuple[str, ...] = ("feed", "ppv", "archive")


class InvalidEvent(ValueError):
    """An event that can never be processed (unknown type, bad payload). Permanent."""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def derived_id(cause_id: uuid.UUID | str, type_: str, discriminator: str = "") -> uuid.UUID:
    """Deterministic id of an event caused by another: a redelivered handler that publishes
    again produces the same Nats-Msg-Id, so JetStream drops the copy."""
    suffix = f":{discriminator}" if discriminator else ""
    return uuid.uuid5(NAMESPACE, f"{cause_id}:{type_}{suffix}")


def content_id_for(creator: str, sha256: str) -> uuid.UUID:
    """The same bytes for the same creator are the same content, whichever producer saw them."""
    return uuid.uuid5(NAMESPACE, f"content:{creator}:{sha256}")


# --------------------------------------------------------------------------- payloads


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ComfyMeta(Payload):
    prompt_id: str | None = None
    seed: int | None = None
    checkpoint: str | None = None
    positive_prompt: str | None = None


class ImageGenerated(Payload):
    storage_key: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    phash: str
    size_bytes: int = Field(ge=0)
    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    original_filename: str
    source: Literal["watcher", "http", "cli", "comfyui", "test"] = "cli"
    crop_mode: CropMode = "no_face"
    comfy: ComfyMeta = ComfyMeta()
    near_duplicate_of: uuid.UUID | None = None
    phash_distance: int | None = None


class CutBox(Payload):
    x0: int
    y0: int
    x1: int
    y1: int


class ImageCropped(Payload):
    cropped_key: str
    review_key: str | None = None
    mode_used: CropMode | Literal["fallback"]
    face_found: bool
    faces: int = 0
    cut_y: int
    box: CutBox | None = None
    confidence: float | None = None
    fallback_reason: str | None = None
    needs_manual_crop: bool = False
    width: int | None = None
    height: int | None = None
    # The output check on the kept part (None: cropped before the check existed).
    output_check: Literal["passed", "moved", "needs_manual_crop", "skipped"] | None = None
    output_check_faces: int | None = Field(default=None, ge=0, description="faces the check found left visible")


class ImageCropFailed(Payload):
    reason: str
    rejected_key: str | None = None
    mode: CropMode | None = None


class FeedPost(Payload):
    audience: Literal["subscribers", "followers-and-subscribers"] = "subscribers"
    text: str | None = None
    publish_at: datetime | None = None


MAX_TAGS = 32
MAX_TAG_LEN = 64


def _tag_list(v: Any) -> Any:
    if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
        raise ValueError("tags must be a list of strings")
    return v


# Tags as every model that carries them checks them (the events and the API bodies alike).
Tags = Annotated[list[str], BeforeValidator(_tag_list), Field(max_length=MAX_TAGS)]


class ApprovalDecision(Payload):
    """What a reviewer decides when approving; the approve request body is this model."""

    vault: Vault
    category: str | None = Field(default=None, max_length=64)
    tags: Tags = Field(default_factory=list, description=f"each 1-{MAX_TAG_LEN} characters")
    description: str | None = Field(default=None, max_length=2000)
    # strict: "1299" or true are not a price.
    price_cents: int | None = Field(default=None, ge=0, strict=True, description="required and > 0 for ppv")
    post: FeedPost | None = None

    @field_validator("tags")
    @classmethod
    def _short_tags(cls, tags: list[str]) -> list[str]:
        for t in tags:
            if not t or len(t) > MAX_TAG_LEN:
                raise ValueError(f"tags must be 1-{MAX_TAG_LEN} characters")
        return tags

    @model_validator(mode="after")
    def _ppv_needs_price(self) -> "ApprovalDecision":
        if self.vault == "ppv" and not self.price_cents:
            raise ValueError("a ppv approval needs a positive price_cents")
        return self


class ImageApproved(ApprovalDecision):
    reviewer: str | None = None


class Rejection(Payload):
    """What a reviewer decides when rejecting; the reject request body is this model."""

    reason: str = Field(min_length=1, max_length=500)


class ImageRejected(Rejection):
    reviewer: str | None = None


class ImageRecropRequested(Payload):
    mode: CropMode
    raw_key: str  # the original to crop again
    original_filename: str | None = None
    reviewer: str | None = None


class MediaUploaded(Payload):
    platform: str
    media_uuid: str
    vault: Vault
    vault_folder: str
    url: str | None = None


class MediaUploadFailed(Payload):
    platform: str
    reason: str
    step: str | None = None  # the step that failed; a retry resumes there
    retryable: bool = False


class MediaUploadRetryRequested(Payload):
    reviewer: str | None = None


# --------------------------------------------------------------------------- fans, sends, sales, chat
# Fan ids are the platform's fan uuid (Fanvue), or any subject-safe name on the local platform.
FanId = Annotated[str, Field(pattern=KEY_RE.pattern)]
SaleKind = Literal["purchase", "tip", "subscription", "renewal", "other"]
FactSource = Literal["webhook", "sync", "earnings", "local"]


class FanRef(Payload):
    """Who a fan is, as the platform told us (any field may be unknown)."""

    handle: str | None = None
    display_name: str | None = None


class MediaSent(Payload):
    """One content went to one fan in a message (a message with N images is N events, key =
    content id, sharing message_uuid). Only a person's action sends: `sent_by` says who."""

    platform: str
    fan_id: FanId
    content_id: uuid.UUID
    message_uuid: str
    price_cents: int | None = Field(default=None, ge=0)  # the message's price (PPV); None = free
    text: str | None = Field(default=None, max_length=5000)
    bundle: list[uuid.UUID] = Field(default_factory=list)  # every content of that message
    forced: bool = False
    reason: str | None = Field(default=None, max_length=500)  # why a duplicate was forced
    sent_by: str | None = None

    @model_validator(mode="after")
    def _forced_needs_reason(self) -> "MediaSent":
        if self.forced and not (self.reason and self.reason.strip()):
            raise ValueError("a forced send needs a reason")
        return self


class MessageReceived(Payload):
    platform: str
    fan_id: FanId
    message_uuid: str
    text: str = Field(default="", max_length=20000)
    sent_at: datetime | None = None
    fan: FanRef = FanRef()
    media_uuids: list[str] = Field(default_factory=list)
    price_cents: int | None = Field(default=None, ge=0)
    source: FactSource = "local"


class MessageRead(Payload):
    """The creator read a fan's messages (Fanvue's message-read webhook)."""

    platform: str
    fan_id: FanId
    read_count: int = Field(default=0, ge=0)
    source: FactSource = "webhook"


class PpvOffer(Payload):
    content_id: uuid.UUID
    price_cents: int = Field(ge=0)


class ReplySuggested(Payload):
    """Drafts for a person to approve, or why there are none. The chat handler only drafts."""

    message_event_id: uuid.UUID
    fan_id: FanId
    status: Literal["ready", "pending", "failed", "flagged"] = "ready"
    drafts: list[str] = Field(default_factory=list, max_length=3)
    offer: PpvOffer | None = None
    flags: list[str] = Field(default_factory=list)  # guardrail reasons, for a person
    reason: str | None = None  # why pending/failed
    model: str | None = None
    attempts: int = Field(default=0, ge=0)  # model calls so far (replay rebuilds suggestions.attempts)


class MessageSent(Payload):
    """A reply a person approved went out (edited or not)."""

    platform: str
    fan_id: FanId
    message_uuid: str
    text: str = Field(max_length=5000)
    approved_by: str
    suggestion_event_id: uuid.UUID | None = None
    draft: int | None = Field(default=None, ge=1)  # which draft (1-based), None = typed by hand
    edited: bool = False
    offer: PpvOffer | None = None
    # What the inbox recorded with the message, so a replay rebuilds the same rows.
    media_uuids: list[str] = Field(default_factory=list)
    reply_seconds: int | None = Field(default=None, ge=0)  # oldest unanswered fan message -> this reply


class ReplyDiscarded(Payload):
    fan_id: FanId
    suggestion_event_id: uuid.UUID | None = None
    discarded_by: str


class SaleRecorded(Payload):
    """Money from a fan, as one source saw it. The sales handler matches it to a send and
    counts it once whichever sources report it (dedupe_key, then platform ids, then
    fan + amount + time)."""

    dedupe_key: str = Field(min_length=1, max_length=300)
    kind: SaleKind
    gross_cents: int = Field(ge=0)
    net_cents: int | None = Field(default=None, ge=0)
    currency: str = "USD"
    platform: str
    source: FactSource
    sold_at: datetime
    fan_id: FanId | None = None
    fan: FanRef = FanRef()
    route_uuid: str | None = None  # Fanvue purchase webhook: the purchased message
    message_uuid: str | None = None
    post_uuid: str | None = None
    content_id: uuid.UUID | None = None  # when the source already knows it (local platform)


class FanFollowed(Payload):
    platform: str
    fan_id: FanId
    fan: FanRef = FanRef()
    source: FactSource = "webhook"


class FanSubscribed(Payload):
    platform: str
    fan_id: FanId
    fan: FanRef = FanRef()
    price_cents: int | None = Field(default=None, ge=0)
    source: FactSource = "webhook"


PAYLOADS: dict[str, type[Payload]] = {
    "image.generated": ImageGenerated,
    "image.cropped": ImageCropped,
    "image.crop_failed": ImageCropFailed,
    "image.approved": ImageApproved,
    "image.rejected": ImageRejected,
    "image.recrop_requested": ImageRecropRequested,
    "media.uploaded": MediaUploaded,
    "media.upload_failed": MediaUploadFailed,
    "media.upload_retry_requested": MediaUploadRetryRequested,
    "media.sent": MediaSent,
    "message.received": MessageReceived,
    "message.read": MessageRead,
    "reply.suggested": ReplySuggested,
    "reply.discarded": ReplyDiscarded,
    "message.sent": MessageSent,
    "sale.recorded": SaleRecorded,
    "fan.followed": FanFollowed,
    "fan.subscribed": FanSubscribed,
}
# The schema version each type is published with today. Bump on an incompatible change.
SCHEMA_VERSIONS: dict[str, int] = {t: 1 for t in PAYLOADS}

STREAM_SUBJECTS: tuple[str, ...] = ("image.>", "media.>", "message.>", "reply.>", "sale.>", "fan.>")


# --------------------------------------------------------------------------- envelope


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID
    type: str
    schema_version: int = Field(ge=1)
    occurred_at: datetime
    creator: str
    key: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    payload: Any

    @field_validator("creator")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG_RE.match(v):
            raise ValueError(f"creator must be a slug ([a-z0-9_-], max 63): {v!r}")
        return v

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not KEY_RE.match(v):
            raise ValueError(f"key must be a subject token ([A-Za-z0-9_-]): {v!r}")
        return v

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        return v.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _typed_payload(self) -> "Envelope":
        model = PAYLOADS.get(self.type)
        if model is None:
            raise ValueError(f"unknown event type {self.type!r}")
        if self.schema_version > SCHEMA_VERSIONS[self.type]:
            raise ValueError(
                f"{self.type} schema_version {self.schema_version} is newer than this build "
                f"understands ({SCHEMA_VERSIONS[self.type]})"
            )
        if not isinstance(self.payload, model):
            raw = self.payload.model_dump() if isinstance(self.payload, BaseModel) else self.payload
            object.__setattr__(self, "payload", model.model_validate(raw))
        return self

    @property
    def subject(self) -> str:
        return subject_for(self.type, self.creator, self.key)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def subject_for(type_: str, creator: str, key: str) -> str:
    return f"{type_}.{creator}.{key}"


def new_event(
    type_: str,
    *,
    creator: str,
    key: str | uuid.UUID,
    payload: Payload | dict[str, Any],
    cause: Envelope | None = None,
    event_id: uuid.UUID | None = None,
    discriminator: str = "",
    correlation_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Build an event. With `cause`, the id is derived deterministically and the
    correlation id is inherited, so the whole chain of one image shares one correlation id."""
    if cause is not None and event_id is None:
        event_id = derived_id(cause.event_id, type_, discriminator)
    event_id = event_id or uuid.uuid4()
    return Envelope(
        event_id=event_id,
        type=type_,
        schema_version=SCHEMA_VERSIONS.get(type_, 1),
        occurred_at=occurred_at or utcnow(),
        creator=creator,
        key=str(key),
        correlation_id=correlation_id or (cause.correlation_id if cause else event_id),
        causation_id=cause.event_id if cause else None,
        payload=payload,
    )


def parse_event(data: bytes | str | dict[str, Any]) -> Envelope:
    """Decode an event from the wire. Anything invalid raises InvalidEvent (permanent)."""
    try:
        if isinstance(data, dict):
            return Envelope.model_validate(data)
        return Envelope.model_validate_json(data)
    except ValidationError as e:
        raise InvalidEvent(str(e)) from e


# The Envelope with its payload's model in place of Any, per type: the payload is validated in
# the same pass as the envelope instead of a second time from a dict (parse_stored_event).
_TYPED_ENVELOPES: dict[str, type[Envelope]] = {
    t: create_model(f"Envelope_{t.replace('.', '_')}", __base__=Envelope, payload=(m, ...)) for t, m in PAYLOADS.items()
}


def parse_stored_event(data: bytes, type_: str) -> Envelope:
    """parse_event for a body whose type is known ahead (a stored event's subject starts with
    it; `replay --rebuild` parses every event of the stream): the same checks, ~a third less
    work. Anything else (another type in the body, an invalid body) goes through parse_event,
    so the result and the error are parse_event's."""
    typed = _TYPED_ENVELOPES.get(type_)
    if typed is not None:
        try:
            event = typed.model_validate_json(data)
        except ValidationError:
            pass
        else:
            if event.type == type_:
                return event
    return parse_event(data)


__all__ = [
    "CROP_MODES",
    "NAMESPACE",
    "PAYLOADS",
    "STREAM_SUBJECTS",
    "VAULTS",
    "ApprovalDecision",
    "ComfyMeta",
    "FanFollowed",
    "FanRef",
    "FanSubscribed",
    "MessageRead",
    "PpvOffer",
    "Rejection",
    "ReplyDiscarded",
    "Tags",
    "CutBox",
    "Envelope",
    "FeedPost",
    "ImageApproved",
    "ImageCropFailed",
    "ImageCropped",
    "ImageGenerated",
    "ImageRecropRequested",
    "ImageRejected",
    "InvalidEvent",
    "MediaSent",
    "MediaUploadFailed",
    "MediaUploadRetryRequested",
    "MediaUploaded",
    "MessageReceived",
    "MessageSent",
    "ReplySuggested",
    "SaleRecorded",
    "content_id_for",
    "derived_id",
    "new_event",
    "parse_event",
    "parse_stored_event",
    "subject_for",
    "utcnow",
]
