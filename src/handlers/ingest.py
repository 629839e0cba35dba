"""Ingest: bytes of a new image -> a copy in 1_raw/ and one image.generated event.

Used by every producer (folder watcher, HTTP hook, `vaultline ingest`, the ComfyUI node via
the hook). The same bytes are ingested once per creator, whichever producer sees them and
under whatever name: the content id is derived from (creator, sha256) and the event id from
the content id, so a second ingest is refused by the content table, or, within JetStream's
duplicate window, dropped by the stream. A near-duplicate (perceptual hash within
NEAR_DUPLICATE_DISTANCE bits) is ingested but flagged for the reviewer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

import structlog

from vaultline.domain import library
from vaultline.domain.similarity import NEAR_DUPLICATE_DISTANCE
from vaultline.events import ComfyMeta, content_id_for, derived_id, new_event
from vaultline.handlers.ports import Publisher, Storage

log = structlog.get_logger("vaultline.ingest")


@dataclass(frozen=True)
class ImageFacts:
    """What ingest needs to know about the bytes (computed by an adapter)."""

    sha256: str
    phash: str  # "" when the bytes do not decode; the crop handler then rejects them
    width: int | None
    height: int | None
    format: str | None
    comfy: ComfyMeta
    vaultline_tag: dict[str, str]


class ContentIndex(Protocol):
    async def exists(self, content_id: uuid.UUID) -> bool: ...

    async def nearest(self, creator: str, phash: str, exclude: uuid.UUID) -> tuple[uuid.UUID, int] | None:
        """The closest image of the creator by perceptual hash, with the distance."""


@dataclass(frozen=True)
class IngestResult:
    content_id: uuid.UUID
    status: Literal["ingested", "duplicate"]
    storage_key: str | None = None
    event_id: uuid.UUID | None = None
    near_duplicate_of: uuid.UUID | None = None


async def ingest(
    data: bytes,
    facts: ImageFacts,
    *,
    creator: str,
    filename: str,
    mode: str,
    source: str,
    storage: Storage,
    publisher: Publisher,
    index: ContentIndex,
) -> IngestResult:
    content_id = content_id_for(creator, facts.sha256)
    if await index.exists(content_id):
        log.info("duplicate ignored", content_id=str(content_id), filename=filename)
        return IngestResult(content_id, "duplicate")

    ext = library.extension_for(facts.format, filename)
    raw_key = library.key(creator, library.RAW, library.file_name(filename, content_id, ext))
    await storage.put(raw_key, data)  # a copy: the producer's file stays where it is

    near, distance = None, None
    if facts.phash:
        found = await index.nearest(creator, facts.phash, exclude=content_id)
        if found and found[1] <= NEAR_DUPLICATE_DISTANCE:
            near, distance = found

    event = new_event(
        "image.generated",
        creator=creator,
        key=content_id,
        event_id=derived_id(content_id, "image.generated"),
        payload={
            "storage_key": raw_key,
            "sha256": facts.sha256,
            "phash": facts.phash,
            "size_bytes": len(data),
            "width": facts.width,
            "height": facts.height,
            "original_filename": filename[-255:],
            "source": source,
            "crop_mode": mode,
            "comfy": facts.comfy,
            "near_duplicate_of": near,
            "phash_distance": distance,
        },
    )
    await publisher.publish(event)
    log.info("ingested", content_id=str(content_id), filename=filename, near_duplicate_of=near and str(near))
    return IngestResult(content_id, "ingested", raw_key, event.event_id, near)
