"""crop: image.generated | image.recrop_requested -> image.cropped | image.crop_failed.

Writes the archive copy (ComfyUI metadata kept) to 2_cropped/ and the stripped copy, the one
that will be uploaded, to 3_review/. Keys and the derived event id are deterministic, so a
redelivery rewrites the same objects and republishes an event JetStream drops. Unreadable or
unsafe input is not an exception here: it becomes image.crop_failed, the original moves to
rejected/ with a .reason.txt beside it, and the worker goes on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from vaultline.domain import library
from vaultline.events import Envelope, ImageGenerated, ImageRecropRequested, new_event
from vaultline.handlers.heartbeat import DEFAULT_EVERY_S, Heartbeat, keep_alive
from vaultline.handlers.ports import Publisher, Storage

NAME = "crop"
log = structlog.get_logger("vaultline.crop")

# (image bytes, mode) -> a result with archive_png, upload_png, to_cropped_payload(...);
# raises BadCropInput for input that can never be cropped.
CropFn = Callable[[bytes, str], Awaitable[Any]]


class BadCropInput(ValueError):
    """The adapter's 'this image is unreadable or unsafe' (imaging.BadImage is one)."""


async def handle(
    event: Envelope,
    *,
    storage: Storage,
    crop: CropFn,
    publisher: Publisher,
    heartbeat: Heartbeat | None = None,
    heartbeat_every: float = DEFAULT_EVERY_S,
) -> Envelope | None:
    p = event.payload
    if isinstance(p, ImageGenerated):
        raw_key, mode, original = p.storage_key, p.crop_mode, p.original_filename
    elif isinstance(p, ImageRecropRequested):
        raw_key, mode, original = p.raw_key, p.mode, p.original_filename or raw_key.rsplit("/", 1)[-1]
    else:
        return None
    creator, cid = event.creator, event.key
    name = library.file_name(original, cid)

    try:
        data = await storage.get(raw_key)
    except KeyError:
        return await _failed(event, publisher, mode, "the original is missing from storage", rejected_key=None)

    try:
        # The crop runs in a thread; the event loop keeps the message alive meanwhile.
        async with keep_alive(heartbeat, heartbeat_every):
            result = await crop(data, mode)
    except BadCropInput as e:
        rejected = library.key(creator, library.REJECTED, library.name_of(raw_key))
        # Publish first: a crash before the move redelivers, fails the same way, and the
        # republished event is a duplicate; a crash after it finds the file already moved.
        failed = await _failed(event, publisher, mode, str(e), rejected_key=rejected)
        await storage.move(raw_key, rejected)
        await storage.put(library.reason_key(rejected), f"{e}\n".encode(), "text/plain")
        return failed

    cropped_key = library.key(creator, library.CROPPED, name)
    review_key = library.key(creator, library.REVIEW, name)
    await storage.put(cropped_key, result.archive_png, "image/png")
    await storage.put(review_key, result.upload_png, "image/png")
    cropped = new_event(
        "image.cropped",
        creator=creator,
        key=cid,
        cause=event,
        payload=result.to_cropped_payload(cropped_key=cropped_key, review_key=review_key),
    )
    await publisher.publish(cropped)
    log.info(
        "cropped",
        mode=mode,
        mode_used=cropped.payload.mode_used,
        cut_y=cropped.payload.cut_y,
        output_check=cropped.payload.output_check,
    )
    return cropped


async def _failed(event: Envelope, publisher: Publisher, mode: str, reason: str, rejected_key: str | None) -> Envelope:
    failed = new_event(
        "image.crop_failed",
        creator=event.creator,
        key=event.key,
        cause=event,
        payload={"reason": reason, "rejected_key": rejected_key, "mode": mode},
    )
    await publisher.publish(failed)
    log.warning("crop failed", reason=reason)
    return failed
